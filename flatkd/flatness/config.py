"""Settings of the flatness suite (``hessian.*`` and ``perturbation.*`` config keys).

Dataclass defaults are the documented defaults. ``validate()`` raises
:class:`~flatkd.errors.FlatkdError` with one line naming the valid values; checks that need the
model or the data (``samples`` larger than the train split, ``top_k`` larger than the number of
parameters) are made by :func:`flatkd.flatness.suite.run_flatness` before any work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import FlatkdError
from .trace import estimator_choices

BACKENDS = ("native", "pyhessian")
BN_MODES = ("eval", "train")
PERTURBATION_MODES = ("absolute", "filter")
PERTURBATION_DATA = ("hessian", "train")


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FlatkdError(f"{name} must be an integer >= 1, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise FlatkdError(f"{name}: {value!r} is not valid; valid choices: {', '.join(choices)}")


def _positive_float(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise FlatkdError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass
class HessianConfig:
    """Hessian of the mean cross-entropy on the first ``samples`` un-augmented training samples.

    samples: N, the first N samples of the un-augmented train split (default 256 — one
        evaluation batch; PyHessian studies use a single batch of ~200).
    top_k: number of largest (algebraic) eigenvalues reported (default 5).
    backend: ``native`` (Lanczos / variance-reduced trace / SLQ, default) or ``pyhessian``
        (the community package, wrapped; power iteration + Hutchinson).
    trace_estimator: ``auto`` (default: ``gauss-newton`` for piecewise-linear networks — ReLU
        convnets with BatchNorm in eval mode, where tr(H) = tr(Gauss–Newton) is computed
        exactly from per-sample Jacobian rows, C vector-Jacobian products per sample and no
        Hessian-vector products — else ``deflated``), ``gauss-newton`` (refused for other
        networks), ``deflated`` (exact trace of the Krylov subspace of the Lanczos run shared
        with the eigenvalues and density — extended while a Lanczos step lowers the variance
        more than a probe would — + Hutchinson on its orthogonal complement), ``xtrace``
        (Epperly, Tropp & Webber 2024; jackknife standard error), ``hutch++`` (Meyer et al.
        2021) or ``hutchinson`` (Rademacher probes). The result records the estimator used.
        Native backend only; the pyhessian backend always uses Hutchinson.
    trace_hvps: Hessian-vector products the trace may depend on (default 60; ``deflated``
        counts the shared Lanczos steps and adds at least 15 probes; ``gauss-newton`` uses
        none; the others spend it on top of the shared run).
    slq_probes: stochastic Lanczos quadrature start vectors (default 1; the native backend's
        first probe is the shared Lanczos run).
    slq_steps: Lanczos steps per SLQ probe, and the minimum length of the shared run
        (default 40).
    density_grid: number of grid points of the density (default 256).
    density_width: Gaussian broadening, as a fraction of the spectral range (default 0.01).
    bn_mode: ``eval`` (default: BatchNorm uses its running statistics, so the loss is a sum over
        samples and does not depend on batching) or ``train`` (batch statistics; the Hessian then
        depends on the batch size, and the spectrum differs by orders of magnitude).
        Running statistics are restored afterwards either way.
    tol: relative accuracy of the top-k eigenvalues (native: Lanczos stops once every error
        bound — r²/gap when the gap to the other Ritz values is resolved, else the residual r —
        is within tol·|θ| and the top k + 2 Ritz values are isolated) / relative eigenvalue
        change between power iterations (pyhessian) (default 1e-4).
    max_iter: Lanczos steps (native) / power iterations per eigenvalue (pyhessian) (default 100).
    graph_cache_samples: keep the double-backward graph of every mini-batch alive across
        products when ``samples`` (under torchrun: this process's share of them) is at most this
        (fast); otherwise rebuild it per product (bounded memory) (default 1024).
    """

    samples: int = 256
    top_k: int = 5
    backend: str = "native"
    trace_estimator: str = "auto"
    trace_hvps: int = 60
    slq_probes: int = 1
    slq_steps: int = 40
    density_grid: int = 256
    density_width: float = 0.01
    bn_mode: str = "eval"
    tol: float = 1e-4
    max_iter: int = 100
    graph_cache_samples: int = 1024

    def validate(self) -> None:
        """Raise FlatkdError naming the valid values for the first bad setting."""
        for name in ("samples", "top_k", "slq_probes", "slq_steps", "max_iter"):
            _positive_int(f"hessian.{name}", getattr(self, name))
        if self.max_iter < self.top_k + 2:
            raise FlatkdError(f"hessian.max_iter must be >= hessian.top_k + 2 = {self.top_k + 2}, "
                              f"got {self.max_iter}")
        _choice("hessian.backend", self.backend, BACKENDS)
        _choice("hessian.trace_estimator", self.trace_estimator, estimator_choices())
        _choice("hessian.bn_mode", self.bn_mode, BN_MODES)
        if not isinstance(self.trace_hvps, int) or isinstance(self.trace_hvps, bool) \
                or self.trace_hvps < 6:
            raise FlatkdError(f"hessian.trace_hvps must be an integer >= 6, got {self.trace_hvps!r}")
        if not isinstance(self.density_grid, int) or self.density_grid < 2:
            raise FlatkdError(f"hessian.density_grid must be an integer >= 2, got {self.density_grid!r}")
        _positive_float("hessian.density_width", self.density_width)
        _positive_float("hessian.tol", self.tol)
        if not isinstance(self.graph_cache_samples, int) or self.graph_cache_samples < 0:
            raise FlatkdError(
                f"hessian.graph_cache_samples must be an integer >= 0, got {self.graph_cache_samples!r}")
        if self.backend == "pyhessian" and self.bn_mode != "eval":
            raise FlatkdError("hessian.bn_mode: the pyhessian backend forces eval mode; "
                              "valid choices with backend=pyhessian: eval")


#: the largest perturbation σ accepted (σ = 10 already replaces a trained network by noise)
MAX_SIGMA = 10.0


@dataclass
class PerturbationConfig:
    """Gaussian parameter-perturbation curves (paper Fig. 4).

    sigmas: noise levels σ (default 0, 0.005, 0.01, 0.02, 0.03, 0.05); σ = 0 is the unperturbed
        model, evaluated exactly.
    repeats: independent noise draws per σ > 0 (default 5).
    mode: ``absolute`` (θ + N(0, σ²) per entry, default) or ``filter`` (Li et al. 2018:
        per output filter/neuron, a Gaussian direction rescaled to the filter's norm, times σ —
        so σ is relative to the weights' scale).
    perturb_bn_bias: also perturb 1-D parameters (biases, BatchNorm affine) (default true; Li et
        al. 2018 leave them unperturbed — set false to reproduce that). In ``filter`` mode a 1-D
        parameter is treated as one filter.
    data: ``hessian`` (the same first ``hessian.samples`` training samples, default) or
        ``train`` (the whole un-augmented train split, as in the paper; slower).
    """

    sigmas: list[float] = field(default_factory=lambda: [0.0, 0.005, 0.01, 0.02, 0.03, 0.05])
    repeats: int = 5
    mode: str = "absolute"
    perturb_bn_bias: bool = True
    data: str = "hessian"

    def validate(self) -> None:
        """Raise FlatkdError naming the valid values for the first bad setting."""
        if not self.sigmas:
            raise FlatkdError("perturbation.sigmas must list at least one noise level >= 0")
        for s in self.sigmas:
            if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s) or s < 0:
                raise FlatkdError(f"perturbation.sigmas must be finite numbers >= 0, got {s!r}")
            if s > MAX_SIGMA:
                raise FlatkdError(f"perturbation.sigmas: {s!r} is above {MAX_SIGMA:g}; σ is the "
                                  "std of the noise added to every weight (or, in filter mode, "
                                  "its size relative to each filter's norm): past that the "
                                  "losses overflow and the curve says nothing (the paper's "
                                  "Fig. 4 goes to 0.05)")
        _positive_int("perturbation.repeats", self.repeats)
        _choice("perturbation.mode", self.mode, PERTURBATION_MODES)
        _choice("perturbation.data", self.data, PERTURBATION_DATA)
        if not isinstance(self.perturb_bn_bias, bool):
            raise FlatkdError(
                f"perturbation.perturb_bn_bias must be true or false, got {self.perturb_bn_bias!r}")
