"""``atlas-vision slide-demo``: the slide-learning demo (:mod:`atlas_vision.slidelearn.demo`).  Glue only."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas-vision slide-demo",
        description="Generate synthetic slides whose label is the left-right order of two distant marks, embed them "
        "with `slide embed`, train three slide heads (mean pooling, ABMIL, Atlas) and print their slide metrics. "
        "Re-running with the same --out reuses the slides and features already written.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--slides", type=int, default=200, help="number of slides, train + val (default 200)")
    p.add_argument("--epochs", type=int, help="epochs of every head (default: 30 each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (16 slides, 2 epochs, small heads)")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    return p


def main(argv: list[str]) -> int:
    from atlas_vision.slidelearn.demo import DemoConfig, HeadRecipe, format_table, run_demo

    args = _parser().parse_args(argv)
    try:
        cfg = DemoConfig(slides=args.slides, seed=args.seed)
        if args.tiny:
            small = {"embed_dim": 16, "num_heads": 2, "depths": [1, 1], "pos_embed_hidden": 8}
            cfg = replace(
                cfg,
                slides=min(args.slides, 16),
                batch_size=4,
                map_slides=1,
                heads=(
                    HeadRecipe("slide_meanpool", 3e-3, 2),
                    HeadRecipe("slide_abmil", 1e-3, 2, {"hidden_dim": 16, "attn_dim": 8}),
                    HeadRecipe("slide_atlas", 1e-3, 2, small),
                ),
            )
        if args.epochs is not None:
            if args.epochs < 1:
                raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
            cfg = replace(cfg, heads=tuple(replace(h, epochs=args.epochs) for h in cfg.heads))
    except ValueError as err:
        print(f"atlas-vision slide-demo: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    result = run_demo(cfg, args.out)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        s = result["seconds"]
        print(
            f"{result['train_slides']} train / {result['val_slides']} val slides, grid {result['grid']['height']}x"
            f"{result['grid']['width']} cells x {result['grid']['channels']} channels; generate {s['generate']:.0f} s, "
            f"embed {s['embed']:.0f} s, heads {s['heads']:.0f} s, total {s['total']:.0f} s"
        )
        print(format_table(result["table"]))
        print(f"maps: {', '.join(result['maps'])}")
    return 0
