"""Adaptive sharpness, PAC-Bayes σ and per-layer curvature against cases with known answers:
quadratic losses (closed forms, the analytic maximiser on an ℓ2 ball, vertex enumeration on an
ℓ∞ box), a one-weight classifier whose accuracy drop under noise is Φ(−1/σ), and exact float64
Hessians of a tiny network."""
import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from torch import nn
from torch.func import functional_call

from flatkd.errors import FlatkdError
from flatkd.flatness.data import first_samples
from flatkd.sharpness.adaptive import average_case, worst_case
from flatkd.sharpness.config import LayersConfig, PacBayesConfig, SharpnessConfig
from flatkd.sharpness.layers import layer_curvature, parameter_groups
from flatkd.sharpness.pacbayes import bisect, pacbayes_sigmas

from flatness_nets import conv_bn_net, random_images

P = 6


class Quadratic(nn.Module):
    """One weight vector w; the loss of batch (a, _) is ½ (w − a)ᵀ H (w − a) (float64)."""

    def __init__(self, w0: torch.Tensor, H: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w0.clone())
        self.H = H


def quad_loss(model, a, _):
    d = model.w - a
    return 0.5 * d @ model.H @ d


@pytest.fixture
def quad():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(P, P, generator=g, dtype=torch.float64)
    H = A @ A.T / P + 0.1 * torch.eye(P, dtype=torch.float64)
    w0 = torch.randn(P, generator=g, dtype=torch.float64)
    anchors = [torch.randn(P, generator=g, dtype=torch.float64) for _ in range(2)]
    return Quadratic(w0, H), H, w0, anchors


def l2_maximum(H, w0, a, c, rho):
    """max over ‖u‖₂ ≤ ρ of L(w0 + c ⊙ u) − L(w0): the trust-region maximiser
    u = (λI − H')⁻¹ g' with λ > λ_max(H') solving ‖u‖ = ρ (secular equation)."""
    g = c * (H @ (w0 - a)).numpy()
    Hp = c[:, None] * H.numpy() * c[None, :]
    top = np.linalg.eigvalsh(Hp).max()

    def u(lam):
        return np.linalg.solve(lam * np.eye(P) - Hp, g)
    lam = scipy.optimize.brentq(lambda lam: np.linalg.norm(u(lam)) - rho, top + 1e-12, top + 1e6)
    v = u(lam)
    return g @ v + 0.5 * v @ Hp @ v


def linf_maximum(H, w0, a, c, rho):
    """A convex function's maximum over a box is attained at a vertex: enumerate all 2^P."""
    g = c * (H @ (w0 - a)).numpy()
    Hp = c[:, None] * H.numpy() * c[None, :]
    best = -math.inf
    for signs in itertools.product((-1.0, 1.0), repeat=P):
        v = rho * np.array(signs)
        best = max(best, g @ v + 0.5 * v @ Hp @ v)
    return best


@pytest.mark.crosslib
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_worst_case_matches_the_analytic_maximiser(quad, adaptive, norm):
    model, H, w0, anchors = quad
    c = (w0.abs() if adaptive else torch.ones(P, dtype=torch.float64)).numpy()
    rho = 0.3
    exact = (l2_maximum if norm == "l2" else linf_maximum)(H, w0, anchors[0], c, rho)
    defaults = SharpnessConfig()
    r = worst_case(model, [(anchors[0], None)], rho=rho, norm=norm, adaptive=adaptive,
                   steps=defaults.steps, step_size=defaults.step_size, loss=quad_loss)
    assert r["value"] == pytest.approx(exact, rel=1e-9)
    assert r["grad_evals_per_batch"] == defaults.steps <= 25       # the performance target
    assert torch.equal(model.w.detach(), w0)                        # weights restored exactly


