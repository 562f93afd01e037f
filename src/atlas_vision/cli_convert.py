"""``atlas-vision convert --from reference CKPT --out DIR``: the authors' checkpoint -> a hub folder.

The architecture fields a reference ``state_dict`` determines by its shapes (width, depths, stem, MLP, classes, the
number of per-scale weight sets) are read from it; the others (``num_heads``, ``window_size``, ``pool_stride``,
``pool_op``) come from ``--model`` (default ``atlas_base``, the authors' Atlas-B) or ``--set KEY=VALUE``. The
conversion is strict (see :mod:`atlas_vision.models.convert_reference`); the result is ``DIR/config.json`` +
``DIR/model.safetensors``, loadable with ``timm.create_model("local-dir:DIR", pretrained=True)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["num_heads=2", "window_size=[4, 4]"]`` -> ``{"num_heads": 2, "window_size": [4, 4]}`` (JSON values, else
    strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atlas-vision convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="reference checkpoint (.safetensors, or .pth/.ckpt read with weights_only)")
    parser.add_argument("--from", dest="source", choices=["reference"], required=True, help="checkpoint format")
    parser.add_argument("--out", required=True, help="output hub folder (config.json + model.safetensors)")
    parser.add_argument("--model", default="atlas_base", help="variant giving the fields shapes do not determine")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="AtlasConfig override")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size to record")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    import timm

    from atlas_vision.hub import save_pretrained
    from atlas_vision.models.convert_reference import (
        check_fits,
        convert_reference_state_dict,
        infer_reference_config,
        is_reference_state_dict,
    )
    from atlas_vision.models.weights_file import read_state_dict

    try:
        reference = read_state_dict(args.checkpoint)
        if not is_reference_state_dict(reference):
            raise ValueError(f"{args.checkpoint!r} does not use the reference key names (no 'atlas_models.*' keys)")
        overrides = dict(infer_reference_config(reference), **parse_set(args.set))
        model = timm.create_model(args.model, **overrides)
        converted, unused = convert_reference_state_dict(reference)
        check_fits(converted, model)
        model.load_state_dict(converted)
        data_config = {"input_size": (model.in_chans, *args.input_size)} if args.input_size else None
        save_pretrained(model, args.out, data_config=data_config)
    except (OSError, ValueError, TypeError) as error:
        print(f"atlas-vision convert: {error}", file=sys.stderr)
        return 2
    print(
        f"converted {len(converted)} tensors ({len(unused)} unused reference tensors dropped: the per-stage "
        f"norm/head the reference never calls) -> {args.out}\narchitecture: {args.model} with {overrides}"
    )
    return 0
