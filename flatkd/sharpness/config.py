"""Settings of ``flatkd eval --suite sharpness``: ``sharpness.*``, ``pacbayes.*``, ``layers.*``.

Dataclass defaults are the documented defaults; ``validate()`` raises
:class:`~flatkd.errors.FlatkdError` with one line naming the valid values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import FlatkdError

NORMS = ("linf", "l2")
GRANULARITIES = ("stage", "layer")


def positive_int(name: str, value, minimum: int = 1) -> None:
    """Refuse anything but an integer >= ``minimum`` (booleans included)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FlatkdError(f"{name} must be an integer >= {minimum}, got {value!r}")


def positive_float(name: str, value, *, allow_zero: bool = False) -> None:
    """Refuse anything but a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise FlatkdError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, "
                          f"got {value!r}")


#: the largest perturbation radius (sharpness.rho, sharpness.average_rho) a measure accepts
MAX_RADIUS = 1.0


def choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise FlatkdError(f"{name}: {value!r} is not valid; valid choices: {', '.join(choices)}")


def boolean(name: str, value) -> None:
    if not isinstance(value, bool):
        raise FlatkdError(f"{name} must be true or false, got {value!r}")


@dataclass
class SharpnessConfig:
    """Adaptive sharpness (Kwon et al. 2021; definitions of Andriushchenko et al. 2023).

    The loss is the mean cross-entropy on the first ``samples`` un-augmented training samples,
    split into batches of ``m`` samples; every batch gets its own perturbation and the batch
    values are averaged (m-sharpness). BatchNorm runs in eval mode (running statistics, as in
    Andriushchenko et al.): every parameter is perturbed, BatchNorm's affine weights included,
    its running statistics never.

    samples: N, the first N samples of the un-augmented train split (default 1024; the whole
        split when it is smaller, the number used is recorded).
    m: samples per batch of m-sharpness (default 128).
    adaptive: scale perturbations by |w| element-wise (ASAM scaling, default true); false
        measures plain (non-adaptive) sharpness.
    norm: ball of the worst-case perturbation, ``linf`` (default) or ``l2``, in the scaled
        coordinates u = δ / |w|.
    rho: radius of the worst-case ball (default 0.002, an adaptive ℓ∞ radius from the grid
        Andriushchenko et al. use for CIFAR-10 ResNets).
    steps: gradient evaluations of the projected-gradient ascent per batch (default 20).
    step_size: first ascent step as a multiple of rho (default 2.0); halved whenever a step
        does not increase the loss (the search goes back to the best point).
    random_start: start each batch's ascent at a uniformly random point of the ball instead of
        at the unperturbed weights (default false).
    average_rho: standard deviation of the average-case Gaussian perturbation
        δ ~ N(0, average_rho² |w|²) (adaptive) or N(0, average_rho²) (default 0.1).
    average_draws: Gaussian draws per batch for the average case (default 20).
    """

    samples: int = 1024
    m: int = 128
    adaptive: bool = True
    norm: str = "linf"
    rho: float = 0.002
    steps: int = 20
    step_size: float = 2.0
    random_start: bool = False
    average_rho: float = 0.1
    average_draws: int = 20

    def validate(self) -> None:
        """Raise FlatkdError naming the valid values for the first bad setting."""
        for name in ("samples", "m", "steps", "average_draws"):
            positive_int(f"sharpness.{name}", getattr(self, name))
        for name in ("rho", "step_size", "average_rho"):
            positive_float(f"sharpness.{name}", getattr(self, name))
        for name in ("rho", "average_rho"):
            value = getattr(self, name)
            if value > MAX_RADIUS:
                raise FlatkdError(
                    f"sharpness.{name} must lie in (0, {MAX_RADIUS:g}], got {value!r}: a radius "
                    f"of {MAX_RADIUS:g} already moves every weight by its own magnitude "
                    "(adaptive) or by far more than trained weights hold (plain); the "
                    "perturbed network's outputs are no longer finite")
        choice("sharpness.norm", self.norm, NORMS)
        boolean("sharpness.adaptive", self.adaptive)
        boolean("sharpness.random_start", self.random_start)


@dataclass
class PacBayesConfig:
    """PAC-Bayes flatness (Jiang et al. 2020): the largest noise level whose expected
    training-accuracy drop stays below a threshold, on the sharpness samples.

    threshold: accuracy drop d, as a fraction (default 0.1, Jiang et al.'s value).
    draws: Gaussian draws per evaluated noise level (default 10); the same draws (directions)
        are reused at every level, so the measured drop is a smooth function of it.
    max_evals: most noise levels the bisection evaluates per searched σ (default 12).
    rel_tol: stop once the bracket [lo, hi] satisfies hi <= (1 + rel_tol)·lo (default 0.05).
    sigma_max: upper end of the search interval, for σ and σ′ alike (default 1.0); when even
        this level stays below the threshold the result says so (reached: false).
    epsilon: the additive floor of the magnitude-aware noise, whose per-weight standard
        deviation is sqrt(σ′² w² + epsilon²) (default 0.001, Jiang et al.'s value).
    """

    threshold: float = 0.1
    draws: int = 10
    max_evals: int = 12
    rel_tol: float = 0.05
    sigma_max: float = 1.0
    epsilon: float = 0.001

    def validate(self) -> None:
        """Raise FlatkdError naming the valid values for the first bad setting."""
        if not (isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool)
                and 0 < self.threshold < 1):
            raise FlatkdError(f"pacbayes.threshold must be a fraction in (0, 1), got "
                              f"{self.threshold!r}")
        positive_int("pacbayes.draws", self.draws)
        positive_int("pacbayes.max_evals", self.max_evals, minimum=2)
        positive_float("pacbayes.rel_tol", self.rel_tol)
        positive_float("pacbayes.sigma_max", self.sigma_max)
        positive_float("pacbayes.epsilon", self.epsilon, allow_zero=True)


@dataclass
class LayersConfig:
    """Per-layer curvature: Hessian trace and top eigenvalue restricted to each group's
    parameters (the diagonal block H_bb of the Hessian), through the flatness suite's
    Hessian-vector products (mean cross-entropy, BatchNorm in eval mode).

    granularity: ``stage`` (default: each top-level child module, a list of stages split
        into its stages — for the ResNets stem, stages.0, stages.1, stages.2, fc) or ``layer``
        (each module that owns parameters: every convolution, BatchNorm and linear layer).
    samples: N, the Hessian's first N un-augmented training samples (default 256, as
        hessian.samples; the whole split when it is smaller).
    max_iter: Lanczos steps per group for its top eigenvalue (default 30; a group with fewer
        parameters is solved exactly).
    tol: relative accuracy at which a group's top eigenvalue stops Lanczos (default 1e-3).
    trace_probes: Rademacher probes shared by every group's trace (default 30): one product
        H z serves all groups; each group's trace is exact on its Lanczos subspace plus the
        probes on the rest.
    """

    granularity: str = "stage"
    samples: int = 256
    max_iter: int = 30
    tol: float = 1e-3
    trace_probes: int = 30

    def validate(self) -> None:
        """Raise FlatkdError naming the valid values for the first bad setting."""
        choice("layers.granularity", self.granularity, GRANULARITIES)
        positive_int("layers.samples", self.samples)
        positive_int("layers.max_iter", self.max_iter, minimum=3)
        positive_float("layers.tol", self.tol)
        positive_int("layers.trace_probes", self.trace_probes, minimum=2)