@pytest.mark.crosslib
def test_m_sharpness_averages_the_per_batch_maxima(quad):
    """Each batch of m samples gets its own worst perturbation: the value is the mean of the
    per-batch maxima, which exceeds the maximum of the mean loss."""
    model, H, w0, anchors = quad
    c = np.ones(P)
    per_batch = [l2_maximum(H, w0, a, c, 0.3) for a in anchors]
    r = worst_case(model, [(a, None) for a in anchors], rho=0.3, norm="l2", adaptive=False,
                   steps=20, step_size=2.0, loss=quad_loss)
    assert r["n_batches"] == 2
    assert r["value"] == pytest.approx(np.mean(per_batch), rel=1e-9)
    mean_anchor = (anchors[0] + anchors[1]) / 2          # ½Σ_b quadratic = one quadratic + const
    assert r["value"] > l2_maximum(H, w0, mean_anchor, c, 0.3) + 1e-6


@pytest.mark.parametrize("adaptive", [False, True])
def test_average_case_matches_its_closed_form(quad, adaptive):
    """E_δ L(w + δ) − L(w) = ½ ρ² Σ_i H_ii c_i² for δ ~ N(0, ρ² diag(c²))."""
    model, H, w0, anchors = quad
    rho = 0.2
    c = w0.abs() if adaptive else torch.ones(P, dtype=torch.float64)
    exact = 0.5 * rho ** 2 * float((H.diagonal() * c ** 2).sum())
    r = average_case(model, [(anchors[0], None)] * 40, rho=rho, adaptive=adaptive, draws=200,
                     generator=torch.Generator().manual_seed(3), loss=quad_loss)
    assert abs(r["value"] - exact) < 4 * r["stderr"]
    assert r["value"] == pytest.approx(exact, rel=0.05)
    assert torch.equal(model.w.detach(), w0)


def test_sharpness_config_names_valid_values():
    SharpnessConfig().validate()
    with pytest.raises(FlatkdError, match="linf, l2"):
        SharpnessConfig(norm="l1").validate()
    with pytest.raises(FlatkdError, match="sharpness.rho"):
        SharpnessConfig(rho=0.0).validate()
    with pytest.raises(FlatkdError, match="pacbayes.threshold"):
        PacBayesConfig(threshold=1.5).validate()
    with pytest.raises(FlatkdError, match="stage, layer"):
        LayersConfig(granularity="block").validate()


# ------------------------------------------------------------------------------ PAC-Bayes
def test_bisection_brackets_a_known_crossing():
    calls = []

    def drop(s):
        calls.append(s)
        return s ** 2                                    # crosses 0.1 at σ* = √0.1
    b = bisect(drop, 0.1, sigma_max=1.0, max_evals=12, rel_tol=0.05)
    star = math.sqrt(0.1)
    assert b.reached and b.lo <= star < b.hi
    assert drop(b.lo) <= 0.1 < drop(b.hi)
    assert b.evaluations == len(calls) - 2 <= 12
    assert b.hi <= 1.05 * b.lo
    assert b.lo <= b.sigma <= b.hi


def test_bisection_says_when_the_threshold_is_not_reached():
    b = bisect(lambda s: 0.01 * s, 0.1, sigma_max=2.0, max_evals=12, rel_tol=0.05)
    d = b.as_dict()
    assert not d["reached"] and d["sigma"] == 2.0 and d["evaluations"] == 1
    assert d["inverse_sigma_sq"] == 0.25


