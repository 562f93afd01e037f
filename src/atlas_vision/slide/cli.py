"""``atlas-vision slide info|embed|map|synth``: whole-slide images from file to feature grids and heatmaps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atlas_vision.slide.errors import SlideError

USAGE = """usage: atlas-vision slide <command> [options]

commands:
  info    levels, dimensions, downsamples and microns per pixel of slide files
  embed   per-stage feature grids (features.zarr), tissue.png, heatmap.png and slide.json per slide
  map     re-draw heatmap.png of an embedded slide (e.g. another stage)
  synth   write a synthetic pyramidal JPEG TIFF slide (for tests, docs and benchmarks)

Run `atlas-vision slide <command> --help` for a command's options."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _info(argv: list[str]) -> int:
    from atlas_vision.slide.open import BACKENDS, open_slide

    parser = argparse.ArgumentParser(prog="atlas-vision slide info", description="describe slide files")
    parser.add_argument("slides", nargs="+")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    args = parser.parse_args(argv)
    for path in args.slides:
        with open_slide(path, args.backend) as reader:
            print(json.dumps(reader.describe()))
    return 0


def _embed_parser() -> argparse.ArgumentParser:
    from atlas_vision.slide.open import BACKENDS
    from atlas_vision.slide.reader_pillow import DEFAULT_MAX_PIXELS
    from atlas_vision.slide.store import DTYPES

    p = argparse.ArgumentParser(
        prog="atlas-vision slide embed",
        description="Embed slides region by region (or exactly, --exact) into RUN_DIR/<slide_id>/. Resumable: "
        "re-run the same command after an interruption. Under `torchrun --nproc_per_node N -m atlas_vision slide "
        "embed ...` the regions are sharded over the ranks.",
    )
    p.add_argument("inputs", nargs="+", help="slide files, folders of slides, or .txt lists of paths")
    p.add_argument("--out", required=True, help="run folder (one sub-folder per slide)")
    p.add_argument("--model", default="atlas_small", help="timm model name (default atlas_small)")
    p.add_argument("--checkpoint", help="training run/checkpoint folder or a .safetensors file")
    p.add_argument("--num-classes", type=int, help="classifier outputs of --model (default 0: features only)")
    p.add_argument("--seed", type=int, default=0, help="random init seed without --checkpoint (default 0)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, help="working resolution in µm/px (e.g. 0.5 for 20x)")
    res.add_argument("--level", type=int, help="pyramid level to read (default 0)")
    p.add_argument("--slide-mpp", type=float, help="level-0 µm/px for files without that metadata")
    p.add_argument("--region-size", type=_positive_int, default=2048, help="region side in px (default 2048)")
    p.add_argument("--overlap", type=int, default=256, help="overlap between regions in px (default 256)")
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--dtype", default="float16", choices=DTYPES, help="feature storage type (default float16)")
    p.add_argument(
        "--tissue", default="auto", help="auto | saturation | grey | all | PATH to a mask image (non-zero = tissue)"
    )
    p.add_argument(
        "--min-tissue", type=float, default=0.0, help="tissue fraction a region must exceed (default 0: any tissue)"
    )
    p.add_argument("--thumbnail-size", type=_positive_int, default=1024)
    p.add_argument("--read-threads", type=_positive_int, default=2, help="prefetching reader threads (default 2)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable region instead of skipping")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="slide reader (default: by file suffix)")
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest image the Pillow reader decodes (default {DEFAULT_MAX_PIXELS:,})",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="one exact forward over the whole image (Atlas models; stem in tiles with halos)",
    )
    p.add_argument("--stem-tile", type=_positive_int, default=2048, help="exact mode: stem tile side in px")
    p.add_argument("--heatmap-stage", type=int, help="stage shown in the PCA heatmap (default: last)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--overwrite", action="store_true", help="recompute slides that already have results")
    return p


