"""``atlas-vision export --checkpoint RUN --format hub|onnx|torch-export --out PATH``.

``--checkpoint`` is a training run directory (its ``checkpoints/best``, else ``last``), a checkpoint directory, or a
hub folder (``config.json`` + ``model.safetensors``). Sizes for ``onnx`` / ``torch-export``: ``--size HxW`` (fixed;
default: the training or pretrained input size) or ``--min-size HxW --max-size HxW`` (dynamic, multiples of
``patch_size * window``, one scale layout; see ``docs/weights.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FORMATS = ("hub", "onnx", "torch-export")


def parse_hw(text: str) -> tuple[int, int]:
    """``"512x768"`` -> ``(512, 768)``; ``"512"`` -> ``(512, 512)``."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 512x768), got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with positive sides (e.g. 512x768), got {text!r}")
    return (values[0], values[-1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atlas-vision export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="run directory, checkpoint directory or hub folder")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="hub folder, .onnx file or .pt2 file")
    parser.add_argument("--prefer", default="best", choices=["best", "last"], help="checkpoint of a run directory")
    parser.add_argument("--size", type=parse_hw, help="fixed input size HxW")
    parser.add_argument("--min-size", type=parse_hw, help="smallest input size of a dynamic export")
    parser.add_argument("--max-size", type=parse_hw, help="largest input size of a dynamic export")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 18)")
    return parser


def _load(path: str, prefer: str) -> tuple[Any, dict[str, Any] | None, tuple[int, int]]:
    """(model in eval mode, training meta or None, default input size)."""
    from atlas_vision.hub import CONFIG_FILE, load_pretrained

    if (Path(path) / CONFIG_FILE).is_file():
        model = load_pretrained(path).eval()
        return model, None, tuple(model.pretrained_cfg["input_size"][1:])
    from atlas_vision.train.evaluate import load_checkpoint

    loaded = load_checkpoint(path, prefer=prefer)
    return loaded.model, loaded.meta, tuple(loaded.meta["img_size"])


def _save_hub(model: Any, meta: dict[str, Any] | None, out: str) -> None:
    from atlas_vision.hub import save_pretrained
    from atlas_vision.models.atlas import Atlas

    model_args, data_config, labels = None, None, None
    if meta is not None:
        if not isinstance(model, Atlas):
            model_args = dict(meta["model"]["kwargs"], num_classes=meta["num_classes"], in_chans=meta["in_chans"])
        data_config = {
            "input_size": (meta["in_chans"], *meta["img_size"]),
            "mean": tuple(meta["mean"]),
            "std": tuple(meta["std"]),
            "interpolation": meta["interpolation"],
            "crop_pct": 1.0,
        }
        labels = list(meta["class_names"])
    save_pretrained(model, out, model_args=model_args, data_config=data_config, label_names=labels)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if (args.min_size is None) != (args.max_size is None):
            raise ValueError("--min-size and --max-size go together (a dynamic export needs both)")
        if args.size is not None and args.min_size is not None:
            raise ValueError("give either --size (fixed) or --min-size/--max-size (dynamic), not both")
        model, meta, default_size = _load(args.checkpoint, args.prefer)
        if args.format == "hub":
            _save_hub(model, meta, args.out)
            print(f"wrote hub folder {args.out} (config.json + model.safetensors)")
            return 0
        from atlas_vision.export import dynamic_size_range, export_onnx, fixed_size, save_exported

        if args.min_size is not None:
            spec = dynamic_size_range(model, args.min_size, args.max_size)
        else:
            spec = fixed_size(model, args.size or default_size)
        if args.format == "onnx":
            export_onnx(model, spec, args.out, opset=args.opset)
        else:
            save_exported(model, spec, args.out)
    except (OSError, ValueError, TypeError) as error:
        print(f"atlas-vision export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.format} {args.out}: input sizes {spec.describe()}")
    return 0
