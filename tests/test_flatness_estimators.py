"""Lanczos stop rule and trace estimators against exact float64 spectra: explicit matrices and
the exact Hessians of two small nets (conv + BatchNorm, 205 parameters; tanh MLP, 797)."""
import numpy as np
import pytest
import torch

from flatkd.flatness.lanczos import (converged_top, lanczos, ritz_bounds, top_eigen_run,
                                     top_eigenvalues)
from flatkd.flatness.trace import MIN_PROBES, TRACE_ESTIMATORS, deflated_rest, rademacher, xtrace

from flatness_nets import exact_spectrum, sym

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny dense algebra: one thread (with 2 threads on a loaded 2-core machine these tests ran
    up to 30× slower, spinning OpenMP workers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
F64 = {"dtype": torch.float64, "device": CPU}


@pytest.fixture(scope="module")
def exact():
    """name → (H [P, P] float64, its eigenvalues descending)."""
    return {name: exact_spectrum(name) for name in ("conv_bn", "mlp")}


def top5(A: torch.Tensor, tol: float, seed: int, max_iter: int = 400):
    return top_eigenvalues(lambda v: A @ v, A.shape[0], 5, tol=tol, max_iter=max_iter,
                           generator=torch.Generator().manual_seed(seed), **F64)


# --- stop rule --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["conv_bn", "mlp"])
@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-6, 1e-9])
def test_stop_rule_returns_eigenvalues_within_the_asked_tolerance(exact, name, tol):
    A, lam = exact[name]
    for seed in range(5):
        r = top5(A, tol, seed)
        assert r.converged
        assert np.max(np.abs(np.array(r.values) - lam[:5]) / np.abs(lam[:5])) <= tol


def test_stop_rule_stops_on_the_asked_tolerance_not_far_past_it(exact):
    """A looser tolerance costs fewer products (the old residual rule ran to ~1e-7 whatever
    was asked)."""
    A, lam = exact["conv_bn"]
    steps = {tol: top5(A, tol, 0).n_matvec for tol in (1e-2, 1e-4, 1e-8)}
    assert steps[1e-2] < steps[1e-4] < steps[1e-8]


def test_error_bounds_hold_at_every_step():
    """After every Lanczos step each Ritz value is within its residual of an eigenvalue; once the
    top k + 2 = 7 are isolated (the stop rule's guard) the top 5 are within r²/gap."""
    rng = np.random.default_rng(0)
    eigs = np.r_[[50.0, 20.0, 19.0, 10.0, 9.5, 9.0, 5.0, 4.0], rng.normal(0, 1, 292)]
    A = sym(eigs)
    run = lanczos(lambda v: A @ v, torch.randn(300, generator=torch.Generator().manual_seed(1),
                                               dtype=torch.float64), 80)
    guarded = sharper = 0
    for m in range(3, 80):
        theta, r, gap, bound = ritz_bounds(run.alphas[:m], run.betas[:m - 1], run.betas[m - 1])
        dist = np.abs(eigs[None, :] - theta[:, None]).min(axis=1)
        assert np.all(dist <= r * (1 + 1e-9) + 1e-12) and np.all(bound <= r)
        if m >= 7 and np.all(gap[:7] > r[:7]):
            guarded += 1
            assert np.all(dist[:5] <= bound[:5] * (1 + 1e-9) + 1e-12)
            sharper += int(np.sum((bound[:5] < 0.1 * r[:5]) & (r[:5] > 1e-12)))
    assert guarded > 40 and sharper > 20                        # r²/gap is used, and sharper


def test_stop_rule_needs_k_plus_two_isolated_ritz_values():
    A = sym(list(np.linspace(1, 10, 40)))
    run = lanczos(lambda v: A @ v, torch.ones(40, dtype=torch.float64), 40)
    a, b = run.alphas, run.betas
    assert converged_top(a, b, 0.0, 3, 40, 1e-6, 0.0)             # zero residual: converged
    assert not converged_top(a[:4], b[:3], 0.0, 3, 40, 1e-6, 0.0)   # only k+1 Ritz values
    assert converged_top(a[:5], b[:4], 0.0, 3, 40, 1e-6, 0.0)
    # decoupled T: only the last Ritz value (3.9) has a residual, β_m. The top 3 are exact, but
    # the guard waits until 3.9's interval [3.9 ± β_m] is clear of its neighbour 4.0
    t = np.array([10.0, 8.0, 6.0, 4.0, 3.9])
    assert not converged_top(t, np.zeros(4), 0.5, 3, 40, 1e-6, 0.0)
    assert converged_top(t, np.zeros(4), 0.05, 3, 40, 1e-6, 0.0)
    theta, r, gap, bound = ritz_bounds(a[:12], b[:11], b[11])
    assert np.all(bound <= r + 1e-15) and np.all(gap >= 0)


