"""``atlas-vision train``: build a TrainConfig from defaults, ``--config FILE`` and ``--section.key value`` overrides,
then call :func:`atlas_vision.train.run_training`.  Glue only."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from atlas_vision.train._cli_args import UsageError, one_value, setup_logging, split_options

if TYPE_CHECKING:
    from atlas_vision.train.config import TrainConfig

USAGE = """\
usage: atlas-vision train [--config FILE] [--SECTION.KEY VALUE ...] [shortcuts] [--print-config] [-h]

Train a model and write a run directory (config.yaml, metrics.jsonl, summary.json, checkpoints/{last,best},
loss/accuracy/confusion-matrix PNGs).  With no arguments: the default model on the built-in `longrange` task.

  --config FILE          YAML file with any of the sections below (later options override it)
  --print-config         print the resolved config as YAML and exit (e.g. > configs/my.yaml)
  --SECTION.KEY VALUE    override one key, e.g. --optim.lr 3e-4, --data.img_size 128 128 (or 128,128),
                         --model.kwargs.communication single_scale, --model.compile (a bare flag = true)
shortcuts:
  --epochs N  --seed N  --out DIR  --name NAME  --resume RUN_OR_CHECKPOINT  --device auto|cpu|cuda[:N]
  (--resume without --config continues with the checkpoint's own config; other options still override it)

Distributed: torchrun --nproc_per_node N -m atlas_vision train ...
Ctrl-C / SIGTERM writes checkpoints/last and exits (130 / 143); continue with --resume RUN_DIR.
"""

SHORTCUTS = {
    "epochs": "schedule.epochs",
    "seed": "run.seed",
    "out": "run.out",
    "name": "run.name",
    "resume": "run.resume",
    "device": "run.device",
}


def parse(argv: Sequence[str]) -> tuple[TrainConfig | None, bool, bool]:
    """Parse ``argv`` into ``(config, print_config, show_help)`` (config is ``None`` with help); raises
    ``UsageError``/``ConfigError``."""
    from atlas_vision.train.checkpoint import CONFIG_FILE, find_checkpoint, run_dir_of
    from atlas_vision.train.config import TrainConfig
    from atlas_vision.train.config_io import build_config, load_yaml

    config_file: str | None = None
    print_config = show_help = False
    overrides: list[tuple[str, list[str]]] = []
    for key, values in split_options(list(argv)):
        if key == "help":
            show_help = True
        elif key == "config":
            config_file = one_value(key, values)
        elif key == "print-config":
            if values:
                raise UsageError(f"--print-config takes no value, got {values}")
            print_config = True
        elif key in SHORTCUTS:
            overrides.append((SHORTCUTS[key], [one_value(key, values)]))
        elif "." in key:
            overrides.append((key, values))
        else:
            raise UsageError(
                f"unknown option --{key}; config keys are dotted (--optim.lr), shortcuts are "
                f"{', '.join('--' + s for s in SHORTCUTS)}, plus --config and --print-config"
            )
    if show_help:
        return None, False, True
    resume = next((v[0] for k, v in overrides if k == "run.resume" and v), "")
    base = None
    if resume and config_file is None:  # continue with the run's own config
        ckpt = find_checkpoint(resume)
        base = load_yaml(ckpt / CONFIG_FILE)
        base.setdefault("run", {})["out"] = str(run_dir_of(ckpt))
    return build_config(TrainConfig, config_file, overrides, base=base), print_config, False


def main(argv: list[str]) -> int:
    from atlas_vision.train.checkpoint import CheckpointError
    from atlas_vision.train.config import TrainConfig
    from atlas_vision.train.config_io import ConfigError, describe, dump_yaml

    try:
        cfg, print_config, show_help = parse(argv)
    except (UsageError, ConfigError, FileNotFoundError, CheckpointError) as err:  # e.g. --resume of a damaged run
        print(f"atlas-vision train: error: {err}", file=sys.stderr)
        return 2
    if show_help:
        print(USAGE + "\nconfig keys (type = default):" + "\n".join(describe(TrainConfig())))
        return 0
    if print_config:
        sys.stdout.write(dump_yaml(cfg))
        return 0
    setup_logging()
    from atlas_vision.data.folder import UnreadableImageError
    from atlas_vision.train.trainer import run_training

    try:
        summary = run_training(cfg)
    except (ConfigError, ValueError, FileNotFoundError, UnreadableImageError, OSError) as err:
        if os.environ.get("ATLAS_VISION_TRACEBACK"):
            raise
        print(
            f"atlas-vision train: error: {one_line(err)} (ATLAS_VISION_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return 2
    return int(summary.get("exit_code", 0))


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line.  An exception re-raised from a DataLoader worker carries the worker's
    traceback in its message; its last line holds the original message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if "Original Traceback" in str(err):
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return " ".join(lines)
