"""The fixed macro-architecture in which every token mixer is compared (the paper's Table 3 block-level setting).

``MixerNet``: image ``[B, in_chans, H, W]`` ->

1. **stem**: ``Conv2d(in_chans, C, P, stride P)`` on the image zero-padded to a multiple of ``P`` -> token map
   ``[B, ceil(H/P), ceil(W/P), C]``, plus one shared depthwise-3x3-conv position encoding (``x + dwconv(x)``, CPVT
   style, works at any size; no mixer adds its own position bias, so all mixers see the same positional signal);
2. **body**: ``depth`` pre-norm residual blocks ``x + DropPath(mixer(LN(x)))``, ``x + DropPath(MLP(LN(x)))`` with
   the chosen mixer (Swin alternates shifted windows); for ``msa`` the body is a
   :class:`~atlas_vision.mixers.msa.MultiScaleBody` of the same depth, whose MSA blocks carry a list of scales and hold
   their own norms, residuals and MLPs;
3. **readout**: ``LayerNorm`` on the tokens of the body's output maps (all scales for ``msa``) -> mean over tokens ->
   ``Linear``.

Width ``C``, depth, heads, MLP ratio and patch size are the same for every mixer. Registered in timm as ``mixer_net``
(``timm.create_model("mixer_net", mixer="swin", dim=192, depth=4, num_heads=6, patch_size=4)`` after
``import atlas_vision.mixers``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn
from torch.utils.checkpoint import checkpoint

from atlas_vision.layers import Communication
from atlas_vision.mixers.dilated import DilatedAttention
from atlas_vision.mixers.global_attention import GlobalAttention
from atlas_vision.mixers.hat import HierarchicalAttention
from atlas_vision.mixers.mamba import MambaVisionMixer
from atlas_vision.mixers.msa import Composition, MultiScaleBody
from atlas_vision.mixers.swin import ShiftedWindowAttention
from atlas_vision.mixers.window import WindowAttention
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


@dataclass(frozen=True, kw_only=True)
class MixerNetConfig:
    """Architecture of a :class:`MixerNet`. Mixer-specific fields are ignored by the other mixers.

    Attributes:
        mixer: which token mixer.
        dim: channels ``C``.
        depth: blocks.
        num_heads: attention heads (all attention mixers and MSA).
        patch_size: stem stride ``P``.
        window: window ``(kh, kw)`` of window / swin / hat / msa.
        mlp_ratio: MLP expansion.
        qkv_bias: bias on q/k/v projections.
        in_chans: image channels.
        num_classes: classifier outputs (0 = pooled features).
        drop_path_rate: stochastic depth, linear ramp over the blocks up to this value.
        pos_embed: add the shared depthwise-conv position encoding after the stem.
        carrier_size: hat: carrier tokens per window side (FasterViT ``ct_size``).
        segment_length: dilated: first segment length ``w_0`` (dilation 1); segments and rates grow by
            ``dilation_ratio`` until a segment covers the image.
        dilation_ratio: dilated: geometric ratio.
        d_state: mamba: SSM state size.
        d_conv: mamba: depthwise conv kernel.
        scan_chunk: mamba: selective-scan chunk length.
        pool_stride: msa: pooling stride ``(sh, sw)`` between scales.
        pool_op: msa: summary pooling, ``max`` or ``avg``.
        communication: msa: ``full``, ``top_down``, ``bottom_up``, ``none``, ``single_scale``.
        composition: msa: ``stack``, ``conv_downsample`` or ``atlas``.
        num_scales: msa (stack / conv_downsample): scales built at least, and per-scale weight sets per block.
        stage_depths: msa (conv_downsample / atlas): blocks per stage, summing to ``depth``; empty = default
            (atlas: ``(max(1, depth // 6), rest)``, i.e. D2D10 for 12 blocks; conv_downsample: ``min(4, depth)``
            near-equal stages, i.e. {3,3,3,3} for 12).
        pos_embed_hidden: msa: hidden width of the window position-embedding MLPs.
    """

    mixer: MixerKind = MixerKind.WINDOW
    dim: int = 192
    depth: int = 4
    num_heads: int = 6
    patch_size: int = 4
    window: Size2D = (8, 8)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    pos_embed: bool = True
    carrier_size: int = 2
    segment_length: int = 64
    dilation_ratio: int = 2
    d_state: int = 8
    d_conv: int = 3
    scan_chunk: int = 128
    pool_stride: Size2D = (4, 4)
    pool_op: PoolOp = PoolOp.MAX
    communication: Communication = Communication.FULL
    composition: Composition = Composition.STACK
    num_scales: int = 2
    stage_depths: tuple[int, ...] = ()
    pos_embed_hidden: int = 128

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        for name, enum in (
            ("mixer", MixerKind),
            ("pool_op", PoolOp),
            ("communication", Communication),
            ("composition", Composition),
        ):
            try:
                set_(self, name, enum(getattr(self, name)))
            except ValueError:
                valid = [e.value for e in enum]
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {valid}") from None
        set_(self, "window", to_2tuple(self.window, "window"))
        set_(self, "pool_stride", to_2tuple(self.pool_stride, "pool_stride"))
        if isinstance(self.stage_depths, int) or not all(isinstance(d, int) for d in self.stage_depths):
            raise ValueError(f"stage_depths must be a sequence of ints, got {self.stage_depths!r}")
        set_(self, "stage_depths", tuple(self.stage_depths))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.dim >= 1 and self.num_heads >= 1, f"dim and num_heads must be >= 1, got {self.dim}, {self.num_heads}")
        need(self.dim % self.num_heads == 0, f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        need(self.depth >= 1, f"depth must be >= 1, got {self.depth}")
        need(self.patch_size >= 1, f"patch_size must be >= 1, got {self.patch_size}")
        need(min(self.window) >= 1, f"window must be >= 1 on each side, got {self.window}")
        need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        need(self.in_chans >= 1, f"in_chans must be >= 1, got {self.in_chans}")
        need(self.num_classes >= 0, f"num_classes must be >= 0, got {self.num_classes}")
        need(0.0 <= self.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.mixer is MixerKind.HAT:
            need(
                self.carrier_size >= 1 and all(k % self.carrier_size == 0 for k in self.window),
                f"hat: window {self.window} must be divisible by carrier_size={self.carrier_size}",
            )
        if self.mixer is MixerKind.DILATED:
            need(self.segment_length >= 1, f"dilated: segment_length must be >= 1, got {self.segment_length}")
            need(self.dilation_ratio >= 2, f"dilated: dilation_ratio must be >= 2, got {self.dilation_ratio}")
        if self.mixer is MixerKind.MAMBA:
            need(self.dim % 2 == 0, f"mamba: dim must be even, got {self.dim}")
            need(
                min(self.d_state, self.d_conv, self.scan_chunk) >= 1, "mamba: d_state, d_conv, scan_chunk must be >= 1"
            )
        if self.mixer is MixerKind.MSA:
            need(min(self.window) >= 2, f"msa: window must be >= 2 on each side, got {self.window}")
            need(min(self.pool_stride) >= 2, f"msa: pool_stride must be >= 2, got {self.pool_stride}")
            need(
                all(k % s == 0 for k, s in zip(self.window, self.pool_stride)),
                f"msa: window {self.window} must be divisible by pool_stride {self.pool_stride}",
            )
            need(self.num_scales >= 1, f"msa: num_scales must be >= 1, got {self.num_scales}")
            need(self.pos_embed_hidden >= 1, f"msa: pos_embed_hidden must be >= 1, got {self.pos_embed_hidden}")
        if self.stage_depths:
            need(
                self.mixer is MixerKind.MSA and self.composition is not Composition.STACK,
                "stage_depths only applies to mixer='msa' with composition 'conv_downsample' or 'atlas'",
            )
            need(all(d >= 1 for d in self.stage_depths), f"stage_depths must be positive, got {self.stage_depths}")
            need(
                sum(self.stage_depths) == self.depth,
                f"stage_depths {self.stage_depths} must sum to depth={self.depth}",
            )

    def resolved_stage_depths(self) -> tuple[int, ...]:
        """Blocks per stage of the MSA body (see ``stage_depths``)."""
        if self.composition is Composition.STACK:
            return (self.depth,)
        if self.stage_depths:
            return self.stage_depths
        if self.composition is Composition.ATLAS:
            first = max(1, self.depth // 6)
            return (first, self.depth - first) if self.depth > first else (first,)
        stages = min(4, self.depth)
        return tuple(self.depth // stages + (1 if i < self.depth % stages else 0) for i in range(stages))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def build_mixer(config: MixerNetConfig, block_index: int, drop_path: float = 0.0) -> nn.Module:
    """The single-map token mixer of block ``block_index`` (every kind except ``msa``); ``drop_path`` is used by
    mixers with inner residual branches (HAT's carrier tokens)."""
    c, kind = config, config.mixer
    if kind is MixerKind.WINDOW:
        return WindowAttention(c.dim, c.num_heads, c.window, c.qkv_bias)
    if kind is MixerKind.SWIN:
        return ShiftedWindowAttention.for_block(block_index, c.dim, c.num_heads, c.window, c.qkv_bias)
    if kind is MixerKind.GLOBAL:
        return GlobalAttention(c.dim, c.num_heads, c.qkv_bias)
    if kind is MixerKind.HAT:
        return HierarchicalAttention(c.dim, c.num_heads, c.window, c.carrier_size, c.mlp_ratio, c.qkv_bias, drop_path)
    if kind is MixerKind.DILATED:
        return DilatedAttention(c.dim, c.num_heads, c.segment_length, c.dilation_ratio, c.qkv_bias)
    if kind is MixerKind.MAMBA:
        return MambaVisionMixer(c.dim, d_state=c.d_state, d_conv=c.d_conv, chunk_size=c.scan_chunk)
    raise ValueError(f"mixer {kind.value!r} is not a single-map mixer")


class MixerBlock(nn.Module):
    """``x + DropPath(mixer(LN(x)))``, then ``x + DropPath(MLP(LN(x)))`` on a ``[B, H, W, C]`` map."""

    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MixerStack(nn.Module):
    """A stack of :class:`MixerBlock` s; ``forward([B, H, W, C]) -> [[B, H, W, C]]`` (a one-map list, like
    :class:`~atlas_vision.mixers.msa.MultiScaleBody`)."""

    def __init__(self, blocks: list[MixerBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return [x]


class PatchStem(nn.Module):
    """``Conv2d(in_chans, C, P, stride P)`` on the zero-padded image, then the optional position encoding.

    Shapes: ``[B, in_chans, H, W]`` -> ``[B, ceil(H/P), ceil(W/P), C]``.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int, pos_embed: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if pos_embed else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p))
        x = self.proj(x)  # [B, C, h, w]
        if self.pos is not None:
            x = x + self.pos(x)
        return x.permute(0, 2, 3, 1)  # [B, h, w, C]


class MixerNet(nn.Module):
    """Stem -> ``depth`` blocks of one token mixer -> LayerNorm / mean / Linear readout (see the module docstring).

    Example:
        >>> net = MixerNet(MixerNetConfig(mixer="swin", dim=32, depth=2, num_heads=2, num_classes=10))
        >>> net(torch.randn(2, 3, 50, 36)).shape
        torch.Size([2, 10])
    """

    def __init__(self, config: MixerNetConfig):
        super().__init__()
        c = self.config = config
        self.num_classes = c.num_classes
        self.in_chans = c.in_chans
        self.num_features = self.head_hidden_size = c.dim
        self.stem = PatchStem(c.in_chans, c.dim, c.patch_size, c.pos_embed)
        rates = tuple(torch.linspace(0, c.drop_path_rate, c.depth).tolist())
        self.body: MixerStack | MultiScaleBody
        if c.mixer is MixerKind.MSA:
            self.body = MultiScaleBody(
                dim=c.dim,
                num_heads=c.num_heads,
                stage_depths=c.resolved_stage_depths(),
                composition=c.composition,
                window=c.window,
                pool_stride=c.pool_stride,
                pool_op=c.pool_op,
                communication=c.communication,
                num_scales=c.num_scales,
                mlp_ratio=c.mlp_ratio,
                qkv_bias=c.qkv_bias,
                drop_path_rates=rates,
                pos_embed_hidden=c.pos_embed_hidden,
            )
        else:
            self.body = MixerStack(
                [MixerBlock(c.dim, build_mixer(c, i, rates[i]), c.mlp_ratio, rates[i]) for i in range(c.depth)]
            )
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(self._init_weights)
        for module in self.modules():
            if isinstance(module, MambaVisionMixer):
                module.reset_dt_parameters()  # keep Mamba's dt init over the generic Linear init

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward_body(self, x_bhwc: torch.Tensor) -> list[torch.Tensor]:
        """Blocks only (what the mixer benchmark times): ``[B, h, w, C]`` -> list of ``[B, h_l, w_l, C]``."""
        return self.body(x_bhwc)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chans, H, W]`` -> normalised readout tokens ``[B, T, C]`` (all output maps concatenated)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_chans:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected images [B, {self.in_chans}, H, W], got {shape}")
        maps = self.forward_body(self.stem(x))
        return self.norm(torch.cat([m.flatten(1, 2) for m in maps], dim=1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, T, C]`` -> logits ``[B, num_classes]`` (pooled ``[B, C]`` with ``pre_logits``)."""
        x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "", "avg"):
            raise ValueError(f"MixerNet pools by token mean only; got global_pool={global_pool!r}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            self._init_weights(self.head)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.body.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {name for name, _ in self.named_parameters() if name.endswith(("A_log", ".D"))}

    @classmethod
    def from_kwargs(cls, **kwargs) -> MixerNet:
        """``MixerNet(MixerNetConfig(**kwargs))`` with a clear error for unknown keys."""
        unknown = sorted(set(kwargs) - set(MixerNetConfig.field_names()))
        if unknown:
            raise ValueError(f"unknown mixer_net option(s) {unknown}; valid options: {MixerNetConfig.field_names()}")
        return cls(MixerNetConfig(**kwargs))


default_cfgs = generate_default_cfgs(
    {
        "mixer_net": {
            "url": "",
            "num_classes": 1000,
            "input_size": (3, 128, 128),
            "pool_size": None,
            "fixed_input_size": False,
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "first_conv": "stem.proj",
            "classifier": "head",
            "license": "apache-2.0",
        }
    }
)


@register_model
def mixer_net(pretrained: bool = False, **kwargs) -> MixerNet:
    """The mixer benchmark network; every :class:`MixerNetConfig` field is a keyword (e.g. ``mixer="hat"``)."""
    if pretrained:
        raise ValueError("mixer_net has no pretrained weights")
    return build_model_with_cfg(MixerNet.from_kwargs, "mixer_net", pretrained, **kwargs)
