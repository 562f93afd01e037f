"""`python -m atlas_vision ...` is the same as the `atlas-vision` console script."""

import sys

from atlas_vision.cli import main

if __name__ == "__main__":
    sys.exit(main())
