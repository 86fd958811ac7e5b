"""Native Hessian backend against exact float64 Hessians (torch.func.hessian) on small models."""
import copy

import numpy as np
import pytest
import torch

from flatkd.flatness.backends import HESSIAN_BACKENDS
from flatkd.flatness.config import HessianConfig
from flatkd.flatness.data import first_samples
from flatkd.flatness.hvp import HessianOperator
from flatkd.flatness.state import preserved, set_bn_mode
from flatkd.flatness.trace import MIN_PROBES

from flatness_nets import N, conv_bn, dataset, exact_hessian, exact_spectrum, mlp

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny dense algebra: one thread (with 2 threads on a loaded 2-core machine these tests ran
    up to 30× slower, spinning OpenMP workers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
        out[name] = (res, exact_spectrum(name)[1][::-1].copy(), cfg)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_top5_eigenvalues_match_exact(results, name):
    res, exact, _ = results[name]
    top = np.array(res["top_eigenvalues"])
    ref = exact[::-1][:5]
    assert len(top) == 5 and res["eigen_converged"]
    assert np.max(np.abs(top - ref) / np.abs(ref)) <= 1e-4


def test_auto_trace_is_deflated_within_three_standard_errors_on_a_smooth_net(results):
    """tanh MLP: ``auto`` → ``deflated`` (the Gauss–Newton identity does not hold)."""
    res, exact, cfg = results["mlp"]
    t = res["trace"]
    assert res["trace_estimator"] == "deflated" and set(t) == {"mean", "stderr", "n_hvp"}
    assert t["n_hvp"] == res["lanczos_steps"] + max(cfg.trace_hvps - res["lanczos_steps"], MIN_PROBES)
    assert 0 < t["stderr"] and abs(t["mean"] - exact.sum()) <= 3 * t["stderr"]


def test_auto_trace_is_exact_gauss_newton_on_a_relu_bn_net(results):
    """conv + BN(eval) + ReLU: ``auto`` → ``gauss-newton``, the exact trace (float32 products vs
    the float64 Hessian), no Hessian-vector products beyond the shared Lanczos run."""
    res, exact, _ = results["conv_bn"]
    t = res["trace"]
    assert res["trace_estimator"] == "gauss-newton"
    assert t["mean"] == pytest.approx(exact.sum(), rel=1e-5) and t["stderr"] == 0.0
    assert t["n_hvp"] == 0 and res["n_hvp_total"] == res["lanczos_steps"]


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
    eval_ref = exact_spectrum("conv_bn")[1][0]
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
    ref = exact_spectrum("conv_bn")[0].numpy() @ v.double().numpy()
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


@pytest.mark.parametrize("estimator", ["hutchinson", "hutch++", "xtrace"])
def test_backend_trace_estimator_choice(estimator):
    model = mlp()
    cfg = HessianConfig(samples=N, top_k=1, trace_estimator=estimator, trace_hvps=46,
                        slq_steps=5)
    res = HESSIAN_BACKENDS.get("native")(model, first_samples(dataset(), N, N, CPU), cfg, seed=0)
    t, exact = res["trace"], float(torch.trace(exact_spectrum("mlp")[0]))
    assert res["trace_estimator"] == estimator and t["n_hvp"] == 46
    assert res["n_hvp_total"] == res["lanczos_steps"] + 46
    assert abs(t["mean"] - exact) <= 3 * t["stderr"]


class RecordingBar:
    """Stands in for tqdm: records (products done, total) at every refresh and at the end."""

    made: list["RecordingBar"] = []

    def __init__(self, total, **kw):
        self.total, self.n, self.history = total, 0, [(0, total)]
        RecordingBar.made.append(self)

    def update(self, k):
        self.n += k

    def refresh(self):
        self.history.append((self.n, self.total))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.history.append((self.n, self.total))


@pytest.mark.parametrize("estimator,slq_probes", [("deflated", 1), ("deflated", 2),
                                                  ("hutch++", 1), ("xtrace", 2)])
def test_progress_bar_counts_the_planned_products(monkeypatch, estimator, slq_probes):
    """The bar's total is the number of products the run does, known once the shared Lanczos
    run has ended (before: a plan from the settings, not max_iter)."""
    import flatkd.flatness.backends as backends

    RecordingBar.made = []
    monkeypatch.setattr(backends, "tqdm", RecordingBar)
    cfg = HessianConfig(samples=N, top_k=3, trace_estimator=estimator, trace_hvps=40,
                        slq_probes=slq_probes, slq_steps=12, max_iter=100)
    res = backends.native(mlp(), first_samples(dataset(), N, N, CPU), cfg, seed=0, progress=True)
    (bar,) = RecordingBar.made
    done = res["n_hvp_total"]
    assert bar.n == done and all(total == done for _, total in bar.history[1:])
    assert bar.history[1][0] == res["lanczos_steps"]      # exact from the end of the shared run
    assert bar.history[0][1] < cfg.max_iter + cfg.trace_hvps   # the plan is not the worst case
