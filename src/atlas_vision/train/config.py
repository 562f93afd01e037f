"""The training configuration: a tree of dataclasses.

``TrainConfig(data, model, optim, schedule, run)`` is the single description of a training run.  It is built from
the dataclass defaults below, then a YAML file (``--config``), then dotted command-line overrides
(``--optim.lr 3e-4``); :mod:`atlas_vision.train.config_io` loads, overrides and dumps it (OmegaConf structured
configs).

**The default recipe lives here, in the dataclass defaults and** :func:`default_data` (one place to tune it).  ``configs/default.yaml`` is a
dump of these defaults (``atlas-vision train --print-config > configs/default.yaml``); a test keeps the two equal.

Validation that needs only the config (value ranges, choices) happens in ``__post_init__`` of each dataclass, so an
invalid value fails when the config is built, with the dotted key in the message.  Things that need the runtime
(world size, number of classes) are checked where they become known (see :func:`accumulation_steps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from atlas_vision.data import DataConfig

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Progress = Literal["auto", "always", "never"]
CpuAllocator = Literal["keep", "default"]


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"config key {key!r}: expected {expected}, got {value!r}")


@dataclass
class ModelConfig:
    """Which network to train; passed to ``timm.create_model`` (``import atlas_vision`` registers the Atlas models)."""

    name: str = "atlas_tiny"
    """timm model name, e.g. ``atlas_tiny``, ``atlas_tiny_window``, ``resnet10t``."""
    drop_path_rate: float = 0.0
    """Stochastic depth rate (only passed to the model when > 0)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``timm.create_model``, e.g. ``{communication: single_scale}``."""
    channels_last: bool = False
    """Use the channels-last memory format for the model and its inputs."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    grad_checkpointing: bool = False
    """Call ``model.set_grad_checkpointing(True)`` (trades compute for activation memory)."""
    init_from: str = ""
    """Start from these weights (a run directory, checkpoint directory or weight file): every tensor is copied by
    name; the classifier is re-initialised when its shape differs (another number of classes). Unused on resume."""

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name", self.name, "a timm model name")
        _check(0.0 <= self.drop_path_rate < 1.0, "model.drop_path_rate", self.drop_path_rate, "a rate in [0, 1)")
        reserved = {"num_classes", "in_chans", "drop_path_rate", "pretrained"} & set(self.kwargs)
        _check(
            not reserved,
            "model.kwargs",
            sorted(reserved),
            "no keys set elsewhere (num_classes and in_chans come "
            "from the data, drop_path_rate from model.drop_path_rate)",
        )


