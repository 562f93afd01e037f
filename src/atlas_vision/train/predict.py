"""Classify image files of any size with a trained checkpoint.

Each image is decoded (JPEGs in PIL's draft mode, so a 5000 x 3000 photo decodes at a fraction of full size), then
goes through the data package's evaluation transform with the checkpoint's channel count, interpolation and
mean/std: converted to RGB/grey, resized to exactly the checkpoint's input size or a given ``(h, w)`` (aspect
ratio not kept, as in validation) and normalised.  Atlas models accept any ``h x w``, so ``img_size`` may differ
from the training size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from atlas_vision.data import build_eval_transform
from atlas_vision.train.evaluate import LoadedCheckpoint


@dataclass
class Prediction:
    """Top-k classes of one image, most probable first."""

    path: str
    original_size: tuple[int, int]
    """``(h, w)`` of the file."""
    input_size: tuple[int, int]
    """``(h, w)`` the model saw."""
    classes: list[str]
    indices: list[int]
    probabilities: list[float]


def load_image(
    path: str | Path, transform: Callable[[Image.Image], torch.Tensor], img_size: tuple[int, int], mode: str
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Decode one image and apply ``transform``: ``float32 [C, H, W]`` and the file's original ``(h, w)``.

    ``img_size`` and ``mode`` (``"RGB"``/``"L"``) only steer JPEG draft decoding; ``transform`` does the resize.

    PIL's decompression-bomb limit is lifted for this one file (the user asked for it; gigapixel inputs are a use
    case) and restored afterwards.
    """
    h, w = img_size
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            original = (img.height, img.width)
            img.draft(mode, (w, h))  # JPEG: decode at a reduced scale that is still >= the target size
            x_CHW = transform(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from err
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return x_CHW, original


@torch.no_grad()
def predict_images(
    loaded: LoadedCheckpoint, paths: list[str], topk: int = 5, img_size: tuple[int, int] | None = None
) -> list[Prediction]:
    """Top-``topk`` classes with softmax probabilities for each image in ``paths`` (one forward pass each)."""
    meta = loaded.meta
    size = tuple(img_size) if img_size is not None else tuple(meta["img_size"])
    k = min(topk, meta["num_classes"])
    device = next(loaded.model.parameters()).device
    transform = build_eval_transform(
        size, meta["interpolation"], tuple(meta["mean"]), tuple(meta["std"]), in_chans=meta["in_chans"]
    )
    results = []
    for path in paths:
        x_CHW, original = load_image(path, transform, size, "L" if meta["in_chans"] == 1 else "RGB")
        probs = loaded.model(x_CHW[None].to(device)).float().softmax(dim=1)[0]
        top = probs.topk(k)
        idx = top.indices.tolist()
        results.append(
            Prediction(
                path=str(path),
                original_size=original,
                input_size=size,
                classes=[loaded.class_names[i] for i in idx],
                indices=idx,
                probabilities=top.values.tolist(),
            )
        )
    return results
