"""Loss add-ons of paper Table 4 that change the soft loss of a logit-distilling method, not its
schedule: LSKD (logit standardisation) and CTKD (curriculum, learnable temperature).

An add-on is selected by the method name: ``HOST+ADDON`` (``online+lskd``,
``spaced-online+ctkd``, ``self+lskd``, …) is the host method with its soft loss wrapped, so a
run's method name says what it trained and the report can put ``online+lskd`` ("w/ KD") beside
``spaced-online+lskd`` ("w/ Ours") in Table 4's layout. The add-on's constants are config
sections (``lskd.*``, ``ctkd.*``). Every variant is registered from :data:`HOSTS` × :data:`ADDONS`;
the host computes its losses as before and only meets the add-on through its ``soft`` loss.

Pure functions (shapes: logits [N, C]):

* :func:`zscore` — LSKD's per-sample standardisation.
* :func:`lskd_kl` — τ²·KL(softmax(Z(t)/τ) ‖ softmax(Z(s)/τ)), batch mean.
* :func:`grad_reverse`, :func:`ctkd_ramp_epochs`, :func:`ctkd_lambda`, :func:`ctkd_temperature` —
  CTKD's temperature.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ..errors import FlatkdError
from ..registry import Registry
from .losses import kd_kl
from .methods.registry import METHODS

SoftLoss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

#: host methods that distil logits through ``self.soft`` (those registered when this module is
#: imported get a ``HOST+ADDON`` variant per add-on).
HOSTS = ("online", "spaced-online", "offline", "constant-ahead", "self", "spaced-self")
#: hosts that weigh their soft terms by ``selfkd.alpha`` rather than Eq. 2's (1 − α, α)
SELF_HOSTS = ("self", "spaced-self")


# ---------------------------------------------------------------------------- LSKD
def zscore(z: torch.Tensor, ddof: int = 1, eps: float = 1e-7) -> torch.Tensor:
    """LSKD's logit standardisation Z(z) = (z − mean(z)) / (std(z) + eps) per sample (row).

    ``ddof = 1``: the unbiased std (N − 1), as LSKD's code (``torch.std`` default); 0:
    population std. Shape [N, C] → [N, C]. Invariant to adding a constant to, or multiplying
    by a positive factor, each row (Sun et al., CVPR 2024, Eq. 8–10).
    """
    mean = z.mean(dim=-1, keepdim=True)
    std = z.std(dim=-1, keepdim=True, correction=ddof)
    return (z - mean) / (std + eps)


def lskd_kl(s: torch.Tensor, t: torch.Tensor, tau: float, ddof: int = 1) -> torch.Tensor:
    """LSKD's soft loss: τ²·KL(softmax(Z(t)/τ) ‖ softmax(Z(s)/τ)), batch mean (τ = base temperature)."""
    return kd_kl(zscore(s, ddof), zscore(t, ddof), tau)


