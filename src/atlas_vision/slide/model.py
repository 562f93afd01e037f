"""The backbone of a slide run: any timm model with ``forward_intermediates`` (Atlas by default), its weights'
hash, its preprocessing and its stage geometry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atlas_vision.slide.errors import SlideError


@dataclass
class SlideModel:
    model: nn.Module
    name: str
    weights_sha256: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    strides: tuple[int, ...]  # target px per feature cell, per stage
    channels: tuple[int, ...]
    num_classes: int
    device: torch.device
    class_names: list[str] | None = None
    source: str = "random init"
    _mean_t: torch.Tensor = field(init=False, repr=False)
    _std_t: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._mean_t = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1) * 255
        self._std_t = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1) * 255

    def to_input(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[B, H, W, 3]`` uint8 RGB -> normalised ``[B, 3, H, W]`` float32 on the model's device."""
        x = torch.as_tensor(pixels).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return (x - self._mean_t) / self._std_t

    def autocast(self):
        """bf16 autocast on CUDA; fp32 (no autocast) elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights_sha256": self.weights_sha256,
            "source": self.source,
            "num_classes": self.num_classes,
            "strides": list(self.strides),
            "channels": list(self.channels),
            "mean": list(self.mean),
            "std": list(self.std),
        }


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes and bytes, in name order): equal weights -> equal hash."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _stage_geometry(model: nn.Module, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    info = getattr(model, "feature_info", None)
    if info is None or not hasattr(model, "forward_intermediates"):
        raise SlideError(f"model {name!r} has no feature_info / forward_intermediates (needed for per-stage maps)")
    entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    return tuple(int(e["reduction"]) for e in entries), tuple(int(e["num_chs"]) for e in entries)


def load_slide_model(
    name: str = "atlas_small",
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> SlideModel:
    """Build the backbone in eval mode.

    Args:
        name: a timm model name (``import atlas_vision`` registers the Atlas variants).
        checkpoint: a run or checkpoint directory of ``atlas-vision train`` (model name, classes and mean/std come
            from its ``meta.json``), or a ``.safetensors`` file of weights for ``name``.
        num_classes: classifier outputs for ``name`` (default: 0, or the head size found in a safetensors file).
        seed: the random initialisation when no checkpoint is given (so runs, resumes and ranks agree).
    """
    import timm

    import atlas_vision  # noqa: F401  (registers the Atlas models)

    device = torch.device(device)
    class_names, source = None, f"random init (seed {seed})"
    if checkpoint is not None and Path(checkpoint).is_dir():
        from atlas_vision.train.evaluate import load_checkpoint

        loaded = load_checkpoint(checkpoint, device="cpu", prefer="best")
        model, meta = loaded.model, loaded.meta
        name = meta["model"]["name"]
        mean, std = tuple(meta["mean"]), tuple(meta["std"])
        class_names = list(meta.get("class_names") or []) or None
        source = str(loaded.path)
    else:
        state = None
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint not found: {path}")
            from safetensors.torch import load_file

            state = load_file(str(path))
            if num_classes is None and "head.weight" in state:
                num_classes = int(state["head.weight"].shape[0])
            source = str(path)
        torch.manual_seed(seed)
        try:
            model = timm.create_model(name, num_classes=num_classes or 0)
        except RuntimeError as exc:  # timm: unknown model
            raise SlideError(f"unknown model {name!r} ({exc}); see `atlas-vision list-models`") from exc
        if state is not None:
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise SlideError(f"checkpoint {checkpoint} does not fit model {name!r}: {exc}") from exc
        from timm.data import resolve_data_config

        config = resolve_data_config({}, model=model)
        mean, std = tuple(config["mean"]), tuple(config["std"])
    if getattr(model, "in_chans", 3) != 3:
        raise SlideError(f"model {name!r} takes {model.in_chans} input channels; slides are read as RGB (3)")
    model.eval().to(device)
    strides, channels = _stage_geometry(model, name)
    return SlideModel(
        model=model,
        name=name,
        weights_sha256=weights_sha256(model),
        mean=mean,
        std=std,
        strides=strides,
        channels=channels,
        num_classes=int(getattr(model, "num_classes", 0) or 0),
        device=device,
        class_names=class_names,
        source=source,
    )


@torch.inference_mode()
def forward_batch(sm: SlideModel, pixels: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    """``[B, R, R, 3]`` uint8 -> per-stage maps ``[B, C_s, R / r_s, R / r_s]`` float32, pooled embeddings
    ``[B, D]`` and class probabilities ``[B, K]`` (``None`` without a classifier)."""
    x = sm.to_input(pixels)
    with sm.autocast():
        final, maps = sm.model.forward_intermediates(x)
        pooled = sm.model.forward_head(final, pre_logits=True)
        probs = sm.model.forward_head(final).float().softmax(dim=-1) if sm.num_classes else None
    size = pixels.shape[1]
    for stage, (m, stride) in enumerate(zip(maps, sm.strides)):
        if tuple(m.shape[-2:]) != (size // stride, size // stride):
            raise SlideError(
                f"model {sm.name!r} returned a {tuple(m.shape[-2:])} map at stage {stage} for a {size} px region; "
                f"expected {size // stride} (stride {stride})"
            )
    return [_as_numpy(m) for m in maps], _as_numpy(pooled), None if probs is None else _as_numpy(probs)


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.float().cpu().numpy()
