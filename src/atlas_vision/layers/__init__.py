"""Modules of Atlas: the MSA stage and block, its per-scale block, position embedding and conv stem."""

from atlas_vision.layers.msa_block import Communication, MSABlock
from atlas_vision.layers.msa_stage import AtlasStage
from atlas_vision.layers.pos_embed import WindowPosEmbed
from atlas_vision.layers.scale_block import ScaleBlock
from atlas_vision.layers.stem import ConvResBlock, ConvStem

__all__ = ["AtlasStage", "Communication", "ConvResBlock", "ConvStem", "MSABlock", "ScaleBlock", "WindowPosEmbed"]
