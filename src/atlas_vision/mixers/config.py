"""Configuration of the mixer benchmark network: one small frozen dataclass per token mixer, and the shared network.

:class:`MixerNetConfig` holds what every mixer shares (width, depth, heads, patch size, MLP ratio, ...) and one mixer
config (:class:`WindowConfig`, :class:`SwinConfig`, :class:`GlobalConfig`, :class:`HatConfig`,
:class:`DilatedConfig`, :class:`MambaConfig`, :class:`MSAConfig`) holding only that mixer's knobs. The flat keyword
form of ``timm.create_model("mixer_net", mixer="hat", carrier_size=2, window=8, ...)`` and of ``bench mixers`` is
:meth:`MixerNetConfig.from_options`: every shared field plus the knobs of any mixer, where a knob of another mixer
than the chosen one is accepted and ignored (so one set of options can drive every mixer).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import ClassVar

from atlas_vision.layers import Communication
from atlas_vision.ops import PoolOp, Size2D, to_2tuple


class MixerKind(str, Enum):
    """The token mixers of the benchmark."""

    WINDOW = "window"
    SWIN = "swin"
    GLOBAL = "global"
    HAT = "hat"
    DILATED = "dilated"
    MAMBA = "mamba"
    MSA = "msa"


class Composition(str, Enum):
    """How MSA blocks are composed into a network (Table 5)."""

    STACK = "stack"
    CONV_DOWNSAMPLE = "conv_downsample"
    ATLAS = "atlas"


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _enum(enum: type[Enum], name: str, value: object) -> Enum:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {[e.value for e in enum]}") from None


class _MixerConfig:
    """Shared behaviour of the per-mixer configs (each is a frozen, keyword-only dataclass)."""

    kind: ClassVar[MixerKind]

    def check_network(self, dim: int, depth: int) -> None:
        """Raise a ``ValueError`` if this mixer cannot run in a network of width ``dim`` and ``depth`` blocks."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """This mixer's knobs (the dataclass fields of the subclass)."""
        return tuple(f.name for f in fields(cls))


def _checked_window(value: object) -> Size2D:
    window = to_2tuple(value, "window")
    _need(min(window) >= 1, f"window must be >= 1 on each side, got {window}")
    return window


@dataclass(frozen=True, kw_only=True)
class WindowConfig(_MixerConfig):
    """Non-overlapping window attention. ``window``: ``(kh, kw)``."""

    kind: ClassVar[MixerKind] = MixerKind.WINDOW
    window: Size2D = (8, 8)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", _checked_window(self.window))


@dataclass(frozen=True, kw_only=True)
class SwinConfig(_MixerConfig):
    """Swin shifted windows (regular on even blocks, shifted by half a window on odd ones). ``window``: ``(kh, kw)``."""

    kind: ClassVar[MixerKind] = MixerKind.SWIN
    window: Size2D = (8, 8)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", _checked_window(self.window))


@dataclass(frozen=True, kw_only=True)
class GlobalConfig(_MixerConfig):
    """ViT global attention: no knobs of its own."""

    kind: ClassVar[MixerKind] = MixerKind.GLOBAL


@dataclass(frozen=True, kw_only=True)
class HatConfig(_MixerConfig):
    """FasterViT hierarchical attention.

    Attributes:
        window: ``(kh, kw)``, each side divisible by ``carrier_size``.
        carrier_size: carrier tokens per window side (FasterViT ``ct_size``).
    """

    kind: ClassVar[MixerKind] = MixerKind.HAT
    window: Size2D = (8, 8)
    carrier_size: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", _checked_window(self.window))
        _need(
            self.carrier_size >= 1 and all(k % self.carrier_size == 0 for k in self.window),
            f"hat: window {self.window} must be divisible by carrier_size={self.carrier_size}",
        )


@dataclass(frozen=True, kw_only=True)
class DilatedConfig(_MixerConfig):
    """LongNet dilated attention.

    Attributes:
        segment_length: first segment length ``w_0`` (dilation 1); segments and rates grow by ``dilation_ratio``
            until a segment covers the image.
        dilation_ratio: geometric ratio (>= 2).
    """

    kind: ClassVar[MixerKind] = MixerKind.DILATED
    segment_length: int = 64
    dilation_ratio: int = 2

    def __post_init__(self) -> None:
        _need(self.segment_length >= 1, f"dilated: segment_length must be >= 1, got {self.segment_length}")
        _need(self.dilation_ratio >= 2, f"dilated: dilation_ratio must be >= 2, got {self.dilation_ratio}")


