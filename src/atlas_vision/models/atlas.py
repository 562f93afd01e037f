"""Atlas: a conv stem, macro-stages of Multi-Scale Attention blocks with progressive scale dropping, a readout.

Agrawal, Lian et al., "Atlas: Multi-Scale Attention Improves Long Context Image Modeling", arXiv 2503.12355.

Any input ``H x W`` (>= the patch size) works with one set of weights:

* the stem gives a ``ceil(H/P) x ceil(W/P)`` token grid (scale 0);
* scales are built by strided max-pooling until one fits in a single window, and at least one per stage:
  ``L = max(L_stop_rule, S)`` -- so stage ``s`` always has its scale ``s`` and ``feature_info`` is static;
* stage ``s`` runs ``D[s]`` MSA blocks on scales ``s .. L-1`` (scales ``< s`` are dropped -- the pooled scale is the
  downsampled representation, no separate downsampling layer);
* a block of stage ``s`` has ``S - s`` per-scale weight sets (one per scale at ``L = S``); when a large image has more
  scales (``L > S``) the extra, coarsest scales share the block's last weight set. So the parameter count is that
  of the paper's configuration (118.25M for Atlas-B with 100 classes) and no parameter is ever unused;
* the readout concatenates the tokens of the scales left in the last stage -> LayerNorm -> mean -> LayerNorm ->
  Linear (spec 2.3).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import torch
from timm.layers import trunc_normal_
from torch import nn

from atlas_vision.layers import AtlasStage, ConvStem, MSABlock
from atlas_vision.models.config import AtlasConfig, HeadNorm
from atlas_vision.models.features import check_out_indices
from atlas_vision.ops import MultiScaleLayout, SizeND, ceil_div, scale_pyramid


class UnknownOptionError(TypeError, ValueError):
    """An unknown model option: a ``TypeError`` as for any unexpected keyword (timm's contract), and a ``ValueError``
    like every other invalid configuration."""


class Atlas(nn.Module):
    """The Atlas backbone and classifier (timm model contract). Build with ``timm.create_model("atlas_base", ...)``
    after ``import atlas_vision``, or directly from an :class:`AtlasConfig`.

    The class is written for any number of grid axes: :class:`~atlas_vision.models.atlas3d.Atlas3D` (volumes) only
    swaps the stem and the wording of input errors.

    Example:
        >>> import atlas_vision, timm, torch
        >>> model = timm.create_model("test_atlas", num_classes=10).eval()
        >>> model(torch.randn(2, 3, 96, 160)).shape
        torch.Size([2, 10])
    """

    ndim: ClassVar[int] = 2  # axes of the input grid (2: images [B, C, H, W])
    input_kind: ClassVar[str] = "image"
    input_batch: ClassVar[str] = "an image batch [B, C, H, W]"
    size_names: ClassVar[str] = "height and width"
    wrong_rank_hints: ClassVar[dict[int, str]] = {
        5: " -- a 5-D tensor looks like a volume batch [B, C, D, H, W]; use a 3-D model (e.g. atlas3d_small)"
    }
    output_fmts: ClassVar[dict[str, bool]] = {"NCHW": True, "NHWC": False}  # name -> channels first

    def __init__(self, config: AtlasConfig, *, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        if config.ndim != self.ndim:
            raise ValueError(
                f"{type(self).__name__} takes a {self.ndim}-D config, got {type(config).__name__} (ndim={config.ndim})"
            )
        dd = {"device": device, "dtype": dtype}
        self.config = config
        self.num_classes = config.num_classes
        self.in_chans = config.in_chans
        self.num_features = self.head_hidden_size = self.embed_dim = config.embed_dim
        self.patch_size = config.patch_size
        self.grad_checkpointing = False

        self.stem = self._build_stem(config, dd)
        total_blocks = sum(config.depths)
        # one linear ramp 0 -> drop_path_rate over all blocks of all stages (spec 8.8); plain floats (meta-safe)
        rates = [config.drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]
        stages, block_index = [], 0
        for stage, depth in enumerate(config.depths):
            scale_blocks = config.stage_scale_sets(stage)
            blocks = []
            for _ in range(depth):
                blocks.append(
                    MSABlock(
                        config.embed_dim,
                        config.num_heads,
                        scale_blocks,
                        mlp_ratio=config.mlp_ratio,
                        qkv_bias=config.qkv_bias,
                        drop_path=rates[block_index],
                        pos_embed_hidden=config.pos_embed_hidden,
                        communication=config.communication,
                        pool_op=config.pool_op,
                        backend=config.backend,
                        ndim=config.ndim,
                        **dd,
                    )
                )
                block_index += 1
            stages.append(AtlasStage(blocks, config.stage_first_scale(stage)))
        self.stages = nn.ModuleList(stages)
        self.feature_info = [
            {"num_chs": config.embed_dim, "reduction": config.stage_reduction(s), "module": f"stages.{s}"}
            for s in range(config.num_stages)
        ]
        self.norm = nn.LayerNorm(config.embed_dim, **dd)
        self.fc_norm = self._build_head_norm(config, dd)
        self.head = nn.Linear(config.embed_dim, config.num_classes, **dd) if config.num_classes else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _build_stem(config: AtlasConfig, dd: dict) -> nn.Module:
        """Input ``[B, C_in, *size]`` -> token map ``[B, *grid, C]``."""
        return ConvStem(
            config.in_chans, config.embed_dim, config.patch_size, config.stem_hidden, config.stem_depth, **dd
        )

    @staticmethod
    def _build_head_norm(config: AtlasConfig, dd: dict) -> nn.Module:
        """Pooled features ``[B, C]`` -> normalised ``[B, C]`` (see :class:`HeadNorm`)."""
        if config.head_norm is HeadNorm.BATCH:
            return nn.BatchNorm1d(config.embed_dim, affine=False, **dd)
        return nn.LayerNorm(config.embed_dim, **dd)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------------------------------------------
    # geometry and input checks

    def token_grid(self, image_hw: SizeND) -> SizeND:
        """Token grid of the stem for an image of ``image_hw`` pixels: ``(ceil(H/P), ceil(W/P))`` (volumes:
        ``(ceil(D/pd), ceil(H/ph), ceil(W/pw))``)."""
        return tuple(ceil_div(side, p) for side, p in zip(image_hw, self.config.patch_sides))

    def layout_for(self, token_grid: SizeND) -> MultiScaleLayout:
        """The scales used for a token grid (see the module docstring)."""
        cfg = self.config
        if cfg.single_scale:
            return MultiScaleLayout.from_grid(token_grid, cfg.window_size, cfg.pool_stride, max_scales=1)
        return MultiScaleLayout.from_grid(
            token_grid, cfg.window_size, cfg.pool_stride, min_scales=cfg.min_scales, routing=cfg.routing
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != self.ndim + 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            hint = self.wrong_rank_hints.get(x.dim(), "") if isinstance(x, torch.Tensor) else ""
            raise ValueError(f"expected {self.input_batch}, got {shape}{hint}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected {self.in_chans} input channels (in_chans={self.in_chans}), got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}); build the model with in_chans={x.shape[1]}"
            )
        if any(side < p for side, p in zip(x.shape[2:], self.config.patch_sides)):
            raise ValueError(
                f"{self.input_kind} {'x'.join(str(v) for v in x.shape[2:])} is too small for the stem: "
                f"{self.size_names} must be >= patch_size={self.patch_size}"
            )
        if x.shape[0] < 1:
            raise ValueError("empty batch (B=0)")
        weight_dtype = next(self.parameters()).dtype
        if x.dtype != weight_dtype and not (x.is_floating_point() and torch.is_autocast_enabled(x.device.type)):
            # no silent cast: say which side to change (under torch.autocast any float input is fine)
            raise TypeError(
                f"input dtype {x.dtype} does not match the model's weights ({weight_dtype}); pass "
                f"x.to({weight_dtype}) (integer images: convert to float and normalise first), cast the model with "
                f"model.to({x.dtype}) if that is what you meant, or run under torch.autocast"
            )

    # ----------------------------------------------------------------------------------------------------------------
    # forward

    def _embed(self, x: torch.Tensor) -> tuple[list[torch.Tensor], MultiScaleLayout]:
        """Image -> the initial list of per-scale maps ``[B, h_l, w_l, C]`` (Alg. 2 lines 1-2) and their layout."""
        self._check_input(x)
        return self._scales_from_tokens(self.stem(x))  # stem: [B, h, w, C] ([B, d, h, w, C] for volumes)

    def _scales_from_tokens(self, tokens: torch.Tensor) -> tuple[list[torch.Tensor], MultiScaleLayout]:
        """Stem tokens ``[B, h, w, C]`` (``[B, d, h, w, C]``) -> the per-scale maps (scale 0 = the tokens, then pooled) and their layout."""
        layout = self.layout_for(tuple(tokens.shape[1:-1]))
        return scale_pyramid(tokens, layout, self.config.pool_op), layout

    def _readout_tokens(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Tokens of the scales active in the last stage, concatenated: ``[B, T, C]``."""
        first = self.stages[-1].first_scale
        return torch.cat([x.flatten(1, -2) for x in xs[first:]], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W]`` -> normalised readout tokens ``[B, T, C]``."""
        xs, layout = self._embed(x)
        for stage in self.stages:
            xs = stage(xs, layout)
        return self.norm(self._readout_tokens(xs))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, T, C]`` tokens -> logits ``[B, num_classes]`` (or pooled features ``[B, C]`` with ``pre_logits``)."""
        if self.training and x.shape[0] < 2 and isinstance(self.fc_norm, nn.BatchNorm1d):
            raise ValueError(
                f"head_norm='batch' needs at least 2 images per batch in training mode, got {x.shape[0]}; use a "
                "larger batch, model.eval() for inference, or head_norm='layer'"
            )
        x = self.fc_norm(x.mean(dim=1))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-stage feature maps: the finest scale of each stage after that stage, ``[B, C, h_s, w_s]`` (NCHW) or
        ``[B, h_s, w_s, C]`` (NHWC).

        Args:
            x: images ``[B, C_in, H, W]``.
            indices: stages to return (an int ``n`` = the last ``n``; ``None`` = all).
            norm: apply the final LayerNorm to the returned maps.
            stop_early: stop after the last requested stage (then the final output is not computed).
            output_fmt: ``"NCHW"`` or ``"NHWC"`` (3-D models: ``"NCDHW"`` or ``"NDHWC"``; ``"NCHW"``/``"NHWC"``
                are accepted as the channels-first/last spellings timm's feature wrappers pass).
            intermediates_only: return only the list of maps.

        Returns:
            the maps, or ``(forward_features output, maps)``.
        """
        if output_fmt not in self.output_fmts:
            raise ValueError(f"output_fmt must be one of {list(self.output_fmts)}, got {output_fmt!r}")
        xs, layout = self._embed(x)
        return self._stage_intermediates(xs, layout, indices, norm, stop_early, output_fmt, intermediates_only)

    def forward_from_stem(
        self,
        tokens_nchw: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`forward_intermediates` from a precomputed stem output ``[B, C, h, w]`` instead of an image.

        Equal to ``forward_intermediates(x, ...)`` when ``tokens_nchw = self.stem(x).permute(0, 3, 1, 2)``; used to
        run the MSA stages on a token grid whose stem was computed tile by tile (``atlas_vision.slide.exact``).
        A channels-last buffer viewed as NCHW (``buffer_bhwc.permute(0, 3, 1, 2)``) is used without a copy.
        """
        if (
            not isinstance(tokens_nchw, torch.Tensor)
            or tokens_nchw.dim() != 4
            or tokens_nchw.shape[1] != self.embed_dim
        ):
            shape = tuple(tokens_nchw.shape) if isinstance(tokens_nchw, torch.Tensor) else type(tokens_nchw).__name__
            raise ValueError(f"expected stem tokens [B, {self.embed_dim}, h, w] (NCHW), got {shape}")
        xs, layout = self._scales_from_tokens(tokens_nchw.permute(0, 2, 3, 1).contiguous())  # [B, h, w, C]
        return self._stage_intermediates(xs, layout, indices, norm, stop_early, output_fmt, intermediates_only)

    def _stage_intermediates(
        self,
        xs: list[torch.Tensor],
        layout: MultiScaleLayout,
        indices: int | list[int] | tuple[int, ...] | None,
        norm: bool,
        stop_early: bool,
        output_fmt: str,
        intermediates_only: bool,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        from timm.models._features import feature_take_indices

        if output_fmt not in self.output_fmts:
            raise ValueError(f"output_fmt must be one of {list(self.output_fmts)}, got {output_fmt!r}")
        if indices is not None:
            indices = check_out_indices(indices, len(self.stages))  # no duplicates / out-of-range (clear error)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        intermediates = []
        last = max_index if stop_early or intermediates_only else len(self.stages) - 1
        for index, stage in enumerate(self.stages[: last + 1]):
            xs = stage(xs, layout)
            if index in take_indices:
                fmap = xs[stage.first_scale]  # [B, h, w, C]
                if norm:
                    fmap = self.norm(fmap)
                intermediates.append(fmap.movedim(-1, 1) if self.output_fmts[output_fmt] else fmap)
        if intermediates_only:
            return intermediates
        return self.norm(self._readout_tokens(xs)), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and head / final norm) that ``forward_intermediates(indices)`` does not need."""
        from timm.models._features import feature_take_indices

        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.fc_norm = nn.Identity()
            self.reset_classifier(0)
        return take_indices

    @property
    def has_unused_parameters(self) -> bool:
        """True for the ``top_down`` and ``none`` ablations with several stages: there the last block of a stage
        updates a scale that is dropped right after and never read again, so those weights get no gradient (DDP then
        needs ``find_unused_parameters=True``; the training pipeline reads this flag). Always False for ``full``,
        ``bottom_up`` and ``single_scale``."""
        return self.config.communication.value in ("top_down", "none") and len(self.stages) > 1

    # ----------------------------------------------------------------------------------------------------------------
    # timm model contract

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "", "avg"):
            raise ValueError(
                f"Atlas pools by token mean only; global_pool must be None, '' or 'avg', got {global_pool!r}"
            )
        self.num_classes = num_classes
        like = next(self.parameters())  # keep the model's device and dtype
        if num_classes > 0:
            self.head = nn.Linear(self.num_features, num_classes, device=like.device, dtype=like.dtype)
            if like.device.type != "meta":
                self._init_weights(self.head)
        else:
            self.head = nn.Identity()
        self.head.train(self.training)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each MSA block and each unit of the conv stem in backward (non-reentrant
        ``torch.utils.checkpoint``; BatchNorm statistics still updated once per step: ``layers/checkpointing.py``)."""
        self.grad_checkpointing = enable
        if hasattr(self.stem, "grad_checkpointing"):  # the conv stems; SlideAtlas's linear projection keeps little
            self.stem.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        # timm's optimizer factory already skips biases and all 1-D parameters (norms); nothing else is special.
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^stem",
            "blocks": r"^stages\.(\d+)" if coarse else [(r"^stages\.(\d+)\.blocks\.(\d+)", None), (r"^norm", (99999,))],
        }

    @classmethod
    def from_overrides(cls, base: AtlasConfig, **overrides) -> Atlas:
        """``Atlas(replace(base, **overrides))`` with a clear error for unknown keys (used by the timm entrypoints)."""
        device, dtype = overrides.pop("device", None), overrides.pop("dtype", None)
        unknown = sorted(set(overrides) - set(AtlasConfig.field_names()))
        if unknown:
            raise UnknownOptionError(f"unknown Atlas option(s) {unknown}; valid options: {AtlasConfig.field_names()}")
        return cls(replace(base, **overrides), device=device, dtype=dtype)
