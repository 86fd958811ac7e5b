"""Native Hessian backend against exact float64 Hessians (torch.func.hessian) on small models."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from flatkd.flatness.backends import HESSIAN_BACKENDS
from flatkd.flatness.config import HessianConfig
from flatkd.flatness.data import first_samples
from flatkd.flatness.hvp import HessianOperator
from flatkd.flatness.lanczos import converged_top, lanczos, top_eigenvalues
from flatkd.flatness.state import preserved, set_bn_mode
from flatkd.flatness.trace import TRACE_ESTIMATORS

CPU = torch.device("cpu")
N = 32


def conv_bn() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5))
    m.train()
    with torch.no_grad():                       # non-trivial running statistics
        m(torch.rand(64, 3, 8, 8) * 2)
    return m.eval()


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4), nn.Tanh(), nn.Linear(4, 5)).eval()


def dataset() -> torch.utils.data.Dataset:
    g = torch.Generator().manual_seed(2)
    return torch.utils.data.TensorDataset(torch.rand(N, 3, 8, 8, generator=g),
                                          torch.randint(0, 5, (N,), generator=g))


def exact_hessian(model: nn.Module, bn_mode: str = "eval") -> np.ndarray:
    """Dense float64 Hessian of the mean cross-entropy on the whole dataset as one batch.

    torch.func.hessian in eval mode. In train mode torch.func (jacfwd or jacrev twice) returns
    an asymmetric, wrong Hessian through batch_norm with batch statistics (torch 2.14; checked
    against finite differences), so there the reference is torch.autograd.functional.hessian.
    """
    m64 = copy.deepcopy(model).double()
    set_bn_mode(m64, bn_mode)
    for m in m64.modules():                     # batch statistics without buffer updates
        if isinstance(m, nn.BatchNorm2d) and bn_mode == "train":
            m.track_running_stats = False
    x, y = dataset().tensors
    names, shapes = zip(*[(n, p.shape) for n, p in m64.named_parameters()])
    flat = torch.cat([p.detach().reshape(-1) for p in m64.parameters()])

    def loss(v):
        parts = torch.split(v, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return nn.functional.cross_entropy(functional_call(m64, params, (x.double(),)), y)

    if bn_mode == "train":
        return torch.autograd.functional.hessian(loss, flat).numpy()
    return hessian(loss)(flat).detach().numpy()


MODELS = {"conv_bn": conv_bn, "mlp": mlp}


@pytest.fixture(scope="module")
def results():
    """Native backend results and exact spectra per model (computed once)."""
    out = {}
    for name, build in MODELS.items():
        model = build()
        cfg = HessianConfig(samples=N, slq_probes=1, slq_steps=40, trace_hvps=60)
        res = HESSIAN_BACKENDS.get("native")(model, first_samples(dataset(), N, 16, CPU), cfg,
                                             seed=0)
        out[name] = (res, np.linalg.eigvalsh(exact_hessian(model)), cfg)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_top5_eigenvalues_match_exact(results, name):
    res, exact, _ = results[name]
    top = np.array(res["top_eigenvalues"])
    ref = exact[::-1][:5]
    assert len(top) == 5 and res["eigen_converged"]
    assert np.max(np.abs(top - ref) / np.abs(ref)) <= 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_trace_within_three_standard_errors(results, name):
    res, exact, cfg = results[name]
    t = res["trace"]
    assert set(t) == {"mean", "stderr", "n_hvp"}
    assert t["n_hvp"] == max(cfg.trace_hvps, res["lanczos_steps"] + 5)
    assert 0 < t["stderr"] and abs(t["mean"] - exact.sum()) <= 3 * t["stderr"]


@pytest.mark.parametrize("name", MODELS)
def test_density_integrates_to_one_and_spans_the_spectrum(results, name):
    res, exact, cfg = results[name]
    grid, values = np.array(res["density"]["grid"]), np.array(res["density"]["values"])
    assert len(grid) == cfg.density_grid and np.all(values >= 0)
    assert np.trapezoid(values, grid) == pytest.approx(1.0, abs=1e-4)
    span = (grid[-1] - grid[0]) / (1 + 12 * cfg.density_width)   # grid = extremes ± 6σ
    lo, hi = grid[0] + 6 * cfg.density_width * span, grid[-1] - 6 * cfg.density_width * span
    width = exact[-1] - exact[0]
    assert abs(lo - exact[0]) <= 1e-3 * width and abs(hi - exact[-1]) <= 1e-3 * width


def test_train_mode_batchnorm_hessian_and_buffers_restored():
    model = conv_bn()
    before = copy.deepcopy(model.state_dict())
    cfg = HessianConfig(samples=N, bn_mode="train", top_k=3, trace_hvps=6, slq_probes=1,
                        slq_steps=5)
    res = HESSIAN_BACKENDS.get("native")(model, first_samples(dataset(), N, N, CPU), cfg, seed=0)
    ref = np.linalg.eigvalsh(exact_hessian(model, "train"))[::-1][:3]
    assert np.max(np.abs(np.array(res["top_eigenvalues"]) - ref) / np.abs(ref)) <= 1e-4
    eval_ref = np.linalg.eigvalsh(exact_hessian(model, "eval"))[::-1][0]
    assert abs(ref[0] - eval_ref) > 1e-2 * abs(eval_ref)         # the mode really matters
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


@pytest.mark.parametrize("cache", [True, False])
def test_minibatched_products_equal_the_exact_hessian(cache):
    model = conv_bn()
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(3))
    with preserved(model):
        set_bn_mode(model, "eval")
        with HessianOperator(model, first_samples(dataset(), N, 10, CPU), cache_graphs=cache) as op:
            hv = op.matvec(v).double().numpy()
            assert op.n_hvp == 1
    ref = exact_hessian(model) @ v.double().numpy()
    assert np.max(np.abs(hv - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_model_restored_and_global_rng_untouched():
    model = conv_bn()
    model.train()
    model[5].weight.requires_grad_(False)
    grad = torch.ones_like(model[0].weight)
    model[0].weight.grad = grad
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    cfg = HessianConfig(samples=8, top_k=2, trace_hvps=6, slq_probes=1, slq_steps=4)
    HESSIAN_BACKENDS.get("native")(model, first_samples(dataset(), 8, 8, CPU), cfg, seed=0)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(m.training for m in model.modules())
    assert not model[5].weight.requires_grad and model[0].weight.grad is grad
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_same_seed_same_numbers_other_seed_other_numbers():
    cfg = HessianConfig(samples=16, top_k=2, trace_hvps=6, slq_probes=1, slq_steps=4)
    run = lambda s: HESSIAN_BACKENDS.get("native")(mlp(), first_samples(dataset(), 16, 8, CPU),
                                                   cfg, seed=s)
    a, b, c = run(0), run(0), run(1)
    assert a == b and a["trace"] != c["trace"]


# --- pure linear algebra on explicit matrices -------------------------------------------------

def _sym(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


def test_top_eigenvalues_are_algebraic_not_by_modulus():
    eigs = [-50.0, 10.0, 9.0, 8.0] + list(np.linspace(-1, 1, 60))
    A = _sym(eigs)
    r = top_eigenvalues(lambda v: A @ v, len(eigs), 3, tol=1e-8, max_iter=64,
                        generator=torch.Generator().manual_seed(0), dtype=torch.float64, device=CPU)
    assert np.allclose(r.values, [10.0, 9.0, 8.0], rtol=1e-8) and r.converged


def test_restart_after_breakdown_finds_repeated_eigenvalues():
    A = _sym([5.0, 5.0, 5.0, 1.0, 1.0, 0.0, 0.0, 0.0])           # Krylov space of any v is 3-dim
    r = top_eigenvalues(lambda v: A @ v, 8, 4, tol=1e-10, max_iter=8,
                        generator=torch.Generator().manual_seed(0), dtype=torch.float64, device=CPU)
    assert np.allclose(r.values, [5.0, 5.0, 5.0, 1.0], atol=1e-9)


def test_stop_rule_needs_k_plus_two_converged_ritz_values():
    A = _sym(list(np.linspace(1, 10, 40)))
    run = lanczos(lambda v: A @ v, torch.ones(40, dtype=torch.float64), 40)
    a, b = run.alphas, run.betas
    assert converged_top(a, b, 0.0, 3, 40, 1e-6, 0.0)             # zero residual: converged
    assert not converged_top(a[:4], b[:3], 0.0, 3, 40, 1e-6, 0.0)   # only k+1 Ritz values
    assert converged_top(a[:5], b[:4], 0.0, 3, 40, 1e-6, 0.0)


@pytest.mark.parametrize("name", ["hutchinson", "hutch++", "deflated"])
def test_estimators_are_unbiased_and_report_their_budget(name):
    eigs = list(np.geomspace(100, 0.01, 200))
    A = _sym(eigs)
    est = [TRACE_ESTIMATORS.get(name)(lambda v: A @ v, 200, 30, generator=torch.Generator().manual_seed(s),
                                      dtype=torch.float64, device=CPU) for s in range(40)]
    means = np.array([e.mean for e in est])
    assert all(e.n_hvp == 30 for e in est)
    assert abs(means.mean() - sum(eigs)) <= 4 * means.std(ddof=1) / np.sqrt(len(means))
    assert np.median([e.stderr for e in est]) == pytest.approx(means.std(ddof=1), rel=0.5)


def test_deflation_cuts_the_error_on_a_decaying_spectrum():
    eigs = list(100 * 0.8 ** np.arange(200))
    A = _sym(eigs)
    err = {n: np.sqrt(np.mean([(TRACE_ESTIMATORS.get(n)(lambda v: A @ v, 200, 30,
                                                        generator=torch.Generator().manual_seed(s),
                                                        dtype=torch.float64, device=CPU).mean
                                - sum(eigs)) ** 2 for s in range(20)]))
           for n in ("hutchinson", "deflated")}
    assert err["deflated"] < 0.5 * err["hutchinson"]


@pytest.mark.parametrize("estimator", ["hutchinson", "hutch++"])
def test_backend_trace_estimator_choice(estimator):
    model = mlp()
    cfg = HessianConfig(samples=N, top_k=1, trace_estimator=estimator, trace_hvps=45,
                        slq_steps=5)
    res = HESSIAN_BACKENDS.get("native")(model, first_samples(dataset(), N, N, CPU), cfg, seed=0)
    t, exact = res["trace"], np.trace(exact_hessian(model))
    assert res["trace_estimator"] == estimator and t["n_hvp"] == 45
    assert abs(t["mean"] - exact) <= 3 * t["stderr"]
