"""How strongly does a freshly initialised model combine two far-apart regions of its input?

The long-range tasks (``longrange``, ``longrange3d``) label an image by a relation between two far-apart objects, so
the logit must contain a term that depends on both regions *jointly*. For a model whose output is a sum of
independent per-window terms (the window-only controls: readout tokens averaged, then a linear head) that term is
zero. This script measures it at initialisation by a second difference: with regions ``A`` (one corner) and ``B``
(the opposite corner; a gap of ``1 - 2 * frac`` of each side between them) taken from images 1/3 and 2/0 over a
common background image 0,

    interaction = f(A1, B2) + f(A3, B0) - f(A1, B0) - f(A3, B2),   f = logit[1] - logit[0]  (eval mode)

reported relative to ``|f(A1, B2) - f(A3, B0)|`` (the size of the additive part), as the median over ``--seeds``
initialisations. A window-only control is not exactly zero: its conv stem sees a few voxels across window borders.
A small value means the gradient that could teach the model the relation starts small, and the
plateau at chance before a relation is learnt is long (``docs/benchmarks.md`` section 10).

    python benchmarks/window_interaction.py --model atlas3d_tiny --size 64 64 64 --in-chans 1
    python benchmarks/window_interaction.py --model atlas3d_tiny --size 64 64 64 --in-chans 1 \
        --kwargs patch_size=16 window_size=2
"""

from __future__ import annotations

import argparse
import statistics

import torch


def corner_slices(size: tuple[int, ...], frac: float) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the low corner and the high corner, each ``frac`` of every side."""
    low = tuple(slice(0, round(s * frac)) for s in size)
    high = tuple(slice(s - round(s * frac), s) for s in size)
    return low, high


@torch.no_grad()
def relative_interaction(model: torch.nn.Module, size: tuple[int, ...], in_chans: int, frac: float) -> float:
    """``|interaction| / |additive part|`` of ``model`` (eval mode) on random inputs of spatial ``size``."""
    x = torch.randn(4, in_chans, *size)  # [4, C, *size]: image 0 is the background, 1/3 give A, 2/0 give B
    low, high = corner_slices(size, frac)

    def f(a: int, b: int) -> float:
        v = x[0:1].clone()
        v[(..., *low)] = x[(slice(a, a + 1), slice(None), *low)]
        v[(..., *high)] = x[(slice(b, b + 1), slice(None), *high)]
        logits = model(v)[0]
        return float(logits[1] - logits[0])

    interaction = f(1, 2) + f(3, 0) - f(1, 0) - f(3, 2)
    additive = f(1, 2) - f(3, 0)
    return abs(interaction) / max(abs(additive), 1e-30)


def parse_kwargs(pairs: list[str]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--kwargs expects KEY=INT pairs, got {pair!r}")
        out[key] = int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", type=int, nargs="+", required=True, help="H W or D H W")
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument("--kwargs", nargs="*", default=[], help="model overrides KEY=INT (e.g. patch_size=16)")
    parser.add_argument("--frac", type=float, default=0.375, help="corner side as a fraction of each side")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from atlas_vision.models import create_model

    values = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = create_model(args.model, num_classes=2, in_chans=args.in_chans, **parse_kwargs(args.kwargs)).eval()
        values.append(relative_interaction(model, tuple(args.size), args.in_chans, args.frac))
    print(
        f"{args.model} {' '.join(args.kwargs) or '(defaults)'} size {'x'.join(map(str, args.size))}: "
        f"relative interaction median {statistics.median(values):.2e} (per seed: "
        + ", ".join(f"{v:.2e}" for v in values)
        + ")"
    )


if __name__ == "__main__":
    main()
