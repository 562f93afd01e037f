"""``atlas-vision bench mixers|ablations|models``: parse and validate options, build settings, call the benchmark.

Glue only: every number is measured in :mod:`atlas_vision.bench.mixers`, :mod:`~atlas_vision.bench.ablations` and
:mod:`~atlas_vision.bench.models`. Defaults depend on the device: tiny sizes on CPU (seconds to minutes), the paper's
scales on CUDA. Invalid options exit with status 2 and a message naming the option.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from atlas_vision.bench.common import (
    DTYPE_CHOICES,
    BenchSettings,
    parse_int_list,
    parse_list,
    parse_size,
    parse_token_grid,
    resolve_device,
)

MIXER_CHOICES: tuple[str, ...] = ("window", "swin", "global", "hat", "dilated", "mamba", "msa")
# device type -> default token grids of `bench mixers`
DEFAULT_TOKENS: dict[str, str] = {"cpu": "256,1024,4096", "cuda": "1024,4096,16384"}
DEFAULT_RESOLUTIONS: dict[str, str] = {"cpu": "64,128", "cuda": "256,512,1024"}
DEFAULT_MODEL_BATCH: dict[str, int] = {"cpu": 2, "cuda": 32}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so :func:`main` returns the status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measurement")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    g.add_argument("--dtype", default="fp32", choices=DTYPE_CHOICES, help="fp32, or bf16/fp16 autocast")
    g.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    g.add_argument("--iters", type=int, default=5, help="timed calls; the median is reported (default 5)")
    g.add_argument("--seeds", default="0", help="comma-separated training seeds, e.g. 0,1,2 (timing uses the first)")
    g.add_argument("--out", default=None, help="output directory (default runs/bench/<command>-<timestamp>)")


def _add_shape(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network (equal for every mixer)")
    g.add_argument("--dim", type=int, default=192, help="channels C (default 192)")
    g.add_argument("--heads", type=int, default=6, help="attention heads (default 6)")
    g.add_argument("--depth", type=int, default=4, help="blocks (default 4)")
    g.add_argument("--patch-size", type=int, default=4, help="stem patch size for the training runs (default 4)")
    g.add_argument("--window", default="16", help="window side K or HxW of window/swin/hat/msa (default 16)")
    g.add_argument("--pool-stride", type=int, default=4, help="MSA pooling stride S (default 4)")
    g.add_argument(
        "--segment-length", type=int, default=None, help="dilated attention's first segment (default: window area)"
    )
    g.add_argument("--batch", type=int, default=1, help="batch of the timing runs (default 1)")


def _add_training(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accuracy runs (skipped with --speed-only)")
    g.add_argument("--speed-only", action="store_true", help="only time the block stacks, no training")
    g.add_argument("--task", default="longrange", choices=("longrange", "pathfinder", "fake"), help="built-in task")
    g.add_argument("--img-size", default="128", help="training image size N or HxW (default 128)")
    g.add_argument("--epochs", type=int, default=1, help="training epochs per model (default 1)")
    g.add_argument("--train-samples", type=int, default=512, help="training images (default 512)")
    g.add_argument("--val-samples", type=int, default=256, help="validation images (default 256)")
    g.add_argument("--train-batch", type=int, default=32, help="training batch size (default 32)")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    g.add_argument("--warmup-epochs", type=float, default=0.0, help="LR warm-up epochs (default 0)")
    g.add_argument("--num-workers", type=int, default=0, help="data-loader workers (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="atlas-vision bench", description="Benchmarks of token mixers, MSA ablations and backbones.")
    sub = parser.add_subparsers(dest="command", metavar="{mixers,ablations,models}", parser_class=_Parser)

    p = sub.add_parser("mixers", help="every token mixer in one network: time/memory vs tokens, accuracy vs time")
    p.add_argument("--mixers", default=",".join(MIXER_CHOICES), help=f"comma list of {', '.join(MIXER_CHOICES)}")
    p.add_argument(
        "--tokens",
        default=None,
        help="token grids: counts (perfect squares) or HxW, comma-separated "
        f"(default cpu: {DEFAULT_TOKENS['cpu']}; cuda: {DEFAULT_TOKENS['cuda']})",
    )
    _add_shape(p)
    _add_training(p)
    _add_common(p)

    p = sub.add_parser("ablations", help="MSA ablations: communication, composition, window K, stride S, pool op")
    p.add_argument(
        "--ablations",
        default="communication,composition,window,pool_stride,pool_op",
        help="comma list of communication, composition, window, pool_stride, pool_op",
    )
    p.add_argument("--tokens", default="4096", help="token grids to time (default 4096 = 64x64, Tables 4-5)")
    p.add_argument("--windows", default="8,16", help="window sides of the window ablation (default 8,16)")
    p.add_argument("--strides", default="2,4", help="pooling strides of the pool_stride ablation (default 2,4)")
    p.add_argument(
        "--composition",
        default="stack",
        choices=("stack", "conv_downsample", "atlas"),
        help="composition of the variants that do not vary it (default stack, Table 4)",
    )
    p.add_argument(
        "--communication",
        default="full",
        choices=("full", "top_down", "bottom_up", "none", "single_scale"),
        help="communication of the variants that do not vary it (default full)",
    )
    p.add_argument("--num-scales", type=int, default=2, help="scales built at least / weight sets (default 2)")
    _add_shape(p)
    _add_training(p)
    _add_common(p)

    p = sub.add_parser("models", help="whole backbones: training images/s and peak memory vs resolution")
    p.add_argument(
        "--models",
        default=None,
        help="comma list of timm names (default cuda: atlas_small, atlas_base, vit_base_patch16_224, "
        "swin_base_patch4_window7_224, convnext_base, faster_vit_4_any_res, mamba_vision_B, longvit; "
        "cpu: atlas_tiny, vit_tiny_patch16_224, swin_tiny_patch4_window7_224, convnext_atto, "
        "faster_vit_0_any_res, mamba_vision_T, longvit)",
    )
    p.add_argument(
        "--resolutions",
        default=None,
        help=f"image sizes N or HxW (default cpu: {DEFAULT_RESOLUTIONS['cpu']}; cuda: {DEFAULT_RESOLUTIONS['cuda']})",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="starting batch; halved on out-of-memory until it fits (default cpu 2, cuda 32)",
    )
    _add_common(p)
    return parser


def _settings(args: argparse.Namespace) -> BenchSettings:
    device = resolve_device(args.device)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / "bench" / f"{args.command}-{stamp}"
    return BenchSettings(
        device=device,
        dtype=args.dtype,
        warmup=args.warmup,
        iters=args.iters,
        seeds=parse_int_list(args.seeds, "--seeds", minimum=0),
        out=out,
    )


def _shape(args: argparse.Namespace):
    from atlas_vision.bench.mixers import MixerShape

    for name in ("dim", "heads", "depth", "patch_size", "pool_stride", "batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.segment_length is not None and args.segment_length < 1:
        raise ValueError(f"--segment-length must be >= 1, got {args.segment_length}")
    if args.dim % args.heads:
        raise ValueError(f"--dim {args.dim} must be divisible by --heads {args.heads}")
    return MixerShape(
        dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        patch_size=args.patch_size,
        window=parse_size(args.window, "--window"),
        pool_stride=(args.pool_stride, args.pool_stride),
        segment_length=args.segment_length,
    )


def _budget(args: argparse.Namespace):
    from atlas_vision.bench.accuracy import TrainBudget

    if args.speed_only:
        return None
    return TrainBudget(
        task=args.task,
        img_size=parse_size(args.img_size, "--img-size"),
        epochs=args.epochs,
        train_samples=args.train_samples,
        val_samples=args.val_samples,
        batch_size=args.train_batch,
        lr=args.lr,
        warmup_epochs=args.warmup_epochs,
        num_workers=args.num_workers,
    )


def _grids(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(parse_token_grid(t) for t in text.split(",") if t.strip())


def _run(args: argparse.Namespace) -> None:
    settings = _settings(args)
    if args.command == "mixers":
        from atlas_vision.bench.mixers import run_mixers
        from atlas_vision.mixers import MixerKind

        mixers = tuple(MixerKind(m) for m in parse_list(args.mixers, "--mixers", MIXER_CHOICES))
        grids = _grids(args.tokens or DEFAULT_TOKENS[settings.device.type])
        shape, budget = _shape(args), _budget(args)
        run_mixers(mixers, grids, shape, args.batch, settings, budget)
    elif args.command == "ablations":
        from atlas_vision.bench.ablations import ABLATIONS, run_ablations

        ablations = parse_list(args.ablations, "--ablations", ABLATIONS)
        base = {"composition": args.composition, "communication": args.communication, "num_scales": args.num_scales}
        if args.num_scales < 1:
            raise ValueError(f"--num-scales must be >= 1, got {args.num_scales}")
        run_ablations(
            ablations,
            _grids(args.tokens),
            _shape(args),
            parse_int_list(args.windows, "--windows", 2),
            parse_int_list(args.strides, "--strides", 2),
            base,
            args.batch,
            settings,
            _budget(args),
        )
    else:
        from atlas_vision.bench.models import DEFAULT_MODELS, DEFAULT_MODELS_CPU, run_models

        default = DEFAULT_MODELS if settings.device.type == "cuda" else DEFAULT_MODELS_CPU
        models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else default
        if not models:
            raise ValueError("--models needs at least one model name")
        text = args.resolutions or DEFAULT_RESOLUTIONS[settings.device.type]
        resolutions = tuple(parse_size(t, "--resolutions") for t in text.split(",") if t.strip())
        batch = args.batch if args.batch is not None else DEFAULT_MODEL_BATCH[settings.device.type]
        if batch < 1:
            raise ValueError(f"--batch must be >= 1, got {batch}")
        run_models(models, resolutions, batch, settings)
    print(f"results written to {settings.out}")


def main(argv: list[str]) -> int:
    """Entry point of ``atlas-vision bench``; returns the exit status (0 ok, 2 invalid options)."""
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise ValueError("choose a benchmark: mixers, ablations or models")
        _run(args)
    except ValueError as err:
        print(f"atlas-vision bench: error: {err}", file=sys.stderr)
        return 2
    return 0
