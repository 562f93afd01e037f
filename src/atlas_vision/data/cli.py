"""``atlas-vision data <command>``: data set tools.

Commands:
    hr-in100   build the HR-IN100 folder tree (ImageNet-100 classes) from an ImageNet-1k tree
    samples    write sample PNGs of a procedural task (longrange, pathfinder)
    speed      measure the generation speed of a procedural task
"""

from __future__ import annotations

import argparse
import sys

from atlas_vision.data.config import DIFFICULTIES, DataConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atlas-vision data", description="Data set tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{hr-in100,samples,speed}")

    hr = sub.add_parser(
        "hr-in100",
        help="build OUT/{train,val}/<wnid> for the 100 HR-IN100 classes from an ImageNet-1k tree",
        description="Select the ImageNet-100 classes from IMAGENET/{train,val}/<wnid>/ (validation images must be "
        "sorted into class folders) into OUT/{train,val}/<wnid>. Idempotent.",
    )
    hr.add_argument("--imagenet", required=True, help="ImageNet-1k root with train/<wnid>/ and val/<wnid>/")
    hr.add_argument("--out", required=True, help="output root")
    hr.add_argument("--mode", choices=("symlink", "copy"), default="symlink", help="link class folders or copy images")
    hr.add_argument("--classes", default=None, help="file of WordNet IDs, one per line (default: the packaged list)")
    hr.add_argument("--quiet", action="store_true", help="print only the summary")

    for name, text in (("samples", "write sample PNGs of a procedural task"), ("speed", "time sample generation")):
        p = sub.add_parser(name, help=text, description=text + ".")
        p.add_argument("--task", choices=("longrange", "pathfinder"), default="longrange")
        p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=(128, 128))
        p.add_argument("--difficulty", choices=tuple(DIFFICULTIES), default="hard", help="pathfinder contour length")
        p.add_argument("--object-size", type=int, default=0, help="longrange object size in px (0: automatic)")
        p.add_argument("--seed", type=int, default=0)
        if name == "samples":
            p.add_argument("--out", required=True, help="output directory")
            p.add_argument("--count", type=int, default=4, help="number of images")
        else:
            p.add_argument("--count", type=int, default=100, help="images per timing round")
    return parser


def main(argv: list[str]) -> int:
    """Run ``atlas-vision data`` with ``argv`` (without the leading ``data``); return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "hr-in100":
            return _hr_in100(args)
        cfg = DataConfig(
            task=args.task, img_size=tuple(args.img_size), difficulty=args.difficulty, object_size=args.object_size
        )
        if args.command == "samples":
            from atlas_vision.data.samples import write_samples

            for path in write_samples(cfg, args.out, args.count, seed=args.seed):
                print(path)
            return 0
        from atlas_vision.data.samples import measure_speed

        print(measure_speed(cfg, args.count, seed=args.seed).line())
        return 0
    except (ValueError, FileNotFoundError, FileExistsError) as err:  # bad input: exit 2, as every other command
        print(f"atlas-vision data {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a failing read or write (disk full, permissions): exit 1
        print(f"atlas-vision data {args.command}: error: {err}", file=sys.stderr)
        return 1


def _hr_in100(args: argparse.Namespace) -> int:
    from atlas_vision.data.hr_in100 import build_hr_in100, read_class_file

    classes = read_class_file(args.classes) if args.classes else None
    report = build_hr_in100(
        args.imagenet, args.out, mode=args.mode, classes=classes, progress=None if args.quiet else print
    )
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
