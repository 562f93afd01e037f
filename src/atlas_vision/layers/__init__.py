"""Modules of Atlas: the MSA stage and block, its per-scale block, position embedding and conv stem."""

import timm

from atlas_vision.layers.msa_block import Communication, MSABlock
from atlas_vision.layers.msa_stage import AtlasStage
from atlas_vision.layers.pos_embed import WindowPosEmbed
from atlas_vision.layers.scale_block import ScaleBlock
from atlas_vision.layers.stem import ConvResBlock, ConvStem
from atlas_vision.requirements import check_timm_version

# a timm too old for these layers (and the hub) is a clear error here rather than a TypeError deep inside later
check_timm_version(timm.__version__)

__all__ = ["AtlasStage", "Communication", "ConvResBlock", "ConvStem", "MSABlock", "ScaleBlock", "WindowPosEmbed"]
