"""timm's own generic model tests (``tests/test_models.py`` of timm's source distribution) on our test variants.

The file is taken from the sdist of the installed timm version (``pip download timm==X --no-binary :all:``, cached
under ``~/.cache/atlas-vision``) and run in a subprocess with a conftest that imports ``atlas_vision``. Four edits
register our models with the test file's filters, the way timm lists its own families:

* ``variants`` (the module our models are registered from) joins ``FEAT_INTER_FILTERS`` (models with
  ``forward_intermediates`` and the ``features_only`` getter);
* ``test_atlas*`` joins ``NON_STD_FILTERS`` (like ViTs, ``forward_features`` returns tokens, not an NCHW map);
* ``*atlas*`` joins the TorchScript and FX exclusions: TorchScript is deprecated and Atlas's per-resolution Python
  control flow is not symbolically traceable; ``torch.compile`` is supported and tested in ``test_models.py``.

Tests that need downloads are for pretrained models only, and ours have none, so none of them is selected.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import timm

CACHE = Path(os.environ.get("ATLAS_VISION_CACHE", Path.home() / ".cache" / "atlas-vision"))
PATCHES = [
    ("FEAT_INTER_FILTERS = [\n", "FEAT_INTER_FILTERS = ['variants',\n"),
    ("NON_STD_FILTERS = [\n", "NON_STD_FILTERS = ['test_atlas*',\n"),
    ("EXCLUDE_JIT_FILTERS = [\n", "EXCLUDE_JIT_FILTERS = ['*atlas*',\n"),
    ("EXCLUDE_FX_FILTERS = [\n", "EXCLUDE_FX_FILTERS = ['*atlas*',\n"),
]
CONFTEST = "import atlas_vision  # noqa: F401  (registers the Atlas models with timm)\n"


def _timm_test_dir() -> Path:
    target = CACHE / f"timm-{timm.__version__}-tests"
    if (target / "test_models.py").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        fetch = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"timm=={timm.__version__}",
                "-d",
                tmp,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        archives = list(Path(tmp).glob("timm-*.tar.gz"))
        if fetch.returncode != 0 or not archives:
            pytest.skip(f"could not download timm {timm.__version__}'s source distribution: {fetch.stderr[-500:]}")
        with tarfile.open(archives[0]) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("tests/test_models.py"))
            source = archive.extractfile(member).read().decode()
    for old, new in PATCHES:
        if old not in source:
            raise AssertionError(f"timm's test_models.py changed; cannot find {old!r} to register our models")
        source = source.replace(old, new, 1)
    target.mkdir(parents=True, exist_ok=True)
    (target / "conftest.py").write_text(CONFTEST)
    (target / "test_models.py").write_text(source)
    return target


def test_timm_generic_model_tests_pass_on_our_test_variants():
    test_dir = _timm_test_dir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test_dir / "test_models.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "test_atlas",
            "-x",
            "--timeout=900",
            "-o",
            "addopts=",
            "--rootdir",
            str(test_dir),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=test_dir,
    )
    tail = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    passed = int(re.search(r"(\d+) passed", result.stdout).group(1))
    # per variant: forward, backward, default cfgs (non-std), forward_features, forward_intermediates (+ features)
    assert passed >= 6 * len(timm.list_models("test_atlas*")), tail
