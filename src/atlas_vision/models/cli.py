"""`atlas-vision list-models [PATTERN] [--params]`."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas-vision list-models", description="List the registered Atlas models.")
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'atlas_*' (default: all)")
    parser.add_argument("--params", action="store_true", help="also build each model and print its parameter count")
    args = parser.parse_args(argv)

    from atlas_vision.models import VARIANT_CONFIGS, VARIANT_CONFIGS_3D, list_models, model_class

    for name in list_models(args.pattern):
        line = name
        if args.params:
            import torch

            config = VARIANT_CONFIGS.get(name) or VARIANT_CONFIGS_3D[name]
            with torch.device("meta"):
                model = model_class(config)(config)
            line += f"\t{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params (1000 classes)"
        print(line)
    return 0
