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

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn
from torch.utils.checkpoint import checkpoint

from atlas_vision.mixers.config import (
    DilatedConfig,
    GlobalConfig,
    HatConfig,
    MambaConfig,
    MixerKind,
    MixerNetConfig,
    MSAConfig,
    SwinConfig,
    WindowConfig,
)
from atlas_vision.mixers.dilated import DilatedAttention
from atlas_vision.mixers.global_attention import GlobalAttention
from atlas_vision.mixers.hat import HierarchicalAttention
from atlas_vision.mixers.mamba import MambaVisionMixer
from atlas_vision.mixers.msa import MultiScaleBody
from atlas_vision.mixers.swin import ShiftedWindowAttention
from atlas_vision.mixers.window import WindowAttention

# MixerKind and MixerNetConfig live in atlas_vision.mixers.config; re-exported here, where they used to be defined
__all__ = [
    "MixerBlock",
    "MixerKind",
    "MixerNet",
    "MixerNetConfig",
    "MixerStack",
    "PatchStem",
    "build_mixer",
    "mixer_net",
]


def build_mixer(config: MixerNetConfig, block_index: int, drop_path: float = 0.0) -> nn.Module:
    """The single-map token mixer of block ``block_index`` (every kind except ``msa``); ``drop_path`` is used by
    mixers with inner residual branches (HAT's carrier tokens)."""
    c, m = config, config.mixer
    if isinstance(m, WindowConfig):
        return WindowAttention(c.dim, c.num_heads, m.window, c.qkv_bias)
    if isinstance(m, SwinConfig):
        return ShiftedWindowAttention.for_block(block_index, c.dim, c.num_heads, m.window, c.qkv_bias)
    if isinstance(m, GlobalConfig):
        return GlobalAttention(c.dim, c.num_heads, c.qkv_bias)
    if isinstance(m, HatConfig):
        return HierarchicalAttention(c.dim, c.num_heads, m.window, m.carrier_size, c.mlp_ratio, c.qkv_bias, drop_path)
    if isinstance(m, DilatedConfig):
        return DilatedAttention(c.dim, c.num_heads, m.segment_length, m.dilation_ratio, c.qkv_bias)
    if isinstance(m, MambaConfig):
        return MambaVisionMixer(c.dim, d_state=m.d_state, d_conv=m.d_conv, chunk_size=m.scan_chunk)
    raise ValueError(f"mixer {m.kind.value!r} is not a single-map mixer")


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
        >>> net = MixerNet(MixerNetConfig(mixer=SwinConfig(window=8), dim=32, depth=2, num_heads=2, num_classes=10))
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
        if isinstance(c.mixer, MSAConfig):
            m = c.mixer
            self.body = MultiScaleBody(
                dim=c.dim,
                num_heads=c.num_heads,
                stage_depths=m.resolved_stage_depths(c.depth),
                composition=m.composition,
                window=m.window,
                pool_stride=m.pool_stride,
                pool_op=m.pool_op,
                communication=m.communication,
                num_scales=m.num_scales,
                mlp_ratio=c.mlp_ratio,
                qkv_bias=c.qkv_bias,
                drop_path_rates=rates,
                pos_embed_hidden=m.pos_embed_hidden,
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
    def from_kwargs(cls, **kwargs: object) -> MixerNet:
        """``MixerNet(MixerNetConfig.from_options(**kwargs))``: the flat keywords of timm / ``bench mixers``."""
        return cls(MixerNetConfig.from_options(**kwargs))


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
    """The mixer benchmark network; the keywords are those of :meth:`MixerNetConfig.from_options` (e.g.
    ``mixer="hat", carrier_size=2``)."""
    if pretrained:
        raise ValueError("mixer_net has no pretrained weights")
    return build_model_with_cfg(MixerNet.from_kwargs, "mixer_net", pretrained, **kwargs)
