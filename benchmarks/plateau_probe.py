"""What a default-run model still knows about the two ringed objects: linear probes on its pooled features.

    python benchmarks/plateau_probe.py init:4 NAME=RUN_DIR [NAME=RUN_DIR ...]

For each model (``init:S`` = a freshly initialised ``atlas_tiny`` under ``torch.manual_seed(S)``; ``NAME=RUN_DIR`` = the
``last`` checkpoint of an ``atlas-vision train`` run) this takes the mean of the final tokens (the features the
classifier sees, before its BatchNorm) on 4,000 held-out 64 px ``longrange`` images (split ``test``, data seed 123)
and fits multinomial logistic regressions on 3,000 of them, scored on the other 1,000:

* ``label``: same / different, linearly — what the classifier itself can do (50 % on the plateau);
* ``marked_red``: how many of the two ringed objects are red (0, 1 or 2; "1" is half the images). A sum of per-object
  features carries this linearly, so even a window-only model can; and "same" is "not 1", so this is the evidence the
  relation needs;
* ``label_via_count``: same / different read off the predicted ``marked_red`` (not 1 -> same);
* ``all_red``: how many objects of the whole image are red (clipped at 9): colour kept in general.

It also prints the L2 norm of each group of weight matrices (stem, each stage's attention and MLP, the head), to show
how far training moved them from the initial scale.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

N_TRAIN, N_TEST = 3000, 1000


def probe_images() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The images ``[N, 3, 64, 64]`` and their targets ``{name: [N] int64}``."""
    from atlas_vision.data.longrange import COLOUR_NAMES, LongRangeDataset, LongRangeParams, marked_red_count

    red = COLOUR_NAMES.index("red")
    data = LongRangeDataset(N_TRAIN + N_TEST, "test", seed=123, params=LongRangeParams(img_size=(64, 64)))
    images, targets = [], {"label": [], "marked_red": [], "all_red": []}
    for index in range(len(data)):
        scene = data.scene(index)
        image, label = data[index]
        images.append(image)
        targets["label"].append(label)
        targets["marked_red"].append(marked_red_count(scene))
        targets["all_red"].append(min(int((scene.colours == red).sum()), 9))
    return torch.stack(images), {k: torch.tensor(v) for k, v in targets.items()}


def pooled_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> the mean of the final tokens ``[N, C]`` (what ``fc_norm`` and the head receive)."""
    with torch.no_grad():
        return torch.cat([model.forward_features(images[i : i + 250]).mean(1) for i in range(0, len(images), 250)])


def linear_probe(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fit an L2-regularised multinomial logistic regression on the first N_TRAIN rows; predictions for the rest."""
    mean, std = features[:N_TRAIN].mean(0), features[:N_TRAIN].std(0) + 1e-6
    x = (features - mean) / std
    classes = int(target.max()) + 1
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x[:N_TRAIN] @ weight + bias, target[:N_TRAIN]) + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (x[N_TRAIN:] @ weight + bias).argmax(1)


def load_model(spec: str) -> tuple[str, torch.nn.Module]:
    import timm

    import atlas_vision  # noqa: F401  (registers the models with timm)
    from atlas_vision.train.evaluate import load_checkpoint

    if spec.startswith("init:"):
        torch.manual_seed(int(spec.split(":", 1)[1]))
        return spec, timm.create_model("atlas_tiny", num_classes=2).eval()
    if "=" not in spec:
        raise SystemExit(f"expected init:SEED or NAME=RUN_DIR, got {spec!r}")
    name, run_dir = spec.split("=", 1)
    return name, load_checkpoint(run_dir, prefer="last").model


def weight_norms(model: torch.nn.Module) -> dict[str, float]:
    """L2 norm of the weight matrices, grouped as ``stem``, ``stages.S:<layer>`` and ``head``."""
    groups: dict[str, float] = {}
    for name, tensor in model.state_dict().items():
        if not name.endswith("weight") or tensor.dim() < 2:  # matrices and kernels only (no norms, no biases)
            continue
        parts = name.split(".")  # e.g. stages.0.blocks.1.attn.q.weight -> "stages.0:q"
        group = f"stages.{parts[1]}:{parts[-2]}" if parts[0] == "stages" else parts[0]
        groups[group] = groups.get(group, 0.0) + float(tensor.float().square().sum())
    return {k: v**0.5 for k, v in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="init:SEED or NAME=RUN_DIR")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, targets = probe_images()
    test = {k: v[N_TRAIN:] for k, v in targets.items()}
    norms = {}
    print("model | label | marked_red | label_via_count | all_red   (test accuracy; marked_red majority = 0.50)")
    for spec in args.models:
        name, model = load_model(spec)
        features = pooled_features(model, images)
        predicted = {k: linear_probe(features, targets[k]) for k in targets}
        acc = {k: float((predicted[k] == test[k]).float().mean()) for k in targets}
        same_via_count = (predicted["marked_red"] != 1).long()  # "same" = both ringed objects red, or neither
        acc["label_via_count"] = float((same_via_count == test["label"]).float().mean())
        print(
            f"{name} | {acc['label']:.3f} | {acc['marked_red']:.3f} | {acc['label_via_count']:.3f} | {acc['all_red']:.3f}",
            flush=True,
        )
        norms[name] = weight_norms(model)
    print("\nweight norms | " + " | ".join(norms))
    for group in next(iter(norms.values())):
        print(f"{group} | " + " | ".join(f"{n[group]:.2f}" for n in norms.values()))


if __name__ == "__main__":
    main()
