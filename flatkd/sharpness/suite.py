"""``flatkd eval --suite sharpness``: adaptive average/worst-case sharpness, PAC-Bayes σ,
per-layer curvature, and the generalization gap they are meant to predict.

Section layout (every number computed here, nothing filled in)::

    {"generalization": {train_accuracy, train_loss, test_accuracy, test_loss, gap, n_train, n_test},
     "adaptive": {n_samples, m, adaptive, bn_mode,
                  average: {rho, draws, value, stderr, loss, n_batches},
                  worst: {rho, norm, steps, step_size, random_start, value, stderr, loss,
                          n_batches, grad_evals_per_batch}},
     "pacbayes": {n_samples, threshold, draws, accuracy,
                  isotropic: {sigma, inverse_sigma_sq, bracket, drop_bracket, reached, evaluations},
                  magnitude_aware: {...same..., epsilon}},
     "layers": {granularity, n_samples, groups: [{name, n_params, trace {mean, stderr},
                top_eigenvalue, lanczos_steps, exact}], trace_sum, n_hvp}}

The gap is train − test accuracy (fractions) on the un-augmented training data of the run (the
train split, or the run's ``train_fraction`` of it: ``n_train`` says how many) and the whole
test split.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..flatness.data import first_samples
from ..flatness.perturbation import evaluate
from .adaptive import average_case, worst_case
from .config import LayersConfig, PacBayesConfig, SharpnessConfig
from .layers import layer_curvature
from .pacbayes import pacbayes_sigmas

STAGES = ("average", "worst", "pacbayes", "layers")


def stage_generator(seed: int, stage: str) -> torch.Generator:
    """Independent, reproducible generator per stage (changing one stage's settings leaves the
    others' draws unchanged)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + 7_919 * (STAGES.index(stage) + 11))
                                         % (2 ** 63))


def generalization(model: nn.Module, train_set: Dataset, test_set: Dataset, *,
                   device: torch.device, batch_size: int) -> dict:
    """Accuracy and mean cross-entropy on the whole un-augmented train and test splits (eval
    mode) and the gap train − test accuracy."""
    was = model.training
    model.eval()
    try:
        tr = first_samples(train_set, len(train_set), batch_size, device, materialise=False)
        te = first_samples(test_set, len(test_set), batch_size, device, materialise=False)
        train_loss, train_acc = evaluate(model, tr)
        test_loss, test_acc = evaluate(model, te)
    finally:
        model.train(was)
    return {"train_accuracy": train_acc, "train_loss": train_loss, "test_accuracy": test_acc,
            "test_loss": test_loss, "gap": train_acc - test_acc, "n_train": len(train_set),
            "n_test": len(test_set)}


def run_sharpness(model: nn.Module, train_set: Dataset, test_set: Dataset, *,
                  sharpness: SharpnessConfig, pacbayes: PacBayesConfig, layers: LayersConfig,
                  seed: int, device: torch.device, batch_size: int, progress: bool) -> dict:
    """The ``sharpness`` section of the result for ``model`` (already on ``device``).

    Same seed → identical output; the model comes back unchanged (weights bit-exact, modes,
    buffers). Bad settings raise FlatkdError before any work.
    """
    for cfg in (sharpness, pacbayes, layers):
        cfg.validate()
    n = min(sharpness.samples, len(train_set))
    bar = tqdm(total=len(STAGES) + 1, desc="sharpness", disable=not progress, leave=False)
    out = {"generalization": generalization(model, train_set, test_set, device=device,
                                            batch_size=batch_size)}
    bar.update()
    mbatches = first_samples(train_set, n, sharpness.m, device)
    avg = average_case(model, mbatches, rho=sharpness.average_rho, adaptive=sharpness.adaptive,
                       draws=sharpness.average_draws,
                       generator=stage_generator(seed, "average"))
    bar.update()
    worst = worst_case(model, mbatches, rho=sharpness.rho, norm=sharpness.norm,
                       adaptive=sharpness.adaptive, steps=sharpness.steps,
                       step_size=sharpness.step_size, random_start=sharpness.random_start,
                       generator=stage_generator(seed, "worst"))
    bar.update()
    out["adaptive"] = {
        "n_samples": n, "m": sharpness.m, "adaptive": sharpness.adaptive, "bn_mode": "eval",
        "average": {"rho": sharpness.average_rho, **avg},
        "worst": {"rho": sharpness.rho, "norm": sharpness.norm, "steps": sharpness.steps,
                  "step_size": sharpness.step_size, "random_start": sharpness.random_start,
                  **worst}}
    big = first_samples(train_set, n, batch_size, device)
    pb = pacbayes_sigmas(model, big, pacbayes, generator=stage_generator(seed, "pacbayes"))
    pb["magnitude_aware"]["epsilon"] = pacbayes.epsilon
    out["pacbayes"] = {"n_samples": n, "threshold": pacbayes.threshold,
                       "draws": pacbayes.draws, **pb}
    bar.update()
    hb = first_samples(train_set, min(layers.samples, len(train_set)), batch_size, device)
    out["layers"] = layer_curvature(model, hb, layers, seed=seed)
    bar.update()
    bar.close()
    return out