class StandardisedSoft:
    """A host soft loss applied to z-scored logits at the base temperature (the host's T is
    ignored): ``soft(Z(s), Z(t), τ)``. With the host's KL this is :func:`lskd_kl`."""

    def __init__(self, inner: SoftLoss, tau: float, ddof: int, weights: tuple | None):
        self.inner, self.tau, self.ddof, self.weights = inner, tau, ddof, weights

    def __call__(self, s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
        return self.inner(zscore(s, self.ddof), zscore(t, self.ddof), self.tau)


# ---------------------------------------------------------------------------- CTKD
class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient-reversal layer: identity forward; backward multiplies the gradient by −λ
    (CTKD's ``GradientReversal`` with its coefficient v = −λ ≤ 0)."""
    return _GradReverse.apply(x, -float(lam))


def ctkd_ramp_epochs(cfg) -> float:
    """Length in epochs of CTKD's λ ramp for run config ``cfg``: ``ctkd.lambda_epochs`` when
    set, else ``ctkd.lambda_fraction`` × ``epochs`` (the same share of the run as CTKD's 10 of
    240 epochs)."""
    c = cfg.ctkd
    return float(c.lambda_epochs if c.lambda_epochs is not None else c.lambda_fraction * cfg.epochs)


def ctkd_lambda(epoch: int, lam_min: float = 0.0, lam_max: float = 1.0,
                ramp: float = 10) -> float:
    """CTKD's cosine curriculum: λ(e) = λ_max − ½·(cos(π·min(e, L)/L) + 1)·(λ_max − λ_min),
    e the 1-based epoch, L = ``ramp`` epochs. CTKD's code writes v = −λ: v(1) = −0.024472,
    v(5) = −0.5, v(e ≥ 10) = −1 for the defaults."""
    if ramp <= 0:
        return lam_max
    e = min(max(epoch, 0), ramp)
    return lam_max - 0.5 * (math.cos(math.pi * e / ramp) + 1) * (lam_max - lam_min)


def ctkd_temperature(theta: torch.Tensor, lam: float, t_min: float = 1.0,
                     t_range: float = 20.0) -> torch.Tensor:
    """τ = t_min + t_range·sigmoid(GRL_λ(θ)) (CTKD's global temperature; θ = 1 → τ = 15.6212).
    The student's gradient step on the distillation loss thus moves θ *up* that loss (harder
    targets) with strength λ."""
    return t_min + t_range * torch.sigmoid(grad_reverse(theta, lam))


class GlobalTemperature(nn.Module):
    """CTKD's learnable scalar θ (one parameter, trained by the student's optimizer)."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(init)))


class CurriculumSoft:
    """A host soft loss at CTKD's learnable temperature: ``soft(s, t, τ(θ, λ(epoch)))`` (the
    host's T is ignored; the gradient reaches θ through the softmax and the T² factor)."""

    def __init__(self, inner: SoftLoss, module: GlobalTemperature, epoch: Callable[[], int],
                 cfg, weights: tuple | None, ramp: float):
        self.inner, self.module, self.epoch, self.c, self.weights = inner, module, epoch, cfg, weights
        self.ramp = ramp                # epochs of the λ ramp (:func:`ctkd_ramp_epochs`)

    def lam(self) -> float:
        c = self.c
        return ctkd_lambda(self.epoch(), c.lambda_min, c.lambda_max, self.ramp)

    def tau(self) -> torch.Tensor:
        return ctkd_temperature(self.module.theta, self.lam(), self.c.t_min, self.c.t_range)

    def __call__(self, s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
        return self.inner(s, t, self.tau())


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Addon:
    """One add-on: how it wraps a method's soft loss and what it records."""
    name: str
    section: str          # its config section
    attach: Callable      # (method) → None: wraps ``method.soft`` (and may add a module)
    describe: str


def _weights(c) -> tuple | None:
    if c.ce_weight is None and c.kd_weight is None:
        return None
    return c.ce_weight, c.kd_weight


def _check_weights(method, section: str, c) -> tuple | None:
    w = _weights(c)
    if w is None:
        return None
    if None in w:
        raise FlatkdError(f"{section}.ce_weight and {section}.kd_weight are set together "
                          f"(got {w[0]!r} and {w[1]!r})")
    if not all(math.isfinite(v) and v >= 0 for v in w):
        raise FlatkdError(f"{section}.ce_weight / kd_weight must be finite numbers ≥ 0, got {w}")
    if method.host_name in SELF_HOSTS:
        raise FlatkdError(f"{section}.ce_weight / kd_weight apply to methods mixing CE and the "
                          f"soft loss by kd.alpha; {method.host_name} weighs its exits by "
                          "selfkd.alpha (leave them unset)")
    return w


def _attach_lskd(method) -> None:
    c = method.cfg.lskd
    if not (math.isfinite(c.temperature) and c.temperature > 0):
        raise FlatkdError(f"lskd.temperature must be a finite number > 0, got {c.temperature}")
    method.soft = StandardisedSoft(method.soft, c.temperature, c.ddof, _check_weights(method, "lskd", c))


def _attach_ctkd(method) -> None:
    c = method.cfg.ctkd
    for key in ("init", "t_min", "t_range", "lambda_min", "lambda_max", "lambda_fraction"):
        if not math.isfinite(getattr(c, key)):
            raise FlatkdError(f"ctkd.{key} must be finite, got {getattr(c, key)}")
    ramp = ctkd_ramp_epochs(method.cfg)
    if c.t_min <= 0 or c.t_range <= 0 or not (math.isfinite(ramp) and ramp >= 0) \
            or c.lambda_fraction < 0:
        raise FlatkdError("ctkd.t_min and ctkd.t_range must be > 0, ctkd.lambda_fraction and "
                          f"ctkd.lambda_epochs ≥ 0 (got {c.lambda_fraction}, {c.lambda_epochs})")
    nets = method.nets
    owner = next((o for o, mods in nets.optimizers.items() if "student" in mods), None)
    if owner is None:
        raise FlatkdError(f"{method.cfg.method}: no optimizer trains the student; CTKD's "
                          "temperature joins the student's optimizer")
    device = next(nets.modules["student"].parameters()).device
    module = GlobalTemperature(c.init).to(device)
    nets.modules["temperature"] = module
    nets.optimizers[owner] = [*nets.optimizers[owner], "temperature"]
    method.soft = CurriculumSoft(method.soft, module, method.addon_epoch, c,
                                 _check_weights(method, "ctkd", c), ramp)


ADDONS: Registry[Addon] = Registry("loss add-on")
ADDONS.register("lskd")(Addon("lskd", "lskd", _attach_lskd,
                              "logit standardisation: soft loss on z-scored logits at lskd.temperature"))
ADDONS.register("ctkd")(Addon("ctkd", "ctkd", _attach_ctkd,
                              "curriculum temperature: learnable global τ through gradient reversal"))


class AddonMethod:
    """Mixin placed before a host method: after the host is built, its ``soft`` loss goes
    through the add-on. Records the add-on and its constants in the run's options."""

    addon: ClassVar[str]
    host_name: ClassVar[str]

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        if not hasattr(self, "soft"):
            raise FlatkdError(f"{self.host_name} has no soft loss for {self.addon}")
        self._stream_epoch = 0
        ADDONS.get(self.addon).attach(self)

    def begin(self, update) -> None:
        super().begin(update)
        self._stream_epoch = max(self._stream_epoch, update.spec.epoch)

    def addon_epoch(self) -> int:
        """CTKD's clock: the epoch of the batch being learned (``batch``) or the highest epoch
        scheduled so far (``stream``); 1 before any update."""
        if self.update is None:
            return 1
        if self.cfg.ctkd.clock == "stream":
            return max(self._stream_epoch, 1)
        return self.update.spec.epoch

    @torch.no_grad()
    def test_metrics(self, loader, device) -> dict:
        row = dict(super().test_metrics(loader, device))
        if isinstance(self.soft, CurriculumSoft):
            row["ctkd_temperature"] = float(self.soft.tau())
            row["ctkd_lambda"] = self.soft.lam()
        return row

    def options(self) -> dict:
        from ..config import to_plain
        c = getattr(self.cfg, ADDONS.get(self.addon).section)
        ramp = {"ctkd_ramp_epochs": self.soft.ramp} if isinstance(self.soft, CurriculumSoft) else {}
        return {**super().options(), "addon": self.addon, self.addon: to_plain(c), **ramp,
                "addon_weights": list(self.soft.weights) if self.soft.weights else "host"}


def variant_name(host: str, addon: str) -> str:
    """``online`` + ``lskd`` → ``online+lskd``."""
    return f"{host}+{addon}"


def split_variant(method: str) -> tuple[str, str | None]:
    """``spaced-online+lskd`` → (``spaced-online``, ``lskd``); a plain name → (name, None)."""
    host, _, addon = method.partition("+")
    return host, addon or None


def register_variants(hosts=HOSTS) -> list[str]:
    """Register ``HOST+ADDON`` for every host in ``hosts`` that is registered; returns the names."""
    added = []
    for host in hosts:
        if host not in METHODS:
            continue
        host_cls = METHODS.get(host)
        for addon in ADDONS.names():
            name = variant_name(host, addon)
            if name in METHODS:
                continue
            cls = type(f"{host_cls.__name__}_{addon.upper()}", (AddonMethod, host_cls),
                       {"addon": addon, "host_name": host,
                        "__doc__": f"{host} with {ADDONS.get(addon).describe} (paper Table 4)."})
            METHODS.register(name)(cls)
            added.append(name)
    return added