CLUSTERED = {
    # 8 eigenvalues 1 % apart on top of a bulk: Lanczos without a guard returns 5 of the 8
    "clustered": np.r_[10 - 0.1 * np.arange(8), np.random.default_rng(0).uniform(0, 9, 192)],
    # a well separated top and a wide two-sided bulk (like the ResNet-8 Hessians)
    "top-heavy": np.r_[[171.0, 60.0, 27.0, 21.0, 15.0, 10.0, 8.2, 7.3],
                       np.random.default_rng(1).normal(0, 2, 192)],
}


@pytest.mark.parametrize("spectrum", CLUSTERED)
@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-6])
def test_guard_no_wrong_eigenvalue_over_20_seeds(spectrum, tol):
    eigs = CLUSTERED[spectrum]
    A, lam = sym(eigs), np.sort(eigs)[::-1][:5]
    for seed in range(20):
        r = top5(A, tol, seed, max_iter=200)
        assert np.max(np.abs(np.array(r.values) - lam) / lam) <= tol, (seed, r.values)


def test_top_eigenvalues_are_algebraic_not_by_modulus():
    eigs = [-50.0, 10.0, 9.0, 8.0] + list(np.linspace(-1, 1, 60))
    A = sym(eigs)
    r = top_eigenvalues(lambda v: A @ v, len(eigs), 3, tol=1e-8, max_iter=64,
                        generator=torch.Generator().manual_seed(0), **F64)
    assert np.allclose(r.values, [10.0, 9.0, 8.0], rtol=1e-8) and r.converged


def test_restart_after_breakdown_finds_repeated_eigenvalues():
    A = sym([5.0, 5.0, 5.0, 1.0, 1.0, 0.0, 0.0, 0.0])           # Krylov space of any v is 3-dim
    r = top_eigenvalues(lambda v: A @ v, 8, 4, tol=1e-10, max_iter=8,
                        generator=torch.Generator().manual_seed(0), **F64)
    assert np.allclose(r.values, [5.0, 5.0, 5.0, 1.0], atol=1e-9)


# --- trace estimators -------------------------------------------------------------------------

def _estimate(name, A, budget, seed, shared=None):
    return TRACE_ESTIMATORS.get(name)(lambda v: A @ v, A.shape[0], budget,
                                      generator=torch.Generator().manual_seed(seed), shared=shared,
                                      **F64)


def test_xtrace_matches_its_definition():
    """Closed-form downdates = the leave-one-out definition built with explicit QRs, for the
    estimate and for the delete-one jackknife standard error."""
    torch.manual_seed(0)
    n, s = 40, 6
    A = torch.randn(n, n, dtype=torch.float64)
    A = A + A.T
    est = xtrace(lambda v: A @ v, n, 2 * s, generator=torch.Generator().manual_seed(3), **F64)
    g = torch.Generator().manual_seed(3)
    om = torch.stack([torch.randn(n, generator=g, dtype=torch.float64) for _ in range(s)]).T
    Y = A @ om

    def naive(cols):
        ts = []
        for i in cols:
            q, _ = torch.linalg.qr(Y[:, [j for j in cols if j != i]])
            w = om[:, i] - q @ (q.T @ om[:, i])
            scale = (n - len(cols) + 1) / float(w @ w)
            ts.append(float(torch.trace(q.T @ A @ q) + scale * w @ A @ w))
        return np.mean(ts)

    loo = np.array([naive([c for c in range(s) if c != j]) for j in range(s)])
    assert est.n_hvp == 2 * s
    assert est.mean == pytest.approx(naive(range(s)), rel=1e-10)
    assert est.stderr == pytest.approx(np.sqrt((s - 1) / s * np.sum((loo - loo.mean()) ** 2)),
                                       rel=1e-8)


def test_xtrace_on_a_low_rank_operator_is_exact():
    A = sym([3.0, 2.0, 1.0] + [0.0] * 47)
    est = _estimate("xtrace", A, 12, 0)
    assert est.mean == pytest.approx(6.0, rel=1e-10) and est.stderr == 0.0


@pytest.mark.parametrize("name", ["hutchinson", "hutch++", "xtrace", "deflated"])
def test_estimators_are_unbiased_and_report_their_budget(name):
    eigs = list(np.geomspace(100, 0.01, 200))
    A = sym(eigs)
    est = [_estimate(name, A, 30, s) for s in range(40)]
    means = np.array([e.mean for e in est])
    assert all(e.n_hvp == 30 for e in est)
    assert abs(means.mean() - sum(eigs)) <= 4 * means.std(ddof=1) / np.sqrt(len(means))
    ratio = np.median([e.stderr for e in est]) / means.std(ddof=1)
    # the jackknife is conservative by design (XTrace); the others are sample standard errors
    assert 0.6 <= ratio <= (2.5 if name == "xtrace" else 1.5)


