"""Loss-landscape slices along filter-normalised random directions (Li, Xu, Taylor, Studer &
Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets").

A direction d has the shape of the weights: for every parameter with more than one dimension
(convolution and linear weights) a Gaussian draw whose every filter — slice along the first
dimension, i.e. one output channel or neuron — is rescaled to the norm of the same filter of
the weights (:func:`flatkd.flatness.perturbation.direction`, ``filter`` mode); BatchNorm and
bias parameters get direction 0 (they stay at their trained values, as that work recommends).
The slice is the loss and accuracy at w + α d₁ (1-D) or w + α d₁ + β d₂ (2-D) on a grid of
coefficients −span..span with the origin at its centre; at the origin the weights are the
saved tensors themselves, so it reproduces the unperturbed loss exactly. The network is in eval
mode (BatchNorm running statistics of the checkpoint). A loss that overflows far from the origin
is recorded as null, never as a made-up number.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from ..flatness.data import Batches
from ..flatness.perturbation import direction, evaluate
from ..sharpness.params import assign, restored


def filter_direction(base: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """One filter-normalised direction for the weights ``base`` (zero for 1-D parameters)."""
    multi = [b for b in base if b.dim() > 1]
    drawn = iter(direction(multi, "filter", generator))
    return [next(drawn) if b.dim() > 1 else torch.zeros_like(b) for b in base]


def filter_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-filter ℓ2 norms (rows along the first dimension) of every tensor with dim > 1."""
    return [t.reshape(t.shape[0], -1).norm(dim=1) for t in tensors if t.dim() > 1]


def grid(resolution: int, span: float) -> list[float]:
    """``resolution`` (odd) coefficients from −span to span; the middle one is exactly 0."""
    mid = resolution // 2
    return [span * (i - mid) / mid for i in range(resolution)]


def finite(pair: tuple[float, float]) -> tuple[float | None, float]:
    """(loss, accuracy) with a non-finite loss (weights pushed into overflow) as None."""
    loss, acc = pair
    return (loss if math.isfinite(loss) else None), acc


def _cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    dot = math.fsum(float((x.double() * y.double()).sum()) for x, y in zip(a, b))
    na = math.sqrt(math.fsum(float(x.double().square().sum()) for x in a))
    nb = math.sqrt(math.fsum(float(y.double().square().sum()) for y in b))
    return dot / (na * nb)


def slices(model: nn.Module, batches: Batches, which: list[str], *, resolution: int,
           span: float, generator: torch.Generator, progress: bool = False) -> dict:
    """{"origin": {loss, accuracy}, "directions": {...}, "1d": {alphas, loss, accuracy},
    "2d": {alphas, betas, loss [i][j] at (alphas[i], betas[j]), accuracy}} for the slices in
    ``which``; the model comes back unchanged."""
    coeffs = grid(resolution, span)
    out: dict = {}
    with restored(model) as base:
        params = list(model.parameters())
        d1 = filter_direction(base, generator)
        d2 = filter_direction(base, generator)
        assign(params, base)
        loss0, acc0 = evaluate(model, batches)
        out["origin"] = {"loss": loss0, "accuracy": acc0}
        out["directions"] = {"normalisation": "filter", "bn_and_bias": "zero",
                             "cosine_d1_d2": _cosine(d1, d2)}
        total = resolution * ("1d" in which) + resolution ** 2 * ("2d" in which)
        bar = tqdm(total=total, desc="landscape slices", disable=not progress, leave=False)

        def at(a: float, b: float) -> tuple[float, float]:
            bar.update()
            if a == 0.0 and b == 0.0:
                return loss0, acc0
            assign(params, base, [a * x + b * y for x, y in zip(d1, d2)])
            return finite(evaluate(model, batches))

        if "1d" in which:
            pts = [at(a, 0.0) for a in coeffs]
            out["1d"] = {"alphas": coeffs, "loss": [p[0] for p in pts],
                         "accuracy": [p[1] for p in pts]}
        if "2d" in which:
            loss, acc = [], []
            for a in coeffs:
                row = [at(a, b) for b in coeffs]
                loss.append([p[0] for p in row])
                acc.append([p[1] for p in row])
            out["2d"] = {"alphas": coeffs, "betas": coeffs, "loss": loss, "accuracy": acc}
        bar.close()
    return out
