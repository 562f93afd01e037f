"""Decode an image file to the channel count a model was built for (``data.in_chans``), scaled by its true range.

What comes out:

* ``in_chans`` 1 or 3: a PIL image of mode ``"L"`` / ``"RGB"`` (8 bits per channel), the input of timm's PIL
  transforms (RandomResizedCrop, RandAugment, ...);
* any other ``in_chans`` (multispectral, multi-page TIFF): ``float32 [in_chans, H, W]`` in ``[0, 1]``, the input of
  the tensor transforms of :mod:`atlas_vision.data.transforms`.

Scaling (never clipping of integer data): an integer sample of type ``T`` maps ``T.min .. T.max`` to ``0 .. 1``
(8-bit ``/255``, 16-bit ``/65535``; 16-bit PNG/TIFF reach the 8-bit PIL transforms as ``round(v * 255 / 65535)``,
so precision finer than 1/255 is not kept on that path).  Float images are taken as intensities in ``[0, 1]``;
values outside are clipped, with one warning per process.  The table of every mode is in ``docs/tasks.md``
("Image folders: channels and bit depth").

Channel conversion happens only as documented: with ``convert_channels=True`` (``data.convert_channels``, the
default) a grey image is repeated to 3 channels for ``in_chans=3`` and a colour image becomes grey (ITU-R 601-2
luma, Pillow's ``convert("L")``) for ``in_chans=1``, with one warning per process; with ``False`` such an image is a
:class:`ChannelMismatchError` (skipped as unreadable, or raised with ``data.strict``).  Alpha is dropped (not
composited), palette images are expanded through their palette, CMYK / YCbCr / LAB / HSV are converted to RGB with
Pillow's conversions.  An image whose channel count cannot be matched (e.g. 5 channels for ``in_chans=3``) is always a
:class:`ChannelMismatchError`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

TIFF_SUFFIXES: frozenset[str] = frozenset({".tif", ".tiff"})
# Pillow modes with 8 bits per channel, by what they hold
GREY_MODES: frozenset[str] = frozenset({"1", "L", "LA", "La"})
COLOUR_MODES: frozenset[str] = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})
SIXTEEN_BIT_MODES: frozenset[str] = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L")

DecodedImage = Image.Image | torch.Tensor

_warned: set[str] = set()  # one warning per kind of conversion per process


class ChannelMismatchError(ValueError):
    """The image's channels do not match ``data.in_chans`` (and may not, or cannot, be converted)."""


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        log.warning(message)


def scale_to_unit(array: np.ndarray, source: str = "image") -> np.ndarray:
    """``float32`` copy of ``array`` in ``[0, 1]``: integers by the full range of their type, floats as they are
    (clipped to ``[0, 1]``, one warning per process when something was outside), booleans as 0/1."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return ((array.astype(np.float64) - info.min) / (float(info.max) - info.min)).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32)
        if out.size and (np.nanmin(out) < 0.0 or np.nanmax(out) > 1.0):
            _warn_once(
                "float-range",
                f"float image {source} has values in [{np.nanmin(out):.4g}, {np.nanmax(out):.4g}]; float images are "
                "taken as intensities in [0, 1] and clipped (rescale the files to [0, 1] to keep the range)",
            )
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)
    raise ChannelMismatchError(f"image {source} has pixel type {array.dtype}, which is not an image type")


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """``[C, H, W]`` in ``[0, 1]`` of a (possibly multi-frame) PIL image, scaled by the true range of its mode."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        planes = []
        for index in range(frames):
            image.seek(index)
            planes.append(_pil_to_array(image.copy()))
        image.seek(0)
        if len({p.shape[1:] for p in planes}) != 1:
            raise ChannelMismatchError(
                f"image {image.filename!r}: its {frames} pages differ in size ({[p.shape[1:] for p in planes]})"
            )
        return np.concatenate(planes, axis=0)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif image.mode == "1":
        image = image.convert("L")
    array = np.asarray(image)
    if image.mode == "I" and image.format == "PNG":  # PNG holds at most 16 bits; Pillow may widen it to int32
        array = array.astype(np.uint16)
    elif image.mode == "I":
        array = array.astype(np.int32)
    array_HWC = array[:, :, None] if array.ndim == 2 else array
    return scale_to_unit(np.ascontiguousarray(array_HWC.transpose(2, 0, 1)), repr(image.filename or "image"))


