"""HR-IN100: the ImageNet-100 class subset of an ImageNet-1k folder tree, as an image-folder tree.

The Atlas paper's HR-IN100 benchmark is the 100-class ImageNet subset of Tian et al. 2020 (CMC); the images are
upsampled to the target resolution (1024-4096 px) on the fly by the transforms, so no resized copy is made.

Input, an ImageNet-1k tree with the validation images sorted into class folders::

    IMAGENET/train/<wnid>/*.JPEG
    IMAGENET/val/<wnid>/*.JPEG     # NOT the flat val/ of the official tarball: sort it first

Output (symlinks to the class folders by default, or copies of the images)::

    OUT/train/<wnid> -> IMAGENET/train/<wnid>
    OUT/val/<wnid>   -> IMAGENET/val/<wnid>
    OUT/classes.txt                # the class list used

Re-running with the same arguments changes nothing (idempotent); missing classes are all listed in one error.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from atlas_vision.data.folder import list_images

SPLITS: tuple[str, ...] = ("train", "val")
MODES: tuple[str, ...] = ("symlink", "copy")
_WNID = re.compile(r"^n\d{8}$")


@dataclass
class SplitReport:
    """What ``build_hr_in100`` did for one split."""

    classes: int = 0
    images: int = 0
    created: int = 0  # class links (symlink mode) or image files (copy mode) written now
    unchanged: int = 0  # ... already in place from an earlier run
    stray: list[str] = field(default_factory=list)  # folders in OUT/<split> that are not in the class list


@dataclass
class BuildReport:
    """Result of ``build_hr_in100``: the output root, the mode and one ``SplitReport`` per split."""

    out: Path
    mode: str
    splits: dict[str, SplitReport]

    def lines(self) -> list[str]:
        """Human-readable summary."""
        unit = "class links" if self.mode == "symlink" else "image files"
        lines = [f"HR-IN100 at {self.out} ({self.mode} mode)"]
        for name, rep in self.splits.items():
            lines.append(
                f"  {name}: {rep.classes} classes, {rep.images} images; {rep.created} {unit} created, "
                f"{rep.unchanged} unchanged"
            )
            if rep.stray:
                lines.append(f"  warning: {self.out / name} also holds folders not in the class list: {rep.stray[:10]}")
        return lines


def default_class_file() -> Path:
    """The packaged ImageNet-100 (CMC) class list: 100 WordNet IDs, one per line."""
    return Path(str(resources.files("atlas_vision.data").joinpath("in100_classes.txt")))


def read_class_file(path: str | os.PathLike[str] | None = None) -> list[str]:
    """WordNet IDs from ``path`` (default: the packaged list): one per line; blank lines and ``#`` comments skipped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not a WordNet ID (``n`` + 8 digits), an ID repeats, or the file lists none.
    """
    file = Path(path) if path is not None else default_class_file()
    if not file.is_file():
        raise FileNotFoundError(f"class list {file} does not exist")
    wnids: list[str] = []
    for number, raw in enumerate(file.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _WNID.match(line):
            raise ValueError(f"{file}:{number}: {line!r} is not a WordNet ID like n01440764")
        if line in wnids:
            raise ValueError(f"{file}:{number}: {line} is listed twice")
        wnids.append(line)
    if not wnids:
        raise ValueError(f"class list {file} lists no WordNet IDs")
    return wnids


def check_imagenet(imagenet: Path, wnids: list[str]) -> None:
    """Raise a clear error if ``imagenet`` lacks a split, has a flat val/, or lacks any of ``wnids``."""
    if not imagenet.is_dir():
        raise FileNotFoundError(f"ImageNet directory {imagenet} does not exist")
    for split in SPLITS:
        if not (imagenet / split).is_dir():
            raise FileNotFoundError(
                f"{imagenet / split} does not exist; expected {imagenet}/train/<wnid>/*.JPEG and "
                f"{imagenet}/val/<wnid>/*.JPEG"
            )
    flat = [p.name for p in (imagenet / "val").glob("*.JPEG")][:3]
    if flat:
        raise ValueError(
            f"{imagenet / 'val'} holds images directly ({', '.join(flat)}, ...); sort the validation images into "
            f"class folders val/<wnid>/ first (e.g. with the labels of the ILSVRC2012 devkit)"
        )
    missing = {split: [w for w in wnids if not (imagenet / split / w).is_dir()] for split in SPLITS}
    if any(missing.values()):
        details = "; ".join(f"{split}: {len(m)} missing: {' '.join(m)}" for split, m in missing.items() if m)
        raise ValueError(f"{imagenet} lacks classes of the list ({details})")


def build_hr_in100(
    imagenet: str | os.PathLike[str],
    out: str | os.PathLike[str],
    mode: str = "symlink",
    classes: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildReport:
    """Create ``OUT/{train,val}/<wnid>`` for the HR-IN100 classes from an ImageNet-1k tree.

    Args:
        imagenet: root with ``train/<wnid>/`` and ``val/<wnid>/`` (validation images sorted into class folders).
        out: output root (created if needed).
        mode: ``"symlink"`` (one link per class folder; fast, no extra space) or ``"copy"`` (copies the images).
        classes: WordNet IDs to take (default: the packaged ImageNet-100 list).
        progress: called with a line of text after each class (e.g. ``print``).

    Returns:
        A ``BuildReport`` with the class and image counts per split.

    Raises:
        ValueError: unknown mode, missing classes (all listed), flat val/ folder, an empty class folder.
        FileNotFoundError: a missing directory.
        FileExistsError: ``OUT`` holds a class entry made by the other mode (remove it first).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    src_root, out_root = Path(imagenet).expanduser().resolve(), Path(out).expanduser()
    wnids = classes if classes is not None else read_class_file()
    check_imagenet(src_root, wnids)
    reports = {}
    for split in SPLITS:
        (out_root / split).mkdir(parents=True, exist_ok=True)
        rep = SplitReport(classes=len(wnids))
        for i, wnid in enumerate(wnids):
            src, dst = src_root / split / wnid, out_root / split / wnid
            images = list_images(src)
            if not images:
                raise ValueError(f"class folder {src} has no image files")
            rep.images += len(images)
            created = _link(src, dst) if mode == "symlink" else _copy(images, src, dst)
            rep.created += created
            rep.unchanged += (1 if mode == "symlink" else len(images)) - created
            if progress is not None:
                progress(f"{split} {i + 1}/{len(wnids)} {wnid}: {len(images)} images")
        listed = set(wnids)
        rep.stray = sorted(p.name for p in (out_root / split).iterdir() if p.is_dir() and p.name not in listed)
        reports[split] = rep
    (out_root / "classes.txt").write_text("\n".join(wnids) + "\n")
    return BuildReport(out=out_root, mode=mode, splits=reports)


def _link(src: Path, dst: Path) -> int:
    """Make ``dst`` a symlink to ``src``; return 1 if created or re-pointed, 0 if already correct."""
    if dst.is_symlink():
        if Path(os.readlink(dst)) == src or dst.resolve() == src.resolve():
            return 0
        dst.unlink()  # an old link to another ImageNet copy: re-point it
    elif dst.exists():
        raise FileExistsError(f"{dst} exists and is not a symlink (made with --mode copy?); remove it first")
    os.symlink(src, dst, target_is_directory=True)
    return 1


def _copy(images: list[Path], src: Path, dst: Path) -> int:
    """Copy the ``images`` of ``src`` into ``dst`` keeping relative paths; return how many files were written."""
    if dst.is_symlink():
        raise FileExistsError(f"{dst} is a symlink (made with --mode symlink?); remove it first")
    written = 0
    for image in images:
        target = dst / image.relative_to(src)
        if target.is_file() and target.stat().st_size == image.stat().st_size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copy2(image, tmp)
        os.replace(tmp, target)
        written += 1
    return written
