"""The authors' Atlas checkpoints (reference code, ``sandstone.models.atlas.Atlas``) -> ``atlas_vision`` weights.

The mapping is strict: every reference key is either mapped to exactly one of ours or listed as unused (the
reference builds, per macro-stage, a BatchNorm2d ``norm`` and a Linear ``head`` its forward never calls), and every
key of the target model must be filled with a tensor of the same shape. Anything else is an error naming the key.

Reference key -> ours (``s`` stage, ``b`` block, ``j`` scale relative to the stage, ``k`` stem stage from 1):

==========================================================  ============================================================
``atlas_models.0.patch_embed.conv0.{i}.*``                   ``stem.conv0.{i}.*``
``atlas_models.0.patch_embed.conv{k}.{i}.conv_block1.0.*``   ``stem.stages.{k-1}.{i}.conv1.*`` (``.1`` -> ``norm1``)
``atlas_models.0.patch_embed.conv{k}.{i}.conv_block2.0.*``   ``stem.stages.{k-1}.{i}.conv2.*`` (``.1`` -> ``norm2``)
``atlas_models.0.patch_embed.ds{k}.norm.*``                  ``stem.stages.{k-1}.{depth}.*`` (LayerNorm2d)
``atlas_models.0.patch_embed.ds{k}.conv.*``                  ``stem.stages.{k-1}.{depth+1}.*``
``atlas_models.{s}.levels.0.blocks.{b}.blocks.{j}.norm1_q``  ``stages.{s}.blocks.{b}.scale_blocks.{j}.norm_q``
``... .norm1_kv`` / ``attn.q`` / ``attn.kv`` / ``attn.proj``  ``... .norm_kv`` / ``q`` / ``kv`` / ``proj``
``... .norm2`` / ``mlp.fc1`` / ``mlp.fc2``                   the same names
``atlas_models.{s}.levels.0.blocks.{b}.posemb.{j}.projector.0``  ``... .scale_blocks.{j}.pos_embed.fc1`` (.2: fc2)
``readout_norm`` / ``fc_norm`` / ``fc``                      ``norm`` / ``fc_norm`` / ``head``
``atlas_models.{s}.norm.*``, ``atlas_models.{s}.head.*``     unused (never read by ``Atlas.forward``)
==========================================================  ============================================================

``attn.kv`` is ``Linear(C, 2C)`` split as ``[2, heads, head_dim]`` (K first) in both codes, so no tensor is changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

REFERENCE_PREFIX = "atlas_models."

_SCALE_BLOCK_NAMES = {
    "norm1_q": "norm_q",
    "norm1_kv": "norm_kv",
    "attn.q": "q",
    "attn.kv": "kv",
    "attn.proj": "proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_RES_BLOCK_NAMES = {
    "conv_block1.0": "conv1",
    "conv_block1.1": "norm1",
    "conv_block2.0": "conv2",
    "conv_block2.1": "norm2",
}
_TENSOR = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

_STEM_CONV0 = re.compile(rf"atlas_models\.0\.patch_embed\.conv0\.(\d+)\.{_TENSOR}")
_STEM_RES = re.compile(rf"atlas_models\.0\.patch_embed\.conv(\d+)\.(\d+)\.(conv_block[12]\.[01])\.{_TENSOR}")
_STEM_DS = re.compile(rf"atlas_models\.0\.patch_embed\.ds(\d+)\.(norm|conv)\.{_TENSOR}")
_SCALE_BLOCK = re.compile(
    rf"atlas_models\.(\d+)\.levels\.0\.blocks\.(\d+)\.blocks\.(\d+)\.(norm1_q|norm1_kv|attn\.q|attn\.kv|attn\.proj|"
    rf"norm2|mlp\.fc1|mlp\.fc2)\.{_TENSOR}"
)
_POS_EMBED = re.compile(rf"atlas_models\.(\d+)\.levels\.0\.blocks\.(\d+)\.posemb\.(\d+)\.projector\.([02])\.{_TENSOR}")
_READOUT = re.compile(rf"(readout_norm|fc_norm|fc)\.{_TENSOR}")
_READOUT_NAMES = {"readout_norm": "norm", "fc_norm": "fc_norm", "fc": "head"}
# StackMSA's own readout and classifier: built by the reference for every stage, never called by Atlas.forward
UNUSED_REFERENCE_KEYS = re.compile(rf"atlas_models\.(\d+)\.(norm|head)\.{_TENSOR}")


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: names the first offending key (and both shapes where it has one)."""