def _tiff_to_array(path: Path) -> np.ndarray:
    """``[C, H, W]`` in ``[0, 1]`` of a TIFF via tifffile (any sample type, multi-page, channels first or last)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array, axes = series.asarray(), series.axes
    if "Y" not in axes or "X" not in axes:
        raise ChannelMismatchError(f"TIFF {str(path)!r} has axes {axes!r}, not an image (no Y and X axes)")
    # [other axes..., Y, X] -> fold every other axis (pages Q/I/Z, channels C, samples S) into one channel axis
    order = [i for i, a in enumerate(axes) if a not in "YX"] + [axes.index("Y"), axes.index("X")]
    array_YX = np.transpose(array, order)
    array_CHW = array_YX.reshape(-1, *array_YX.shape[-2:])
    return scale_to_unit(array_CHW, repr(str(path)))


def _match_channels(array_CHW: np.ndarray, in_chans: int, convert_channels: bool, source: str) -> np.ndarray:
    """``array_CHW`` with ``in_chans`` channels (grey <-> RGB only with ``convert_channels``)."""
    channels = array_CHW.shape[0]
    if channels == in_chans:
        return array_CHW
    if in_chans == 3 and channels == 1 and convert_channels:
        _warn_once("grey->rgb", f"grey image {source} repeated to 3 channels (data.in_chans=3, data.convert_channels)")
        return np.repeat(array_CHW, 3, axis=0)
    if in_chans == 1 and channels == 3 and convert_channels:
        _warn_once("rgb->grey", f"colour image {source} converted to grey (data.in_chans=1, data.convert_channels)")
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)[:, None, None]
        return (array_CHW * weights).sum(axis=0, keepdims=True)
    if in_chans in (1, 3) and channels in (2, 4) and channels - 1 in (1, 3):  # LA / RGBA: drop the alpha
        return _match_channels(array_CHW[: channels - 1], in_chans, convert_channels, source)
    hint = "; set data.convert_channels true to convert grey <-> RGB" if {channels, in_chans} == {1, 3} else ""
    raise ChannelMismatchError(f"image {source} has {channels} channel(s) but data.in_chans={in_chans}{hint}")


def _pil_to_mode(image: Image.Image, in_chans: int, convert_channels: bool, source: str) -> Image.Image:
    """An 8-bit single-frame PIL image as mode ``"L"`` (in_chans 1) or ``"RGB"`` (in_chans 3)."""
    grey = image.mode in GREY_MODES
    if grey and in_chans == 3 and not convert_channels or not grey and in_chans == 1 and not convert_channels:
        channels = 1 if grey else 3
        raise ChannelMismatchError(
            f"image {source} has {channels} channel(s) (mode {image.mode}) but data.in_chans={in_chans}; set "
            "data.convert_channels true to convert grey <-> RGB"
        )
    if grey and in_chans == 3:
        _warn_once("grey->rgb", f"grey image {source} repeated to 3 channels (data.in_chans=3, data.convert_channels)")
    elif not grey and in_chans == 1:
        _warn_once("rgb->grey", f"colour image {source} converted to grey (data.in_chans=1, data.convert_channels)")
    return image.convert("L" if in_chans == 1 else "RGB")


def _array_to_output(array_CHW: np.ndarray, in_chans: int) -> DecodedImage:
    if in_chans in (1, 3):
        array_HWC = np.rint(array_CHW.transpose(1, 2, 0) * 255.0).astype(np.uint8)
        return Image.fromarray(array_HWC[:, :, 0] if in_chans == 1 else array_HWC, "L" if in_chans == 1 else "RGB")
    return torch.from_numpy(np.ascontiguousarray(array_CHW, dtype=np.float32))


def decode_pil(image: Image.Image, in_chans: int, convert_channels: bool = True, source: str = "") -> DecodedImage:
    """An opened PIL image as the transforms of ``in_chans`` expect it (see the module docstring); forces the decode.

    Raises:
        ChannelMismatchError: the channels do not match ``in_chans`` and may not (or cannot) be converted.
    """
    source = source or repr(getattr(image, "filename", "") or "image")
    if in_chans in (1, 3) and getattr(image, "n_frames", 1) == 1 and image.mode in GREY_MODES | COLOUR_MODES:
        return _pil_to_mode(image, in_chans, convert_channels, source)  # 8-bit: Pillow converts, no float copy
    array_CHW = _match_channels(_pil_to_array(image), in_chans, convert_channels, source)
    return _array_to_output(array_CHW, in_chans)


def read_image(
    path: str | Path, in_chans: int = 3, convert_channels: bool = True, draft_size: tuple[int, int] | None = None
) -> DecodedImage:
    """Decode the image file ``path`` for a model of ``in_chans`` channels (see the module docstring).

    Args:
        path: any Pillow-readable file; TIFFs that are not plain 8-bit grey/RGB are read with tifffile (16/32-bit,
            float, multi-page, multi-channel).
        in_chans: channels of the model.
        convert_channels: allow grey <-> RGB conversion (``data.convert_channels``).
        draft_size: ``(h, w)`` the image will be resized to; JPEGs are then decoded at a reduced scale that is
            still at least that size (Pillow's draft mode).

    Raises:
        OSError / ValueError / SyntaxError / Image.DecompressionBombError: an unreadable file (Pillow's errors);
        ChannelMismatchError (a ValueError): see :func:`decode_pil`.
    """
    path = Path(path)
    source = repr(str(path))
    with Image.open(path) as image:
        plain_8bit = image.mode in GREY_MODES | COLOUR_MODES and getattr(image, "n_frames", 1) == 1
        if path.suffix.lower() in TIFF_SUFFIXES and not (plain_8bit and in_chans in (1, 3)):
            image.close()
            array_CHW = _match_channels(_tiff_to_array(path), in_chans, convert_channels, source)
            return _array_to_output(array_CHW, in_chans)
        if draft_size is not None and in_chans in (1, 3):
            h, w = draft_size
            image.draft("L" if in_chans == 1 else "RGB", (w, h))
        image.load()
        return decode_pil(image, in_chans, convert_channels, source)


def decoded_size(image: DecodedImage) -> tuple[int, int]:
    """``(h, w)`` of a decoded image."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    return image.height, image.width
