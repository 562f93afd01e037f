"""Classify image files of any size with a trained checkpoint.

Each image is decoded by :func:`atlas_vision.data.read_image` with the checkpoint's channel count (16-bit and float
images scaled by their true range; JPEGs in PIL's draft mode, so a 5000 x 3000 photo decodes at a fraction of full
size), then goes through the data package's evaluation transform with the checkpoint's interpolation and mean/std:
resized to exactly the checkpoint's input size or a given ``(h, w)`` (aspect ratio not kept, as in validation) and
normalised.  Atlas models accept any ``h x w``, so ``img_size`` may differ from the training size.

Decompression bombs: an image whose header declares more than ``max_pixels`` pixels (default
:data:`DEFAULT_MAX_PIXELS`, Pillow's own error threshold) is refused before it is decoded, with an error naming the
file, its size and the option that raises the limit (``--max-pixels``; 0 = no limit, for trusted gigapixel files).

Several files: :func:`predict_images` returns one :class:`Prediction` per readable file and one
:class:`PredictionError` per unreadable one, in input order; one bad file does not drop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from atlas_vision.data import build_eval_transform, read_image
from atlas_vision.data.decode import image_size
from atlas_vision.train.evaluate import LoadedCheckpoint

#: Pillow's DecompressionBombError threshold (2 x Image.MAX_IMAGE_PIXELS of a fresh Pillow): 178,956,970 pixels.
DEFAULT_MAX_PIXELS: int = 2 * 89_478_485


class ImageTooLargeError(ValueError):
    """An image declares more pixels than the ``max_pixels`` limit."""


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


@dataclass
class PredictionError:
    """An image that could not be classified, and why (one line)."""

    path: str
    error: str


def load_image(
    path: str | Path,
    transform: Callable[[object], torch.Tensor],
    img_size: tuple[int, int],
    in_chans: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Decode one image and apply ``transform``: ``float32 [C, H, W]`` and the file's original ``(h, w)``.

    ``img_size`` only steers JPEG draft decoding; ``transform`` does the resize.  ``max_pixels`` (0 = no limit)
    replaces Pillow's decompression-bomb limit for this one file: the header is checked before anything is decoded.

    Raises:
        ImageTooLargeError: more than ``max_pixels`` pixels.
        ValueError: the file cannot be read (naming it).
    """
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own check below, with our own message and option
    try:
        original = image_size(path)  # the header only
        pixels = original[0] * original[1]
        if max_pixels and pixels > max_pixels:
            raise ImageTooLargeError(
                f"image {str(path)!r} declares {original[1]} x {original[0]} = {pixels:,} pixels, more than the limit "
                f"of {max_pixels:,} (a guard against decompression bombs); pass --max-pixels {pixels} (or 0 for no "
                "limit) if you trust the file"
            )
        x_CHW = transform(read_image(path, in_chans, convert_channels=True, draft_size=img_size))
    except ImageTooLargeError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from err
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return x_CHW, original


@torch.no_grad()
def predict_images(
    loaded: LoadedCheckpoint,
    paths: list[str],
    topk: int = 5,
    img_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Prediction | PredictionError]:
    """Top-``topk`` classes with softmax probabilities for each image in ``paths`` (one forward pass each).

    Returns one entry per path, in order: a :class:`Prediction`, or a :class:`PredictionError` for a file that
    could not be read (missing, corrupt, too large, wrong channels).
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise ValueError(f"max_pixels must be an int >= 0 (0 = no limit), got {max_pixels!r}")
    meta = loaded.meta
    size = tuple(img_size) if img_size is not None else tuple(meta["img_size"])
    k = min(topk, meta["num_classes"])
    device = next(loaded.model.parameters()).device
    transform = build_eval_transform(
        size, meta["interpolation"], tuple(meta["mean"]), tuple(meta["std"]), in_chans=meta["in_chans"]
    )
    results: list[Prediction | PredictionError] = []
    for path in paths:
        try:
            x_CHW, original = load_image(path, transform, size, meta["in_chans"], max_pixels)
        except ValueError as err:
            results.append(PredictionError(path=str(path), error=str(err)))
            continue
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
