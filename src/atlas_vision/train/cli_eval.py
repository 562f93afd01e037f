"""``atlas-vision eval``: top-1/top-5, per-class accuracy and confusion matrix of a checkpoint.  Glue only."""

from __future__ import annotations

import json
import os
import sys

from atlas_vision.train._cli_args import UsageError, one_value, setup_logging, split_options

USAGE = """\
usage: atlas-vision eval --checkpoint RUN_DIR_OR_CHECKPOINT [options] [--data.KEY VALUE ...]

Evaluate a checkpoint on its validation set (by default the training run's own data config); writes eval.json,
confusion_matrix.json and confusion_matrix.png into --out (default RUN_DIR/eval).

  --checkpoint PATH      run directory or checkpoint directory (required)
  --which best|last      which checkpoint of a run directory (default best)
  --ema                  evaluate the EMA weights
  --device D             auto (default), cpu, cuda, cuda:N
  --precision P          auto (default: bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16
  --batch-size N         evaluation batch size (default 64)
  --out DIR              output directory
  --json                 print the full report as JSON on stdout
  --data.KEY VALUE       change the validation data, e.g. --data.img_size 256 256, --data.val_samples 2000
"""


def main(argv: list[str]) -> int:
    from atlas_vision.train.config_io import ConfigError

    try:
        opts: dict[str, str] = {}
        flags: set[str] = set()
        data_overrides: list[tuple[str, list[str]]] = []
        for key, values in split_options(list(argv)):
            if key == "help":
                print(USAGE)
                return 0
            if key in ("ema", "json"):
                if values:
                    raise UsageError(f"--{key} takes no value, got {values}")
                flags.add(key)
            elif key in ("checkpoint", "which", "device", "precision", "batch-size", "out"):
                opts[key] = one_value(key, values)
            elif key.startswith("data."):
                data_overrides.append((key, values))
            else:
                raise UsageError(f"unknown option --{key}\n\n{USAGE}")
        if "checkpoint" not in opts:
            raise UsageError(f"--checkpoint is required\n\n{USAGE}")
        which = opts.get("which", "best")
        if which not in ("best", "last"):
            raise UsageError(f"--which must be best or last, got {which!r}")
        try:
            batch_size = int(opts.get("batch-size", "64"))
        except ValueError:
            raise UsageError(f"--batch-size must be an integer, got {opts['batch-size']!r}") from None
    except UsageError as err:
        print(f"atlas-vision eval: error: {err}", file=sys.stderr)
        return 2

    setup_logging()
    from atlas_vision.train.evaluate import checkpoint_data_config, evaluate_checkpoint, replace_data

    try:
        data = None
        if data_overrides:
            data = replace_data(checkpoint_data_config(opts["checkpoint"], prefer=which), data_overrides)
        report = evaluate_checkpoint(
            opts["checkpoint"],
            data,
            device=opts.get("device", "auto"),
            batch_size=batch_size,
            ema="ema" in flags,
            prefer=which,
            out=opts.get("out"),
            precision=opts.get("precision", "auto"),
        )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        if os.environ.get("ATLAS_VISION_TRACEBACK"):
            raise
        print(f"atlas-vision eval: error: {err}", file=sys.stderr)
        return 2
    if "json" in flags:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"checkpoint {report['checkpoint']}: {report['count']} images"
            + (f" ({report['skipped']} unreadable, skipped)" if report["skipped"] else "")
        )
        from atlas_vision.train.progress import top5_label

        print(
            f"top-1 {report['top1']:.2f}%  top-5 {report['top5']:.2f}%{top5_label(report['topk'])}  "
            f"loss {report['loss']:.4f}"
        )
        width = max(len(n) for n in report["class_names"])
        for name, acc in report["per_class_accuracy"].items():
            print(f"  {name:<{width}}  {acc:6.2f}%")
        if "slide_metrics" in report:
            from atlas_vision.slidelearn.metrics import format_slide_metrics

            print(format_slide_metrics(report["slide_metrics"]))
        if "out" in report:
            print(f"wrote {report['out']}/eval.json, confusion_matrix.json, confusion_matrix.png")
    return 0
