"""Token mixers compared with Multi-Scale Attention, and the uniform network they are compared in (issue 4).

Every single-map mixer maps a token map ``[B, H, W, C]`` to the same shape for any ``H, W`` (padding, where a mixer
needs it, is masked and cropped). Pure PyTorch, CPU and GPU. Importing this package registers ``mixer_net`` with timm.

=========== ========================================= =================================================
kind        module                                    what
=========== ========================================= =================================================
``window``  :class:`WindowAttention`                  non-overlapping window attention (Window-ViT)
``swin``    :class:`ShiftedWindowAttention`           Swin shifted windows (alternating per block)
``global``  :class:`GlobalAttention`                  ViT global attention (SDPA)
``hat``     :class:`HierarchicalAttention`            FasterViT window attention + global carrier tokens
``dilated`` :class:`DilatedAttention`                 LongNet / LongViT dilated attention
``mamba``   :class:`MambaVisionMixer`                 MambaVision mixer (selective scan + conv branch)
``msa``     :class:`MultiScaleBody`                   Atlas MSA blocks carrying a list of scales
=========== ========================================= =================================================
"""

from atlas_vision.mixers.config import (
    MIXER_CONFIGS,
    Composition,
    DilatedConfig,
    GlobalConfig,
    HatConfig,
    MambaConfig,
    MixerConfig,
    MixerKind,
    MixerNetConfig,
    MSAConfig,
    SwinConfig,
    WindowConfig,
)
from atlas_vision.mixers.dilated import DilatedAttention, dilated_attention, geometric_schedule
from atlas_vision.mixers.global_attention import GlobalAttention
from atlas_vision.mixers.hat import HierarchicalAttention
from atlas_vision.mixers.mamba import MambaVisionMixer, selective_scan, selective_scan_reference
from atlas_vision.mixers.msa import MultiScaleBody
from atlas_vision.mixers.net import MixerBlock, MixerNet, build_mixer, mixer_net
from atlas_vision.mixers.swin import ShiftedWindowAttention
from atlas_vision.mixers.window import WindowAttention, windowed_attention

__all__ = [
    "MIXER_CONFIGS",
    "Composition",
    "DilatedAttention",
    "DilatedConfig",
    "GlobalAttention",
    "GlobalConfig",
    "HatConfig",
    "HierarchicalAttention",
    "MSAConfig",
    "MambaConfig",
    "MambaVisionMixer",
    "MixerBlock",
    "MixerConfig",
    "MixerKind",
    "MixerNet",
    "MixerNetConfig",
    "MultiScaleBody",
    "ShiftedWindowAttention",
    "SwinConfig",
    "WindowAttention",
    "WindowConfig",
    "build_mixer",
    "dilated_attention",
    "geometric_schedule",
    "mixer_net",
    "selective_scan",
    "selective_scan_reference",
    "windowed_attention",
]
