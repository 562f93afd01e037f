"""`atlas-vision list-models [PATTERN] [--params [--num-classes N]]`."""

from __future__ import annotations

import argparse


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas-vision list-models", description="List the registered Atlas models.")
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'atlas_*' (default: all)")
    parser.add_argument("--params", action="store_true", help="also build each model and print its parameter count")
    parser.add_argument(
        "--num-classes",
        type=_non_negative,
        default=1000,
        metavar="N",
        help="classifier size the --params count includes (default 1000, timm's convention; 0 = no head)",
    )
    args = parser.parse_args(argv)

    from atlas_vision.models import list_models  # light: names only, no torch

    names = list_models(args.pattern)
    if not names:
        print(f"atlas-vision list-models: no model matches {args.pattern!r}")
        return 0
    if not args.params:
        print("\n".join(names))
        return 0
    from dataclasses import replace

    import torch

    from atlas_vision.models import VARIANT_CONFIGS, VARIANT_CONFIGS_3D, model_class

    for name in names:
        config = replace(VARIANT_CONFIGS.get(name) or VARIANT_CONFIGS_3D[name], num_classes=args.num_classes)
        with torch.device("meta"):
            model = model_class(config)(config)
        count = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name}\t{count:.2f}M params ({args.num_classes} classes)")
    return 0
