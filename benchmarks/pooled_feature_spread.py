"""How much the pooled features of a model differ between images (the diagnosis of issue 11, part 1).

    python benchmarks/pooled_feature_spread.py init runs/a/checkpoints/last runs/b/checkpoints/last ...

For each argument (``init`` = a freshly initialised model, else a checkpoint directory of ``atlas-vision train``)
builds the model (``--model``, default ``atlas_tiny``; ``--head-norm layer`` for checkpoints trained before the tiny
variants' BatchNorm head), runs 256 fixed validation
images of the default long-range task (64 px, seed 0) in eval mode and prints, per stage of the readout:

* ``spread``: mean over feature dimensions of the across-image standard deviation, divided by the standard deviation
  of all values -- 1 when images differ as much as features do, ~0 when every image gets the same vector;
* for the head input (after ``fc_norm``; also with ``fc_norm`` in training mode, where a BatchNorm head uses the
  batch's statistics) and the logits: the mean across-image standard deviation itself.

A model whose pooled features do not differ between images gives its classifier nothing to learn from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

import atlas_vision  # noqa: F401  (registers the Atlas models)
from atlas_vision.data.longrange import LongRangeDataset, LongRangeParams


def _spread(t: torch.Tensor) -> float:
    flat = t.reshape(t.shape[0], -1)
    return float(flat.std(0).mean() / (flat.std() + 1e-12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="'init' or checkpoint directories")
    p.add_argument("--model", default="atlas_tiny")
    p.add_argument("--head-norm", default=None, help="head_norm of every model (default: the variant's)")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = LongRangeDataset(256, "val", 0, LongRangeParams(img_size=(64, 64)))
    x = torch.stack([data[i][0] for i in range(len(data))])  # [256, 3, 64, 64]
    print("| model | tokens spread | pooled spread | head input std | head input std, training mode | logit std |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        kwargs = {"head_norm": args.head_norm} if args.head_norm else {}
        torch.manual_seed(0)
        model = timm.create_model(args.model, num_classes=2, **kwargs)
        if name != "init":
            model.load_state_dict(load_file(str(Path(name) / "model.safetensors")))
        model.eval()
        with torch.no_grad():
            tokens = model.forward_features(x)  # [B, T, C]
            head_in = model.forward_head(tokens, pre_logits=True)  # [B, C]
            logits = model.head(head_in)
            model.fc_norm.train()  # a BatchNorm head in training mode normalises with the batch's statistics
            head_in_train = model.forward_head(tokens, pre_logits=True)
        print(
            f"| {name} | {_spread(tokens):.3f} | {_spread(tokens.mean(1)):.3f} | {float(head_in.std(0).mean()):.3f} "
            f"| {float(head_in_train.std(0).mean()):.3f} | {float(logits.std(0).mean()):.4f} |"
        )


if __name__ == "__main__":
    main()