class Threshold(nn.Module):
    """Logits [w·x, 0]: with x = 1 and label 0 a sample is right iff w > 0. Under noise
    w = 1 + σn the expected accuracy drop is Φ(−1/σ)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        z = self.w * x[:, :1]
        return torch.cat([z, torch.zeros_like(z)], dim=1)


@pytest.mark.crosslib
def test_pacbayes_sigma_brackets_the_known_drop():
    data = torch.utils.data.TensorDataset(torch.ones(4, 1), torch.zeros(4, dtype=torch.long))
    batches = first_samples(data, 4, 4, torch.device("cpu"))
    cfg = PacBayesConfig(draws=1000, sigma_max=4.0, rel_tol=0.02, epsilon=0.0)
    out = pacbayes_sigmas(Threshold(), batches, cfg, generator=torch.Generator().manual_seed(0))
    star = 1 / scipy.stats.norm.ppf(0.9)                 # Φ(−1/σ*) = 0.1: σ* = 0.780
    for key in ("isotropic", "magnitude_aware"):         # |w| = 1, ε = 0: the same noise
        r = out[key]
        lo, hi = r["bracket"]
        assert r["reached"] and r["evaluations"] <= 12
        assert r["drop_bracket"][0] <= 0.1 < r["drop_bracket"][1]
        assert lo * 0.93 <= star <= hi * 1.07            # Monte Carlo: 1000 draws, ± 4 %
        assert r["inverse_sigma_sq"] == pytest.approx(1 / r["sigma"] ** 2)
    assert out["accuracy"] == 1.0


# ------------------------------------------------------------------------ per-layer curvature
def exact_hessian(model, data):
    """Float64 Hessian of the mean cross-entropy over all parameters (model order)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x, y = data.tensors

    def loss(v):
        parts = torch.split(v, [math.prod(s) for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)
    return torch.autograd.functional.hessian(loss, flat)


@pytest.fixture
def tiny():
    model = conv_bn_net().double()
    data = random_images(24)
    data = torch.utils.data.TensorDataset(data.tensors[0].double(), data.tensors[1])
    return model, data, exact_hessian(model, data)


def _blocks(model, groups):
    offsets, start = {}, 0
    for n, p in model.named_parameters():
        offsets[n] = list(range(start, start + p.numel()))
        start += p.numel()
    return {g: sum((offsets[n] for n in members), []) for g, members in groups.items()}


def test_layer_traces_and_top_eigenvalues_match_exact_hessian_blocks(tiny):
    model, data, H = tiny
    batches = first_samples(data, 24, 8, torch.device("cpu"))
    cfg = LayersConfig(granularity="layer", max_iter=200, trace_probes=2)
    r = layer_curvature(model, batches, cfg, seed=0)
    blocks = _blocks(model, parameter_groups(model, "layer"))
    assert [g["name"] for g in r["groups"]] == list(blocks) == ["0", "1", "5"]
    for g in r["groups"]:
        idx = blocks[g["name"]]
        Hb = H[idx][:, idx]
        assert g["exact"] and g["n_params"] == len(idx)
        assert g["trace"]["mean"] == pytest.approx(float(Hb.trace()), rel=1e-9, abs=1e-12)
        assert g["top_eigenvalue"] == pytest.approx(float(torch.linalg.eigvalsh(Hb).max()),
                                                    rel=1e-8)
    assert r["trace_sum"] == pytest.approx(float(H.trace()), rel=1e-9)   # Σ_b tr H_bb = tr H


def test_shared_probe_layer_traces_are_unbiased(tiny):
    """Few Lanczos steps: the probes carry the rest; each group's estimate lies within 4
    standard errors of its exact block trace and the sum near the whole trace."""
    model, data, H = tiny
    batches = first_samples(data, 24, 24, torch.device("cpu"))
    cfg = LayersConfig(granularity="stage", max_iter=3, tol=1e-12, trace_probes=200)
    r = layer_curvature(model, batches, cfg, seed=1)
    blocks = _blocks(model, parameter_groups(model, "stage"))
    for g in r["groups"]:
        idx = blocks[g["name"]]
        exact = float(H[idx][:, idx].trace())
        if g["exact"]:
            assert g["trace"]["mean"] == pytest.approx(exact, rel=1e-9)
        else:
            assert abs(g["trace"]["mean"] - exact) < 4 * g["trace"]["stderr"]
    assert any(not g["exact"] for g in r["groups"])
    se = math.sqrt(sum(g["trace"]["stderr"] ** 2 for g in r["groups"]))
    assert abs(r["trace_sum"] - float(H.trace())) < 4 * se


def test_stage_groups_of_a_resnet_partition_its_parameters():
    from flatkd import models
    net = models.create("resnet8", 10, [0.5] * 3, [0.25] * 3)
    groups = parameter_groups(net, "stage")
    assert list(groups) == ["stem", "stages.0", "stages.1", "stages.2", "fc"]
    layer = parameter_groups(net, "layer")
    assert len(layer) == 19 and "stages.1.0.downsample.0" in layer
    assert sorted(n for ns in groups.values() for n in ns) == \
        sorted(n for n, _ in net.named_parameters())
