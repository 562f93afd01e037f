"""Sample slices of the longrange3d task as one PNG for the docs.

    python benchmarks/longrange3d_slices.py --out docs/images/longrange3d_slices.png

One row per sample: the axial slice through the centre of each marked (shelled) object, then the maximum-intensity
projection along depth of the whole volume. Titles give the label and the marked objects' levels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from atlas_vision.data._rng import sample_rng
from atlas_vision.data.longrange3d import LEVELS, LongRange3DDataset, LongRange3DParams, make_scene_3d


def _tile(slice_hw: np.ndarray, scale: int) -> Image.Image:
    grey = (np.clip(slice_hw, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(grey).resize((grey.shape[1] * scale, grey.shape[0] * scale), Image.NEAREST)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args()
    params = LongRange3DParams(volume_size=(args.size,) * 3)
    ds = LongRange3DDataset(args.samples, "train", seed=0, params=params)
    side, pad, title = args.size * args.scale, 6, 16
    canvas = Image.new("L", (3 * (side + pad) + pad, args.samples * (side + pad + title) + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for row in range(args.samples):
        volume, label = ds.render(row)
        scene = make_scene_3d(params, sample_rng("longrange3d", 0, "train", row, 0), label)
        top = pad + row * (side + pad + title)
        levels = [LEVELS[scene.levels[k]] for k in scene.marked]
        draw.text((pad, top), f"label {ds.class_names[label]}: marked levels {levels[0]}, {levels[1]}", fill=0)
        centres = [scene.zyx[k] + params.footprint // 2 for k in scene.marked]
        tiles = [_tile(volume[int(c[0])], args.scale) for c in centres] + [_tile(volume.max(axis=0), args.scale)]
        for col, tile in enumerate(tiles):
            canvas.paste(tile, (pad + col * (side + pad), top + title))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
