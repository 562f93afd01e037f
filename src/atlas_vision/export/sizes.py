"""Which input sizes one exported Atlas graph can serve, and the check made at every call.

The number of scales (and which scales are single windows, and which are padded) depends on ``H x W``, so one traced
graph is only valid for sizes sharing that structure. Two kinds of export:

* **fixed**: one ``H x W`` (any size the model accepts);
* **dynamic**: ``H`` and ``W`` each a multiple of ``patch_size * window`` between a minimum and a maximum, declared
  to ``torch.export`` as ``multiple * Dim``. Scale 0 is then never padded, and the range is accepted only if every
  size in it gives the same layout with every coarser scale a single window (e.g. ``atlas_small``: 512 .. 1024 px,
  multiples of 256). Outside such a range use fixed sizes.

The accepted sizes are stored with the artifact (:class:`SizeSpec` as JSON) and checked before every call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from atlas_vision.models.atlas import Atlas
from atlas_vision.ops import Size2D


@dataclass(frozen=True)
class SizeSpec:
    """Input sizes an exported graph accepts: ``min_hw <= (H, W) <= max_hw``, each a multiple of ``multiple``.

    A fixed export has ``min_hw == max_hw`` and ``multiple == (1, 1)``.
    """

    min_hw: Size2D
    max_hw: Size2D
    multiple: Size2D
    in_chans: int

    @property
    def is_fixed(self) -> bool:
        return self.min_hw == self.max_hw

    def describe(self) -> str:
        if self.is_fixed:
            return f"exactly {self.min_hw[0]}x{self.min_hw[1]}"
        return (
            f"H in [{self.min_hw[0]}, {self.max_hw[0]}] and W in [{self.min_hw[1]}, {self.max_hw[1]}], multiples of "
            f"{self.multiple[0]} (H) and {self.multiple[1]} (W)"
        )

    def check(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless ``shape`` is ``[B, in_chans, H, W]`` with an accepted ``H x W``."""
        if len(shape) != 4 or shape[0] < 1 or shape[1] != self.in_chans:
            raise ValueError(f"expected an image batch [B, {self.in_chans}, H, W], got {list(shape)}")
        h, w = shape[2], shape[3]
        inside = all(
            lo <= v <= hi and v % m == 0 for v, lo, hi, m in zip((h, w), self.min_hw, self.max_hw, self.multiple)
        )
        if not inside:
            raise ValueError(
                f"input size {h}x{w} is not supported by this exported graph: it accepts {self.describe()} (the "
                f"number of scales depends on the size, so one graph serves one layout); export another size "
                f"range, or run the PyTorch model, which accepts any size"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SizeSpec:
        data = json.loads(text)
        return cls(
            min_hw=tuple(data["min_hw"]),
            max_hw=tuple(data["max_hw"]),
            multiple=tuple(data["multiple"]),
            in_chans=int(data["in_chans"]),
        )


def _signature(model: Atlas, image_hw: Size2D) -> tuple:
    layout = model.layout_for(model.token_grid(image_hw))
    return tuple((g.num_windows == (1, 1), g.needs_padding) for g in layout.scales)


def fixed_size(model: Atlas, image_hw: Size2D) -> SizeSpec:
    """The spec of a fixed-size export (``image_hw`` must be a size the model accepts)."""
    if min(image_hw) < model.patch_size:
        raise ValueError(f"input size {image_hw[0]}x{image_hw[1]} is smaller than patch_size={model.patch_size}")
    return SizeSpec(min_hw=tuple(image_hw), max_hw=tuple(image_hw), multiple=(1, 1), in_chans=model.in_chans)


def dynamic_size_range(model: Atlas, min_hw: Size2D, max_hw: Size2D) -> SizeSpec:
    """Validate a dynamic ``H x W`` range for ``model`` (see the module docstring) and return its spec.

    Raises:
        ValueError: naming the step, and the first size in the range whose layout differs.
    """
    cfg = model.config
    multiple = (cfg.patch_size * cfg.window_size[0], cfg.patch_size * cfg.window_size[1])
    for name, hw in (("min", min_hw), ("max", max_hw)):
        if hw[0] % multiple[0] or hw[1] % multiple[1]:
            raise ValueError(
                f"dynamic export: the {name} size {hw[0]}x{hw[1]} must be a multiple of patch_size x window = "
                f"{multiple[0]}x{multiple[1]} on each side"
            )
    if not (min_hw[0] <= max_hw[0] and min_hw[1] <= max_hw[1]):
        raise ValueError(f"dynamic export: min size {min_hw} must be <= max size {max_hw} on each side")
    sizes = [
        (h, w)
        for h in range(min_hw[0], max_hw[0] + 1, multiple[0])
        for w in range(min_hw[1], max_hw[1] + 1, multiple[1])
    ]
    first = _signature(model, sizes[0])
    multi = [i for i, (single, _) in enumerate(first) if not single]
    if any(i > 0 for i in multi) or any(padded for _, padded in first):
        raise ValueError(
            f"dynamic export: at {sizes[0][0]}x{sizes[0][1]} the layout has a multi-window coarse scale or padding "
            f"({len(first)} scales, multi-window scales {multi}); only ranges where every scale but scale 0 is a "
            f"single window can share one graph. Export fixed sizes instead"
        )
    for size in sizes[1:]:
        if _signature(model, size) != first:
            layout = model.layout_for(model.token_grid(size))
            raise ValueError(
                f"dynamic export: {size[0]}x{size[1]} has another layout than {sizes[0][0]}x{sizes[0][1]} "
                f"({layout.num_scales} scales vs {len(first)}, or other single-window scales); narrow the range "
                f"so that the number of scales stays the same"
            )
    return SizeSpec(min_hw=tuple(min_hw), max_hw=tuple(max_hw), multiple=multiple, in_chans=model.in_chans)