def _embed(argv: list[str]) -> int:
    from atlas_vision.slide.run import EmbedOptions, embed_slides

    args = _embed_parser().parse_args(argv)
    if args.num_classes is not None and args.num_classes < 0:
        raise SlideError(f"--num-classes must be >= 0, got {args.num_classes}")
    if not 0 <= args.min_tissue < 1:
        raise SlideError(f"--min-tissue must be in [0, 1), got {args.min_tissue}")
    options = EmbedOptions(
        model=args.model,
        checkpoint=args.checkpoint,
        num_classes=args.num_classes,
        seed=args.seed,
        mpp=args.mpp,
        level=args.level,
        slide_mpp=args.slide_mpp,
        region_size=args.region_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        dtype=args.dtype,
        tissue=args.tissue,
        min_tissue=args.min_tissue,
        thumbnail_size=args.thumbnail_size,
        read_threads=args.read_threads,
        strict=args.strict,
        backend=args.backend,
        max_pixels=args.max_pixels,
        exact=args.exact,
        stem_tile=args.stem_tile,
        overwrite=args.overwrite,
        heatmap_stage=args.heatmap_stage,
    )
    embed_slides(args.inputs, args.out, options, device=args.device)
    return 0


def _map(argv: list[str]) -> int:
    import numpy as np
    from PIL import Image

    from atlas_vision.slide.features import open_features
    from atlas_vision.slide.heatmap import render_heatmap_png

    parser = argparse.ArgumentParser(prog="atlas-vision slide map", description="re-draw heatmap.png")
    parser.add_argument("slide_dir", help="RUN_DIR/<slide_id>")
    parser.add_argument("--stage", type=int, help="stage for the PCA heatmap (default: last)")
    parser.add_argument(
        "--kind",
        default="auto",
        choices=("auto", "pca", "probabilities"),
        help="auto: class probabilities for a classifier run, else PCA (default); --stage implies pca",
    )
    parser.add_argument("--out", help="output PNG (default: SLIDE_DIR/heatmap.png)")
    args = parser.parse_args(argv)
    slide_dir = Path(args.slide_dir)
    features = open_features(slide_dir)
    thumb_path = slide_dir / "state" / "thumbnail.png"
    if not thumb_path.is_file():
        raise FileNotFoundError(f"{thumb_path} missing: is {slide_dir} a finished `slide embed` folder?")
    thumb = np.asarray(Image.open(thumb_path).convert("RGB"))
    w0, h0 = features.attrs["slide_dimensions"]
    ds = float(features.attrs["downsample"])
    to_thumb = (thumb.shape[1] / w0 * ds, thumb.shape[0] / h0 * ds)
    out = Path(args.out) if args.out else slide_dir / "heatmap.png"
    kind = "pca" if args.stage is not None and args.kind == "auto" else args.kind
    title = f"{slide_dir.name} - {features.attrs['model']}"
    shown = render_heatmap_png(out, thumb, features, to_thumb, title, args.stage, kind=kind)
    print(f"{out}: {shown}")
    return 0


def _synth(argv: list[str]) -> int:
    from atlas_vision.slide.synthetic import TissueLayout, write_synthetic_slide

    parser = argparse.ArgumentParser(prog="atlas-vision slide synth", description="write a synthetic slide")
    parser.add_argument("out", help="output .tif path")
    parser.add_argument("--width", type=_positive_int, default=32768)
    parser.add_argument("--height", type=_positive_int, default=24576)
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pieces", type=int, default=6, help="tissue pieces (default 6)")
    parser.add_argument("--coverage", type=float, default=0.3, help="approximate tissue fraction (default 0.3)")
    parser.add_argument("--tile-size", type=_positive_int, default=512)
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality 1..100 (default 85)")
    args = parser.parse_args(argv)
    layout = TissueLayout.random(args.width, args.height, args.seed, args.pieces, args.coverage)
    slide = write_synthetic_slide(
        args.out,
        args.width,
        args.height,
        mpp=args.mpp,
        seed=args.seed,
        layout=layout,
        tile_size=args.tile_size,
        quality=args.quality,
    )
    print(json.dumps({"path": str(slide.path), "level_dimensions": slide.level_dimensions, "mpp": slide.mpp}))
    return 0


COMMANDS = {"info": _info, "embed": _embed, "map": _map, "synth": _synth}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] not in COMMANDS:
        print(f"atlas-vision slide: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (SlideError, FileNotFoundError, ValueError) as exc:
        print(f"atlas-vision slide {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the output disk is full or read-only
        print(f"atlas-vision slide {argv[0]}: error: {exc}", file=sys.stderr)
        return 1