def is_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` uses the reference code's key names."""
    return any(key.startswith(REFERENCE_PREFIX) for key in state_dict)


def _stem_depth(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Residual blocks per stem stage in a reference state_dict (``conv1.{i}``)."""
    indices = {int(m.group(2)) for m in map(_STEM_RES.fullmatch, state_dict) if m and m.group(1) == "1"}
    return max(indices) + 1 if indices else 0


def map_reference_key(key: str, stem_depth: int) -> str | None:
    """Our name for reference key ``key`` (``None`` = a listed unused key).

    Raises:
        CheckpointMismatchError: for a key that is neither mapped nor listed as unused.
    """
    if m := _STEM_CONV0.fullmatch(key):
        return f"stem.conv0.{m[1]}.{m[2]}"
    if m := _STEM_RES.fullmatch(key):
        return f"stem.stages.{int(m[1]) - 1}.{m[2]}.{_RES_BLOCK_NAMES[m[3]]}.{m[4]}"
    if m := _STEM_DS.fullmatch(key):
        index = stem_depth if m[2] == "norm" else stem_depth + 1
        return f"stem.stages.{int(m[1]) - 1}.{index}.{m[3]}"
    if m := _SCALE_BLOCK.fullmatch(key):
        return f"stages.{m[1]}.blocks.{m[2]}.scale_blocks.{m[3]}.{_SCALE_BLOCK_NAMES[m[4]]}.{m[5]}"
    if m := _POS_EMBED.fullmatch(key):
        fc = "fc1" if m[4] == "0" else "fc2"
        return f"stages.{m[1]}.blocks.{m[2]}.scale_blocks.{m[3]}.pos_embed.{fc}.{m[5]}"
    if m := _READOUT.fullmatch(key):
        return f"{_READOUT_NAMES[m[1]]}.{m[2]}"
    if UNUSED_REFERENCE_KEYS.fullmatch(key):
        return None
    raise CheckpointMismatchError(
        f"reference key {key!r} is neither mapped to an atlas_vision key nor a known unused key; this is not a "
        f"checkpoint of the reference Atlas (sandstone.models.atlas.Atlas, commit 9915894) this converter knows"
    )


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a reference state_dict to ``atlas_vision`` keys.

    Returns:
        ``(converted, unused)``: the renamed tensors and the reference keys deliberately dropped.
    """
    depth = _stem_depth(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, tensor in state_dict.items():
        ours = map_reference_key(key, depth)
        if ours is None:
            unused.append(key)
        else:
            converted[ours] = tensor
    return converted, unused


def check_fits(state_dict: Mapping[str, torch.Tensor], model: nn.Module, *, skip_classifier: bool = False) -> None:
    """Raise unless ``state_dict`` holds exactly the model's keys with the model's shapes.

    Args:
        skip_classifier: leave a differently shaped classifier (``head.*``) to the caller (timm re-initialises it
            when ``num_classes`` differs from the pretrained config).

    Raises:
        CheckpointMismatchError: naming the first (in model order) mismatching or missing key, or the unexpected
            keys.
    """
    expected = model.state_dict()
    for key, target in expected.items():
        if key not in state_dict:
            others = sum(k not in state_dict for k in expected) - 1
            raise CheckpointMismatchError(
                f"the checkpoint has no tensor for model key {key!r} {list(target.shape)} (and {others} more "
                f"missing); it is a checkpoint of another architecture (e.g. other depths or number of stages)"
            )
        got = state_dict[key]
        if tuple(got.shape) != tuple(target.shape):
            if skip_classifier and key.startswith("head."):
                continue
            raise CheckpointMismatchError(
                f"checkpoint does not fit this model: first mismatching key {key!r}: checkpoint shape "
                f"{list(got.shape)} vs model shape {list(target.shape)} (another width or architecture?)"
            )
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise CheckpointMismatchError(
            f"the checkpoint has {len(unexpected)} key(s) this model does not have, first {unexpected[0]!r} "
            f"{list(state_dict[unexpected[0]].shape)}; it is a checkpoint of another architecture"
        )


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: a reference or native state_dict -> ours, checked strictly against ``model``.

    Containers (``{"model": ...}``, ``{"state_dict": ...}``) and ``module.`` prefixes are unwrapped first. The
    classifier is left to timm when its shape differs (timm drops it for a new ``num_classes``).
    """
    from atlas_vision.models.weights_file import unwrap_state_dict

    state_dict = unwrap_state_dict(state_dict)
    if is_reference_state_dict(state_dict):
        state_dict, _ = convert_reference_state_dict(state_dict)
    else:
        state_dict = dict(state_dict)
    check_fits(state_dict, model, skip_classifier=True)
    return state_dict


def _count(pattern: re.Pattern, keys, group: int, **equal: str) -> dict[str, int]:
    found: dict[str, set[int]] = {}
    for m in filter(None, map(pattern.fullmatch, keys)):
        if all(m[int(g)] == v for g, v in equal.items()):
            found.setdefault(m[1], set()).add(int(m[group]))
    return {k: max(v) + 1 for k, v in found.items()}


def infer_reference_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """The :class:`~atlas_vision.models.AtlasConfig` fields a reference state_dict determines by its shapes.

    Not determined by shapes (take them from the variant or pass them): ``num_heads``, ``window_size``,
    ``pool_stride``, ``pool_op``.
    """
    keys = list(state_dict)
    stem0 = state_dict["atlas_models.0.patch_embed.conv0.0.weight"]
    embed_dim = state_dict["readout_norm.weight"].shape[0]
    stem_stages = len({m[1] for m in filter(None, map(_STEM_DS.fullmatch, keys))})
    blocks = _count(_SCALE_BLOCK, keys, 2)  # stage -> blocks
    depths = tuple(blocks[str(s)] for s in range(len(blocks)))
    sets = {}
    for m in filter(None, map(_SCALE_BLOCK.fullmatch, keys)):
        sets.setdefault((int(m[1]), int(m[2])), set()).add(int(m[3]))
    sets0 = len(sets[(0, 0)])
    for (stage, block), found in sets.items():
        if len(found) != max(sets0 - stage, 1):
            raise CheckpointMismatchError(
                f"reference stage {stage} block {block} has {len(found)} per-scale weight sets, expected "
                f"{max(sets0 - stage, 1)} (stage 0 has {sets0}; each later stage one fewer)"
            )
    fc1 = state_dict["atlas_models.0.levels.0.blocks.0.blocks.0.mlp.fc1.weight"]
    config: dict[str, object] = {
        "embed_dim": embed_dim,
        "depths": depths,
        "mlp_ratio": fc1.shape[0] / embed_dim,
        "qkv_bias": "atlas_models.0.levels.0.blocks.0.blocks.0.attn.q.bias" in state_dict,
        "patch_size": 4 * 2**stem_stages,
        "stem_hidden": stem0.shape[0],
        "stem_depth": _stem_depth(state_dict),
        "pos_embed_hidden": state_dict["atlas_models.0.levels.0.blocks.0.posemb.0.projector.0.weight"].shape[0],
        "in_chans": stem0.shape[1],
        "num_classes": state_dict["fc.weight"].shape[0],
    }
    if sets0 != len(depths):
        config["scale_sets"] = sets0
    return config
