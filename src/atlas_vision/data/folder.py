"""Image-folder data sets: ``ROOT/{train,val}/<class>/<image>`` in any format and size Pillow reads.

Unreadable images are handled in one of two ways (``strict``):

* strict: ``__getitem__`` raises ``UnreadableImageError`` naming the file at once;
* non-strict (default): ``__getitem__`` returns ``None`` and logs one warning per file (per process); batch with
  ``collate_skip_none``, which drops the ``None`` samples and reports how many were skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from atlas_vision.data.decode import DecodedImage, read_image

log = logging.getLogger(__name__)

#: File extensions (lower case, with the dot) of the formats this Pillow installation can open.
IMG_EXTENSIONS: frozenset[str] = frozenset(
    ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
)

# Files already reported as unreadable in this process (one warning per file).
_warned: set[str] = set()


class UnreadableImageError(RuntimeError):
    """An image file that exists but cannot be decoded (strict mode)."""


def find_classes(split_dir: Path) -> list[str]:
    """Sorted class sub-folder names of ``split_dir``.

    Raises:
        FileNotFoundError: ``split_dir`` does not exist or is not a directory.
        ValueError: it has no (non-hidden) sub-folders.
    """
    if not split_dir.is_dir():
        raise FileNotFoundError(f"image folder {split_dir} does not exist (expected {split_dir}/<class>/<image>)")
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {split_dir} has no class sub-folders (expected {split_dir}/<class>/<image>)")
    return classes


def list_images(class_dir: Path) -> list[Path]:
    """Image files (by extension) under ``class_dir``, recursively, following symlinks, sorted."""
    files = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [
            Path(dirpath, f) for f in filenames if not f.startswith(".") and Path(f).suffix.lower() in IMG_EXTENSIONS
        ]
    return sorted(files)


def scan_split(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(path, label)`` of every image of ``split_dir``; label = index of its class folder in ``classes``.

    Raises:
        FileNotFoundError: a class folder is missing.
        ValueError: a class folder holds no image file.
    """
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise FileNotFoundError(f"class folder {class_dir} does not exist (every split needs the same classes)")
        files = list_images(class_dir)
        if not files:
            raise ValueError(
                f"class folder {class_dir} has no image files (readable extensions include .jpg, .jpeg, .png, ...)"
            )
        samples += [(path, label) for path in files]
    return samples


class ImageFolderDataset(Dataset):
    """``(transform(image), label)`` for the images of one split; ``None`` for unreadable ones unless strict.

    Args:
        split_dir: e.g. ``ROOT/train``.
        classes: class folder names; the label is the index into this list (pass the training split's classes to
            the validation split so the labels agree).
        transform: decoded image (:func:`atlas_vision.data.decode.read_image`: a PIL ``"L"``/``"RGB"`` image for
            ``in_chans`` 1/3, else ``float32 [in_chans, H, W]``) -> tensor ``[in_chans, h, w]``.
        strict: raise ``UnreadableImageError`` on an unreadable file instead of returning ``None``.
        in_chans: channels every image is decoded to (16-bit and float images scaled by their true range).
        convert_channels: allow grey <-> RGB conversion to reach ``in_chans``; otherwise such a file is unreadable.
    """

    def __init__(
        self,
        split_dir: Path,
        classes: list[str],
        transform: Callable[[DecodedImage], torch.Tensor],
        strict: bool,
        in_chans: int = 3,
        convert_channels: bool = True,
    ) -> None:
        self.split_dir = Path(split_dir)
        self.classes = list(classes)
        self.samples = scan_split(self.split_dir, self.classes)
        self.transform = transform
        self.strict = strict
        self.in_chans = in_chans
        self.convert_channels = convert_channels

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> DecodedImage | None:
        """The decoded image of sample ``index`` (``in_chans`` channels), or ``None`` if unreadable and not strict."""
        path = self.samples[index][0]
        try:
            return read_image(path, self.in_chans, self.convert_channels)  # a full decode inside the try
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            if self.strict:
                raise UnreadableImageError(f"cannot read image {path}: {err}") from err
            if str(path) not in _warned:
                _warned.add(str(path))
                log.warning("skipping unreadable image %s: %s", path, err)
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        image = self.load(index)
        if image is None:
            return None
        return self.transform(image), self.samples[index][1]