@dataclass
class OptimConfig:
    """Optimizer (timm ``create_optimizer_v2``), batch sizes, regularisation and EMA."""

    opt: str = "adamw"
    """timm optimizer name: adamw, sgd, lamb, lion, ..."""
    lr: float = 4e-3
    """Peak learning rate (absolute, not rescaled by batch size). 4e-3 since 2026-12-02: with 2e-3 one seed in five
    of the default run stayed at chance for 25 epochs (docs/benchmarks.md section 6)."""
    weight_decay: float = 0.05
    """Decoupled weight decay; biases and 1-D (norm) parameters get none (timm's grouping)."""
    betas: tuple[float, float] | None = None
    """Adam-family betas; ``null`` = the optimizer's default."""
    momentum: float = 0.9
    """Momentum for SGD-family optimizers."""
    eps: float | None = None
    """Optimizer epsilon; ``null`` = the optimizer's default."""
    clip_grad: float = 1.0
    """Clip the global gradient L2 norm to this value; 0 = no clipping.  1.0 since 2026-12-07: without it, seed 12
    of the default run learnt the task (training loss 0.02) and then lost it for good to one update whose gradient
    norm was 55 (0.2-1.7 before it; docs/benchmarks.md section 6).  The paper's recipe does not clip; its configs
    (configs/hr_in100_*.yaml) set 0."""
    batch_size: int = 64
    """Per-device micro-batch size."""
    global_batch: int = 0
    """Images per optimizer update over all devices; 0 = batch_size x world size (no accumulation).
    Gradient accumulation = global_batch / (batch_size x world size), which must be a whole number."""
    label_smoothing: float = 0.0
    """Label smoothing of the training loss (applied inside timm's Mixup when mixup/cutmix is on)."""
    mixup: float = 0.0
    """Mixup alpha; 0 = off."""
    cutmix: float = 0.0
    """CutMix alpha; 0 = off."""
    mixup_prob: float = 1.0
    """Probability of applying mixup or cutmix to a batch."""
    mixup_switch_prob: float = 0.5
    """Probability of cutmix instead of mixup when both are on."""
    ema_decay: float = 0.0
    """Decay of the model weight EMA (timm ModelEmaV3); 0 = off."""
    aux_weight: float = 1.0
    """Weight of the auxiliary loss on tasks that define an auxiliary target (``longrange``: how many of the two
    ringed objects are red), predicted by a linear head on the pooled features that exists only in training
    (:mod:`atlas_vision.train.aux_head`); 0 = off; other tasks have none and ignore it.  1.0 since 2026-12-07: the
    default run without it stayed at chance for some seeds (2 of seeds 0-19; docs/benchmarks.md section 6)."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", self.lr, "a positive learning rate")
        _check(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "a value >= 0")
        _check(self.clip_grad >= 0, "optim.clip_grad", self.clip_grad, "a value >= 0 (0 = off)")
        _check(self.aux_weight >= 0, "optim.aux_weight", self.aux_weight, "a value >= 0 (0 = off)")
        _check(self.batch_size >= 1, "optim.batch_size", self.batch_size, "a positive integer")
        _check(self.global_batch >= 0, "optim.global_batch", self.global_batch, "a value >= 0 (0 = no accumulation)")
        _check(0.0 <= self.label_smoothing < 1.0, "optim.label_smoothing", self.label_smoothing, "a value in [0, 1)")
        _check(self.mixup >= 0, "optim.mixup", self.mixup, "an alpha >= 0 (0 = off)")
        _check(self.cutmix >= 0, "optim.cutmix", self.cutmix, "an alpha >= 0 (0 = off)")
        _check(0.0 <= self.mixup_prob <= 1.0, "optim.mixup_prob", self.mixup_prob, "a probability")
        _check(0.0 <= self.mixup_switch_prob <= 1.0, "optim.mixup_switch_prob", self.mixup_switch_prob, "a probability")
        _check(0.0 <= self.ema_decay < 1.0, "optim.ema_decay", self.ema_decay, "a decay in [0, 1) (0 = off)")

    @property
    def mixing(self) -> bool:
        """Whether mixup or cutmix is on (then the training loss uses soft targets)."""
        return self.mixup > 0 or self.cutmix > 0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule (timm ``create_scheduler_v2``), stepped once per optimizer update."""

    epochs: int = 15
    """Number of training epochs.  15 since 2026-12-07 (25 before): of the 18 seeds in 0-19 whose default run learnt
    the task, 16 were at >= 90 % by epoch 5, one at epoch 9 and one at 13; and 15 epochs keep one run alone within 10
    minutes on a slow 2-core CPU."""
    warmup_epochs: float = 1.0
    """Linear warm-up length in epochs (may be fractional)."""
    sched: str = "cosine"
    """timm scheduler name: cosine, tanh, step, multistep, poly, constant, wsd, ..."""
    min_lr: float = 1e-5
    """Final learning rate of the decay."""
    warmup_lr: float = 1e-5
    """Learning rate at the start of warm-up."""

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "schedule.epochs", self.epochs, "a positive integer")
        _check(self.warmup_epochs >= 0, "schedule.warmup_epochs", self.warmup_epochs, "a value >= 0")
        _check(self.sched != "plateau", "schedule.sched", self.sched, "a per-update schedule (plateau is per epoch)")
        _check(self.min_lr >= 0, "schedule.min_lr", self.min_lr, "a value >= 0")
        _check(self.warmup_lr >= 0, "schedule.warmup_lr", self.warmup_lr, "a value >= 0")


