"""Training, evaluation and prediction for Atlas (and any timm) models.

Programmatic API::

    from atlas_vision.train import TrainConfig, build_config, run_training, evaluate_checkpoint

    cfg = build_config(TrainConfig, "configs/default.yaml", overrides=[("schedule.epochs", ["3"])])
    summary = run_training(cfg)            # dict, also in RUN/summary.json
    report = evaluate_checkpoint(summary["run_dir"])

The command line (``atlas-vision train|eval|predict``) is a thin layer over these functions.
"""

from atlas_vision.train.config import ModelConfig, OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from atlas_vision.train.config_io import ConfigError, build_config, dump_yaml, from_dict, to_dict
from atlas_vision.train.evaluate import LoadedCheckpoint, evaluate_checkpoint, load_checkpoint
from atlas_vision.train.trainer import run_training

__all__ = [
    "ConfigError",
    "LoadedCheckpoint",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "build_config",
    "dump_yaml",
    "evaluate_checkpoint",
    "from_dict",
    "load_checkpoint",
    "run_training",
    "to_dict",
]
