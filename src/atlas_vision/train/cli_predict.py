"""``atlas-vision predict IMAGE... --checkpoint PATH``: top-k classes with probabilities.  Glue only.

Every readable image is reported (stdout); every unreadable one gets one line on stderr naming the file; the exit code
is 2 if any image (or the checkpoint, or an option) was bad, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _pixels(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels >= 0 (0 = no limit), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of pixels >= 0 (0 = no limit), got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas-vision predict",
        description="Top-k classes of image files of any size (resized to the model's input size or --img-size).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any size, any PIL-readable format)")
    p.add_argument("--checkpoint", required=True, help="run directory or checkpoint directory")
    p.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of a run directory")
    p.add_argument("--topk", type=_size, default=5, help="number of classes to print (default 5)")
    p.add_argument(
        "--img-size",
        nargs="+",
        metavar="N",
        help="H W (or H,W, or one N for N x N) the image is resized to; default: the training size",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--ema", action="store_true", help="use the EMA weights")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--max-pixels",
        type=_pixels,
        default=None,
        metavar="N",
        help="refuse images declaring more than N pixels (decompression-bomb guard; default 178956970, Pillow's "
        "limit; 0 = no limit, for trusted gigapixel files)",
    )
    return p


def _parse_img_size(tokens: list[str] | None) -> tuple[int, int] | None:
    if tokens is None:
        return None
    parts = [t for tok in tokens for t in tok.split(",") if t]
    try:
        sizes = [_size(t) for t in parts]
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--img-size: {err}") from None
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2:
        raise ValueError(f"--img-size takes H W (two integers), got {' '.join(tokens)!r}")
    return sizes[0], sizes[1]


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from atlas_vision.train.distributed import resolve_device
    from atlas_vision.train.evaluate import load_checkpoint
    from atlas_vision.train.predict import DEFAULT_MAX_PIXELS, PredictionError, predict_images

    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    try:
        img_size = _parse_img_size(args.img_size)
        loaded = load_checkpoint(args.checkpoint, resolve_device(args.device), ema=args.ema, prefer=args.which)
        results = predict_images(loaded, args.images, topk=args.topk, img_size=img_size, max_pixels=max_pixels)
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("ATLAS_VISION_TRACEBACK"):
            raise
        print(f"atlas-vision predict: error: {err}", file=sys.stderr)
        return 2
    failed = [r for r in results if isinstance(r, PredictionError)]
    for bad in failed:
        print(f"atlas-vision predict: error: {bad.error}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for p in results:
            if isinstance(p, PredictionError):
                continue
            (h0, w0), (h, w) = p.original_size, p.input_size
            print(f"{p.path} ({w0}x{h0} -> {w}x{h})")
            for name, prob in zip(p.classes, p.probabilities):
                print(f"  {prob:7.4f}  {name}")
    if failed:
        print(f"atlas-vision predict: {len(failed)} of {len(results)} image(s) could not be read", file=sys.stderr)
        return 2
    return 0