def test_adaptive_split_spends_the_budget_where_the_variance_is():
    """Fast decay: Lanczos takes all but the minimum probes and the error all but vanishes
    (a fixed third of the budget leaves 100× more); flat spectrum: a short Lanczos part."""
    decay = sym(list(100 * 0.8 ** np.arange(300)))
    flat = sym(list(np.random.default_rng(0).uniform(0, 1, 300)))
    for A, expect_long in ((decay, True), (flat, False)):
        exact = float(torch.trace(A))
        adaptive = [_estimate("deflated", A, 60, s) for s in range(10)]
        third = []
        for s in range(10):
            g = torch.Generator().manual_seed(s)
            run = lanczos(lambda v: A @ v, rademacher(300, g, **F64), 20)
            third.append(deflated_rest(lambda v: A @ v, run, 40, 300, generator=g, **F64))
        rms = {k: np.sqrt(np.mean([(e.mean - exact) ** 2 for e in v]))
               for k, v in (("adaptive", adaptive), ("third", third))}
        if expect_long:
            assert rms["adaptive"] < 0.01 * rms["third"]
        else:
            steps = TRACE_ESTIMATORS.get("deflated").krylov(60, 300)
            run = lanczos(lambda v: A @ v, rademacher(300, torch.Generator().manual_seed(0), **F64),
                          60, stop=lambda a, b, beta: not steps(a, b, beta))
            assert run.n_matvec <= 10 and rms["adaptive"] <= 1.2 * rms["third"]


def test_deflated_extends_a_shared_run_and_keeps_its_probes():
    A = sym(list(100 * 0.8 ** np.arange(300)))
    est = TRACE_ESTIMATORS.get("deflated")
    run = top_eigen_run(lambda v: A @ v, torch.ones(300, dtype=torch.float64), 2, tol=1e-4,
                        max_iter=100, generator=torch.Generator().manual_seed(0), min_steps=5,
                        extend=est.krylov(80, 300), extend_max=80)
    assert run.n_matvec == 80 - MIN_PROBES
    out = _estimate("deflated", A, 80, 0, shared=run)
    assert out.n_hvp == 80 == run.n_matvec + est.products_after(80, run.n_matvec, 300)
    assert out.mean == pytest.approx(float(torch.trace(A)), rel=1e-6)


def _coverage(A, name, budget, seeds):
    exact = float(torch.trace(A))
    est = [_estimate(name, A, budget, s) for s in range(seeds)]
    err = np.array([e.mean - exact for e in est])
    covered = np.mean([abs(d) <= 2 * e.stderr for d, e in zip(err, est)])
    return err, covered


@pytest.mark.parametrize("name", ["deflated", "xtrace"])
def test_unbiased_within_stderr_and_honest_stderr_on_an_exact_hessian(exact, name):
    """conv_bn, 30 products, 100 seeds: mean error within 3 standard errors of the mean, the
    true trace inside ±2 reported stderr ≥ 90 % of the time."""
    A, _ = exact["conv_bn"]
    err, covered = _coverage(A, name, 30, 100)
    assert abs(err.mean()) <= 3 * err.std(ddof=1) / np.sqrt(len(err))
    assert covered >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deflated", "xtrace", "hutch++", "hutchinson"])
@pytest.mark.parametrize("net", ["conv_bn", "mlp"])
@pytest.mark.parametrize("budget", [30, 60])
def test_stderr_coverage_on_exact_hessians(exact, name, net, budget):
    A, _ = exact[net]
    err, covered = _coverage(A, name, budget, 400)
    assert abs(err.mean()) <= 3 * err.std(ddof=1) / np.sqrt(len(err))
    assert covered >= 0.9


def test_xtrace_prefixes_of_one_run_are_the_smaller_budgets():
    """The benchmark evaluates budgets on nested prefixes of one XTrace run: same numbers."""
    from flatkd.flatness.trace import xtrace_from_products

    A = sym(list(np.geomspace(50, 0.1, 60)))
    g = torch.Generator().manual_seed(4)
    om = torch.stack([torch.randn(60, generator=g, dtype=torch.float64) for _ in range(10)])
    Y = (A @ om.T)
    Q, R = torch.linalg.qr(Y)
    Z = A @ Q
    for s in (3, 6, 10):
        alone = xtrace(lambda v: A @ v, 60, 2 * s, generator=torch.Generator().manual_seed(4), **F64)
        nested = xtrace_from_products(om[:s], Y[:, :s], Q[:, :s], R[:s, :s], Z[:, :s], 60)
        assert nested.mean == pytest.approx(alone.mean, rel=1e-9)
        assert nested.stderr == pytest.approx(alone.stderr, rel=1e-7)
