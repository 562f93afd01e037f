"""Architecture configuration of Atlas: one frozen dataclass, validated on construction."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from enum import Enum
from typing import ClassVar

from atlas_vision.layers import Communication
from atlas_vision.ops import Backend, PoolOp, Routing, Size2D, SizeND, to_ntuple

_INT_FIELDS = (
    "embed_dim",
    "num_heads",
    "patch_size",
    "stem_hidden",
    "stem_depth",
    "pos_embed_hidden",
    "in_chans",
    "num_classes",
)
_FLOAT_FIELDS = ("mlp_ratio", "drop_path_rate")


class HeadNorm(str, Enum):
    """Normalisation of the pooled features in front of the classifier (``Atlas.fc_norm``).

    * ``LAYER``: ``LayerNorm`` (timm's ``fc_norm``; the paper-sized variants).
    * ``BATCH``: ``BatchNorm1d`` without affine parameters (MAE's linear-probe head): standardises every feature over
      the batch, so the part of the pooled features that differs between images reaches the classifier at unit scale
      from the first step. The tiny variants of the long-range tasks use it: with ``LAYER`` their pooled features at
      initialisation vary between images by ~7 % of their size, and most seeds sit at chance for 60k+ images
      (docs/benchmarks.md section 6). At evaluation it is a fixed affine map (running statistics), so it adds no
      nonlinearity a window-only model could exploit. Training needs batches of at least 2 images.
    """

    LAYER = "layer"
    BATCH = "batch"


@dataclass(frozen=True, kw_only=True)
class AtlasConfig:
    """Everything that defines an Atlas network (not its weights or preprocessing).

    Attributes:
        embed_dim: channels ``C`` of every scale.
        num_heads: attention heads; must divide ``embed_dim``.
        depths: MSA blocks per macro-stage, ``D = (d_1, ..., d_S)``; stage ``s`` processes scales ``s .. L-1``.
        mlp_ratio: MLP expansion.
        qkv_bias: bias on query and key/value projections.
        patch_size: stride of the conv stem (4, 8, 16 or 32).
        window_size: window ``(kh, kw)`` in tokens (each >= 2).
        pool_stride: pooling stride ``(sh, sw)`` between scales (each >= 2, dividing the window).
        pool_op: summary operator (max, the paper's, or avg).
        communication: cross-scale pathways (full MSA, or an ablation; ``single_scale`` = window attention).
        stem_hidden: width of the stem's first conv.
        stem_depth: residual conv blocks per stem stage.
        pos_embed_hidden: hidden width of the position-embedding MLPs.
        drop_path_rate: maximum stochastic-depth rate; ramps linearly over all blocks of all stages.
        in_chans: image channels.
        num_classes: classifier outputs (0 = no classifier, pooled features).
        head_norm: normalisation of the pooled features before the classifier (:class:`HeadNorm`).
        backend: attention backend (``auto`` = fastest).
        routing: top-down window pairing: ``spatial`` (correct; default) or ``reference_raster`` (the authors' code,
            spec 8.1 -- only to evaluate weights trained with it; sdpa backend only).
        scale_sets: per-scale weight sets of a stage-0 block (stage ``s`` has ``max(scale_sets - s, 1)``); ``None`` =
            one per stage (``num_stages``). Set it to the number of scales the reference model had at its trained
            size (3 at 2048 and 4096 px for P = 16, K = 16, S = 4) to load such a checkpoint; images then get at
            least that many scales (extra coarse scales keep sharing the last set, as always).
    """

    embed_dim: int = 768
    num_heads: int = 12
    depths: tuple[int, ...] = (2, 10)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    patch_size: int = 16
    window_size: Size2D = (16, 16)
    pool_stride: Size2D = (4, 4)
    pool_op: PoolOp = PoolOp.MAX
    communication: Communication = Communication.FULL
    stem_hidden: int = 64
    stem_depth: int = 3
    pos_embed_hidden: int = 512
    drop_path_rate: float = 0.0
    in_chans: int = 3
    num_classes: int = 1000
    head_norm: HeadNorm = HeadNorm.LAYER
    backend: Backend = Backend.AUTO
    routing: Routing = Routing.SPATIAL
    scale_sets: int | None = None

    # axes of the token grid (a class constant, not a field): 2 for images; Atlas3DConfig sets 3
    ndim: ClassVar[int] = 2

    def __post_init__(self) -> None:
        self._check_types()
        set_ = object.__setattr__  # frozen dataclass: normalise once, here
        set_(self, "window_size", to_ntuple(self.window_size, self.ndim, "window_size"))
        set_(self, "pool_stride", to_ntuple(self.pool_stride, self.ndim, "pool_stride"))
        self._normalise_patch()
        for name, enum in (
            ("pool_op", PoolOp),
            ("communication", Communication),
            ("head_norm", HeadNorm),
            ("backend", Backend),
            ("routing", Routing),
        ):
            value = getattr(self, name)
            try:
                set_(self, name, enum(value))
            except ValueError:
                raise ValueError(f"{name}={value!r} is not valid; choose one of {[e.value for e in enum]}") from None
        if isinstance(self.depths, int) or not all(isinstance(d, int) for d in self.depths):
            raise ValueError(f"depths must be a sequence of ints (blocks per stage), got {self.depths!r}")
        set_(self, "depths", tuple(self.depths))
        self._validate()

    def _check_types(self) -> None:
        """``TypeError`` naming the field for a value of the wrong type (``embed_dim="64"``, ``embed_dim=32.0``):
        no silent coercion, and no deep torch error later."""
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if (
                name == "patch_size"
                and self.ndim != 2
                and isinstance(value, (tuple, list))
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
            ):
                continue  # a 3-D patch: one int per axis (its values are checked by _validate_patch)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                kind = type(self).__name__
                raise TypeError(f"{kind}.{name} must be an int, got {value!r} ({type(value).__name__})")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"AtlasConfig.{name} must be a number, got {value!r} ({type(value).__name__})")
        if not isinstance(self.qkv_bias, bool):
            raise TypeError(
                f"AtlasConfig.qkv_bias must be a bool, got {self.qkv_bias!r} ({type(self.qkv_bias).__name__})"
            )
        for name in ("window_size", "pool_stride"):
            value = getattr(self, name)
            parts = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in parts):
                raise TypeError(f"AtlasConfig.{name} must be an int or a pair of ints, got {value!r}")

    def _validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.embed_dim >= 1, f"embed_dim must be >= 1, got {self.embed_dim}")
        need(self.num_heads >= 1, f"num_heads must be >= 1, got {self.num_heads}")
        need(
            self.embed_dim % self.num_heads == 0,
            f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}",
        )
        need(len(self.depths) >= 1, "depths needs at least one stage")
        need(all(d >= 1 for d in self.depths), f"every stage needs >= 1 block, got depths={self.depths}")
        need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        self._validate_patch(need)
        stem_stages = self.stem_stages
        need(
            self.embed_dim % 2**stem_stages == 0,
            f"embed_dim={self.embed_dim} must be divisible by {2**stem_stages} for patch_size={self.patch_size}",
        )
        need(all(k >= 2 for k in self.window_size), f"window_size must be >= 2 on each side, got {self.window_size}")
        need(all(s >= 2 for s in self.pool_stride), f"pool_stride must be >= 2 on each side, got {self.pool_stride}")
        need(
            all(k % s == 0 for k, s in zip(self.window_size, self.pool_stride)),
            f"window_size={self.window_size} must be divisible by pool_stride={self.pool_stride} on each side",
        )
        need(self.stem_hidden >= 1, f"stem_hidden must be >= 1, got {self.stem_hidden}")
        need(self.stem_depth >= 0, f"stem_depth must be >= 0, got {self.stem_depth}")
        need(self.pos_embed_hidden >= 1, f"pos_embed_hidden must be >= 1, got {self.pos_embed_hidden}")
        need(0.0 <= self.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        need(self.in_chans >= 1, f"in_chans must be >= 1, got {self.in_chans}")
        need(self.num_classes >= 0, f"num_classes must be >= 0, got {self.num_classes}")
        need(
            self.routing is Routing.SPATIAL or self.backend in (Backend.AUTO, Backend.SDPA),
            f"routing={self.routing.value!r} needs backend 'auto' or 'sdpa', got {self.backend.value!r}",
        )
        need(
            self.scale_sets is None
            or (isinstance(self.scale_sets, int) and self.scale_sets >= self.num_stages and not self.single_scale),
            f"scale_sets must be None or an int >= num_stages={self.num_stages} (not with single_scale), "
            f"got {self.scale_sets!r}",
        )

    def _normalise_patch(self) -> None:
        """Hook for subclasses whose ``patch_size`` has one entry per axis (2-D Atlas: a single int)."""

    def _validate_patch(self, need) -> None:
        need(
            self.patch_size in (4, 8, 16, 32),
            f"patch_size must be one of 4, 8, 16, 32 (the stem halves the image log2(P) times), got {self.patch_size}",
        )

    @property
    def patch_sides(self) -> SizeND:
        """Pixels (voxels) per token along each axis of the grid."""
        return (self.patch_size,) * self.ndim

    @property
    def stem_stages(self) -> int:
        """Width-doubling stages of the stem after its first /4 (``log2(max patch side) - 2``)."""
        return int(math.log2(max(self.patch_sides))) - 2

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def single_scale(self) -> bool:
        return self.communication is Communication.SINGLE_SCALE

    def stage_scale_sets(self, stage: int) -> int:
        """Per-scale weight sets of each block of ``stage``."""
        if self.single_scale:
            return 1
        return max((self.scale_sets or self.num_stages) - stage, 1)

    @property
    def min_scales(self) -> int:
        """Scales every image gets at least (one per stage, or one per weight set of stage 0)."""
        return max(self.num_stages, self.scale_sets or 0)

    def stage_first_scale(self, stage: int) -> int:
        """Finest scale processed by ``stage`` (progressive scale dropping; always 0 for single-scale)."""
        return 0 if self.single_scale else stage

    def stage_reduction(self, stage: int) -> int:
        """Pixels per token (height) of the finest scale of ``stage``."""
        return self.patch_sides[-2] * self.pool_stride[-2] ** self.stage_first_scale(stage)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