@dataclass(frozen=True, kw_only=True)
class MambaConfig(_MixerConfig):
    """MambaVision mixer.

    Attributes:
        d_state: SSM state size.
        d_conv: depthwise conv kernel.
        scan_chunk: selective-scan chunk length.
    """

    kind: ClassVar[MixerKind] = MixerKind.MAMBA
    d_state: int = 8
    d_conv: int = 3
    scan_chunk: int = 128

    def __post_init__(self) -> None:
        _need(min(self.d_state, self.d_conv, self.scan_chunk) >= 1, "mamba: d_state, d_conv, scan_chunk must be >= 1")

    def check_network(self, dim: int, depth: int) -> None:
        _need(dim % 2 == 0, f"mamba: dim must be even, got {dim}")


@dataclass(frozen=True, kw_only=True)
class MSAConfig(_MixerConfig):
    """Atlas MSA blocks carrying a list of scales (:class:`~atlas_vision.mixers.msa.MultiScaleBody`).

    Attributes:
        window: ``(kh, kw)`` of every multi-window scale, each >= 2 and divisible by ``pool_stride``.
        pool_stride: pooling stride ``(sh, sw)`` between scales, each >= 2.
        pool_op: summary pooling, ``max`` or ``avg``.
        communication: ``full``, ``top_down``, ``bottom_up``, ``none``, ``single_scale``.
        composition: ``stack``, ``conv_downsample`` or ``atlas``.
        num_scales: (stack / conv_downsample) scales built at least, and per-scale weight sets per block.
        stage_depths: (conv_downsample / atlas) blocks per stage, summing to the network depth; empty = default
            (atlas: ``(max(1, depth // 6), rest)``, i.e. D2D10 for 12 blocks; conv_downsample: ``min(4, depth)``
            near-equal stages, i.e. {3,3,3,3} for 12).
        pos_embed_hidden: hidden width of the window position-embedding MLPs.
    """

    kind: ClassVar[MixerKind] = MixerKind.MSA
    window: Size2D = (8, 8)
    pool_stride: Size2D = (4, 4)
    pool_op: PoolOp = PoolOp.MAX
    communication: Communication = Communication.FULL
    composition: Composition = Composition.STACK
    num_scales: int = 2
    stage_depths: tuple[int, ...] = ()
    pos_embed_hidden: int = 128

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        for name, enum in (("pool_op", PoolOp), ("communication", Communication), ("composition", Composition)):
            set_(self, name, _enum(enum, name, getattr(self, name)))
        set_(self, "window", _checked_window(self.window))
        set_(self, "pool_stride", to_2tuple(self.pool_stride, "pool_stride"))
        if isinstance(self.stage_depths, int) or not all(isinstance(d, int) for d in self.stage_depths):
            raise ValueError(f"stage_depths must be a sequence of ints, got {self.stage_depths!r}")
        set_(self, "stage_depths", tuple(self.stage_depths))
        _need(min(self.window) >= 2, f"msa: window must be >= 2 on each side, got {self.window}")
        _need(min(self.pool_stride) >= 2, f"msa: pool_stride must be >= 2, got {self.pool_stride}")
        _need(
            all(k % s == 0 for k, s in zip(self.window, self.pool_stride)),
            f"msa: window {self.window} must be divisible by pool_stride {self.pool_stride}",
        )
        _need(self.num_scales >= 1, f"msa: num_scales must be >= 1, got {self.num_scales}")
        _need(self.pos_embed_hidden >= 1, f"msa: pos_embed_hidden must be >= 1, got {self.pos_embed_hidden}")
        if self.stage_depths:
            _need(self.composition is not Composition.STACK, _STAGE_DEPTHS_SCOPE)
            _need(all(d >= 1 for d in self.stage_depths), f"stage_depths must be positive, got {self.stage_depths}")

    def check_network(self, dim: int, depth: int) -> None:
        if self.stage_depths:
            _need(sum(self.stage_depths) == depth, f"stage_depths {self.stage_depths} must sum to depth={depth}")

    def resolved_stage_depths(self, depth: int) -> tuple[int, ...]:
        """Blocks per stage of a body of ``depth`` blocks (see ``stage_depths``)."""
        if self.composition is Composition.STACK:
            return (depth,)
        if self.stage_depths:
            return self.stage_depths
        if self.composition is Composition.ATLAS:
            first = max(1, depth // 6)
            return (first, depth - first) if depth > first else (first,)
        stages = min(4, depth)
        return tuple(depth // stages + (1 if i < depth % stages else 0) for i in range(stages))


_STAGE_DEPTHS_SCOPE = "stage_depths only applies to mixer='msa' with composition 'conv_downsample' or 'atlas'"

MixerConfig = WindowConfig | SwinConfig | GlobalConfig | HatConfig | DilatedConfig | MambaConfig | MSAConfig

#: the config class of each mixer kind
MIXER_CONFIGS: dict[MixerKind, type[_MixerConfig]] = {
    cls.kind: cls for cls in (WindowConfig, SwinConfig, GlobalConfig, HatConfig, DilatedConfig, MambaConfig, MSAConfig)
}


@dataclass(frozen=True, kw_only=True)
class MixerNetConfig:
    """Architecture of a :class:`~atlas_vision.mixers.MixerNet`: the shared network and one mixer's config.

    Attributes:
        mixer: the mixer and its knobs (a mixer config; a :class:`MixerKind` or its name means that mixer's defaults).
        dim: channels ``C``.
        depth: blocks.
        num_heads: attention heads (all attention mixers and MSA).
        patch_size: stem stride ``P``.
        mlp_ratio: MLP expansion.
        qkv_bias: bias on q/k/v projections.
        in_chans: image channels.
        num_classes: classifier outputs (0 = pooled features).
        drop_path_rate: stochastic depth, linear ramp over the blocks up to this value.
        pos_embed: add the shared depthwise-conv position encoding after the stem.
    """

    mixer: MixerConfig = field(default_factory=WindowConfig)
    dim: int = 192
    depth: int = 4
    num_heads: int = 6
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    pos_embed: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.mixer, (str, MixerKind)):
            object.__setattr__(self, "mixer", MIXER_CONFIGS[_enum(MixerKind, "mixer", self.mixer)]())
        if not isinstance(self.mixer, tuple(MIXER_CONFIGS.values())):
            raise TypeError(
                f"mixer must be a mixer config or one of {[k.value for k in MixerKind]}, got {self.mixer!r}"
            )
        _need(
            self.dim >= 1 and self.num_heads >= 1, f"dim and num_heads must be >= 1, got {self.dim}, {self.num_heads}"
        )
        _need(self.dim % self.num_heads == 0, f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        _need(self.depth >= 1, f"depth must be >= 1, got {self.depth}")
        _need(self.patch_size >= 1, f"patch_size must be >= 1, got {self.patch_size}")
        _need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        _need(self.in_chans >= 1, f"in_chans must be >= 1, got {self.in_chans}")
        _need(self.num_classes >= 0, f"num_classes must be >= 0, got {self.num_classes}")
        _need(0.0 <= self.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        self.mixer.check_network(self.dim, self.depth)

    @property
    def kind(self) -> MixerKind:
        return self.mixer.kind

    @classmethod
    def shared_option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "mixer")

    @classmethod
    def option_names(cls) -> list[str]:
        """Every keyword :meth:`from_options` accepts: ``mixer``, the shared fields, every mixer's knobs."""
        knobs = dict.fromkeys(name for config in MIXER_CONFIGS.values() for name in config.option_names())
        return ["mixer", *cls.shared_option_names(), *knobs]

    @classmethod
    def from_options(cls, **options: object) -> MixerNetConfig:
        """The flat keyword form (``mixer="msa", dim=..., window=..., communication=...``).

        Knobs of mixers other than ``mixer`` are accepted and ignored; unknown keys raise a ``ValueError`` naming
        them and the valid options.
        """
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            raise ValueError(f"unknown mixer_net option(s) {unknown}; valid options: {cls.option_names()}")
        kind = _enum(MixerKind, "mixer", options.pop("mixer", MixerKind.WINDOW.value))
        if options.get("stage_depths") and kind is not MixerKind.MSA:
            raise ValueError(_STAGE_DEPTHS_SCOPE)
        config_cls = MIXER_CONFIGS[kind]
        mixer = config_cls(**{k: v for k, v in options.items() if k in config_cls.option_names()})
        return cls(mixer=mixer, **{k: v for k, v in options.items() if k in cls.shared_option_names()})