@dataclass
class RunConfig:
    """Everything about running: device, precision, output, evaluation and checkpoint cadence, logging."""

    seed: int = 0
    """Seed of everything: model init, data order, augmentation, mixup; also passed to the data builder."""
    device: str = "auto"
    """``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``. Under torchrun each rank uses
    ``cuda:LOCAL_RANK``."""
    precision: Precision = "auto"
    """``auto`` = bf16 autocast on CUDA, fp32 on CPU; or force ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast
    with a gradient scaler)."""
    out: str = ""
    """Run directory; empty = ``runs/<name>`` or ``runs/<timestamp>``."""
    name: str = ""
    """Run name used for the default run directory."""
    resume: str = ""
    """A run directory or checkpoint directory to resume from; empty = start fresh."""
    eval_every: int = 1
    """Evaluate every N epochs (the last epoch is always evaluated)."""
    eval_batch_size: int = 0
    """Validation batch size per device; 0 = 2 x optim.batch_size."""
    ckpt_every_steps: int = 0
    """Also write ``checkpoints/last`` every N optimizer updates; 0 = only at the end of each epoch."""
    progress: Progress = "auto"
    """``auto``: tqdm bars only when stderr is a terminal and the CI variable is unset; ``always``; ``never``."""
    log_every_steps: int = 0
    """Without progress bars, log a line every N optimizer updates; 0 = off (see ``log_every_s``)."""
    log_every_s: float = 10.0
    """Without progress bars, log a progress line (step, images/s, ETA) at least every N seconds; 0 = off."""
    threads: int = 1
    """torch intra-op CPU threads per process; 0 = torch's default (one per core).  The default is 1 because the
    default run's seeds were verified with 1-thread arithmetic, and 2 threads round differently (epoch-1 loss of seed
    6: 0.701558 against 0.701700) -- not for speed: on the 2026-12-06 Zen 1 EPYC the default run trained at 181-196
    images/s with 2 threads against 142-154 with 1 (on an earlier 2-core VM the two were as fast; docs/benchmarks.md
    section 6).  Set 0 for larger models."""
    cpu_allocator: CpuAllocator = "keep"
    """On a CPU device: ``keep`` tells glibc's malloc to keep freed memory in the process (no fresh page-faulted map
    for every large activation: Atlas-B's 1024 px training step 10.3-10.9 s instead of 11.6-14.8 s on the 2-core
    Xeon, docs/benchmarks.md section 8; see ``atlas_vision.cpu_allocator``); ``default`` leaves malloc as it is. Process-wide; no effect on CUDA runs."""
    tensorboard: bool = False
    """Also write TensorBoard scalars into the run directory (needs the ``tensorboard`` extra)."""
    plots: bool = True
    """Write loss/accuracy curve PNGs and a confusion-matrix PNG (<= 20 classes) at the end."""

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "run.seed", self.seed, "an integer >= 0")
        dev = self.device
        _check(
            dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()),
            "run.device",
            dev,
            "one of auto, cpu, cuda, cuda:N",
        )
        _check(self.eval_every >= 1, "run.eval_every", self.eval_every, "a positive integer")
        _check(self.eval_batch_size >= 0, "run.eval_batch_size", self.eval_batch_size, "a value >= 0")
        _check(self.ckpt_every_steps >= 0, "run.ckpt_every_steps", self.ckpt_every_steps, "a value >= 0 (0 = off)")
        _check(self.threads >= 0, "run.threads", self.threads, "a value >= 0 (0 = torch's default)")
        _check(self.log_every_steps >= 0, "run.log_every_steps", self.log_every_steps, "a value >= 0 (0 = off)")
        _check(self.log_every_s >= 0, "run.log_every_s", self.log_every_s, "a number of seconds >= 0 (0 = off)")


def default_data() -> DataConfig:
    """The data section of the default run (``atlas-vision train`` with no arguments): the built-in long-range task.

    Tune the default recipe here and in the field defaults of the other sections; the remaining data fields keep
    :class:`~atlas_vision.data.DataConfig`'s own defaults.
    """
    # 64 px: 8x8 tokens for atlas_tiny (2x2 windows of 32x32 px + a 4x4 global scale); one generator worker
    return DataConfig(task="longrange", img_size=(64, 64), train_samples=4000, val_samples=1000, num_workers=1)


@dataclass
class TrainConfig:
    """A complete training run: ``data`` (from :mod:`atlas_vision.data`), ``model``, ``optim``, ``schedule``,
    ``run``.  ``TrainConfig()`` is the default run."""

    data: DataConfig = field(default_factory=default_data)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)


def accumulation_steps(optim: OptimConfig, world_size: int) -> int:
    """Micro-batches per optimizer update: ``global_batch / (batch_size * world_size)``.

    Raises:
        ValueError: if ``global_batch`` is not a multiple of ``batch_size * world_size``.
    """
    per_step = optim.batch_size * world_size
    if optim.global_batch == 0:
        return 1
    if optim.global_batch % per_step != 0:
        raise ValueError(
            f"config key 'optim.global_batch': {optim.global_batch} is not a multiple of optim.batch_size x world "
            f"size = {optim.batch_size} x {world_size} = {per_step}; choose a global batch that is a multiple of "
            f"{per_step} (e.g. {max(per_step, optim.global_batch // per_step * per_step)})"
        )
    return optim.global_batch // per_step
