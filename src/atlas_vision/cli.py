"""`atlas-vision` command line: glue only.

Each sub-command lives in its own module exposing ``main(argv: list[str]) -> int``; this file only dispatches, so a
sub-command's heavy imports (torch, timm, matplotlib) happen only when that sub-command runs.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list-models": ("atlas_vision.models.cli", "list the registered Atlas models (with a glob filter)"),
    "train": (
        "atlas_vision.train.cli_train",
        "train a model; writes a run directory (config, metrics, checkpoints, plots)",
    ),
    "eval": ("atlas_vision.train.cli_eval", "evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix"),
    "predict": ("atlas_vision.train.cli_predict", "top-k classes for image files of any size"),
    "data": ("atlas_vision.data.cli", "data set tools (e.g. `data hr-in100` builds the HR-IN100 folder tree)"),
    "bench": ("atlas_vision.bench.cli", "benchmarks: `bench mixers`, `bench ablations`, `bench models`"),
    "convert": ("atlas_vision.cli_convert", "convert the authors' reference checkpoint into a hub folder"),
    "export": ("atlas_vision.export.cli", "export a run or hub folder: hub folder, ONNX, torch.export"),
    "slide": ("atlas_vision.slide.cli", "whole-slide images: `slide info|embed|map|synth` (features.zarr, heatmaps)"),
    "slide-demo": ("atlas_vision.slidelearn.cli_demo", "demo: train 3 slide heads on synthetic slides"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: atlas-vision <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `atlas-vision <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from atlas_vision.version import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"atlas-vision: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
