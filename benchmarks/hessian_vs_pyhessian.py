"""Native Hessian backend vs PyHessian 0.1 on a ResNet-8 trained briefly on digits and on a small
ReLU MLP, same samples (the first N un-augmented training images, BN eval mode).

Prints, per model:
  1. cost of one Hessian-vector product (graph reused) / one gradient, and vs PyHessian's HVP;
  2. top-5 eigenvalues: HVPs, wall time and max relative error vs a float64 reference (ARPACK
     eigsh on float64 products) for native Lanczos (tol 1e-4, error-bound stop rule) and
     PyHessian (tol 1e-4), per seed;
  3. trace: RMS relative error vs #HVPs (30/60/100) over seeds for PyHessian's Hutchinson,
     native Hutchinson, Hutch++, XTrace, the adaptive Lanczos-deflated estimator, and the
     deflated estimator as the flatness suite runs it (sharing a Lanczos run of at least
     ``--slq-steps`` steps with the eigenvalues and the density), with the mean products spent,
     the mean reported stderr (% of the trace) and how many seeds have the truth within
     ±2 stderr. The reference is exact: both nets are piecewise linear (ReLU, BN eval), so
     tr(H) = tr(Gauss–Newton) (flatkd.flatness.reference, tested against exact Hessians),
     cross-checked here against a deflated estimate with ``--check-hvps`` products;
  4. the goal lines of the estimator work (top-5 products and time vs PyHessian, trace error at
     60 and 100 products), each marked holds / FAILS with the measured value; the top-5 line
     adds the first Lanczos step at which the Ritz values are within 1e-4 (a floor for any
     stop rule), the trace lines the suite's default for piecewise-linear nets (the exact
     Gauss–Newton trace: its time in HVPs) beside the best estimator from products alone.

    python benchmarks/hessian_vs_pyhessian.py [--samples 128] [--seeds 5] [--check-hvps 300]
        [--epochs 3] [--threads N] [--models resnet8,mlp] [--parts top5,trace] [--no-hutchpp]

Timings on a shared machine are noisy (native and PyHessian alternate per seed, so load hits
both). Nothing here is a test; numbers go to stdout only.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import nn

import flatkd.datasets as datasets
import flatkd.models as models
from flatkd.flatness.data import first_samples
from flatkd.flatness.hvp import HessianOperator
from flatkd.flatness.lanczos import (LanczosRun, converged_top, lanczos, ritz, top_eigen_run,
                                     top_from_run)
from flatkd.flatness.pyhessian_compat import PyHessian
from flatkd.flatness.gauss_newton import gauss_newton_trace
from flatkd.flatness.state import preserved, set_bn_mode
from flatkd.flatness.trace import (TRACE_ESTIMATORS, deflated_rest, krylov_pays, rademacher,
                                   resolve_estimator, xtrace_from_products)

CPU = torch.device("cpu")
BUDGETS = (30, 60, 100)


def train_briefly(model: nn.Module, ds, epochs: int, lr: float, seed: int) -> nn.Module:
    """Plain SGD on cross-entropy (un-augmented digits), then eval mode."""
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def timed(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def hvp_costs(model, batches) -> float:
    """Prints the costs; returns the seconds of one native HVP."""
    with preserved(model):
        set_bn_mode(model, "eval")
        with HessianOperator(model, batches, cache_graphs=True) as op:
            v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))
            t_grad = timed(op.gradient, 10)
            t_hvp = timed(lambda: op.matvec(v), 10)
    with PyHessian(model, list(batches), CPU) as ph:
        t_py = timed(lambda: ph.trace(10, seed=0), 2) / 10
    print(f"  gradient {t_grad * 1e3:.1f} ms | native HVP {t_hvp * 1e3:.1f} ms "
          f"(= {t_hvp / t_grad:.2f} gradients) | PyHessian HVP {t_py * 1e3:.1f} ms "
          f"(native/PyHessian = {t_hvp / t_py:.2f})")
    return t_hvp


def reference_top5(model, batches) -> np.ndarray:
    """Top-5 eigenvalues in float64 by ARPACK (independent of the native Lanczos)."""
    m64 = copy.deepcopy(model).double()
    b64 = copy.copy(batches)
    b64.materialised = [(x.double(), y) for x, y in batches.materialised]
    with preserved(m64):
        set_bn_mode(m64, "eval")
        with HessianOperator(m64, b64, cache_graphs=True) as op:
            lin = sla.LinearOperator((op.dim, op.dim), dtype=np.float64,
                                     matvec=lambda v: op.matvec(torch.from_numpy(
                                         np.ascontiguousarray(v).reshape(-1))).numpy())
            vals = sla.eigsh(lin, k=5, which="LA", tol=1e-10, ncv=30, return_eigenvectors=False,
                             v0=np.ones(op.dim))
            n = op.n_hvp
    print(f"  float64 reference (ARPACK, tol 1e-10): {n} HVPs")
    return np.sort(vals)[::-1]


def first_accurate_step(run: LanczosRun, ref: np.ndarray, tol: float) -> int:
    """The first step of a Lanczos ``run`` whose top-5 Ritz values are all within ``tol`` of
    ``ref``: no stop rule on this Krylov space can return them earlier (a prefix of a run is the
    shorter run from the same start). 0 if the run stopped before that — its stop rule would
    then have returned values outside ``tol``."""
    for m in range(5, run.n_matvec + 1):
        theta = np.sort(ritz(run.alphas[:m], run.betas[:m - 1])[0])[::-1][:5]
        if np.max(np.abs(theta - ref) / np.abs(ref)) <= tol:
            return m
    return 0


def top5(model, batches, ref: np.ndarray, seeds: int) -> dict:
    rows = {"native": [], "pyhessian": []}
    optimum = []
    for seed in range(seeds):
        with preserved(model):
            set_bn_mode(model, "eval")
            t = time.perf_counter()
            with HessianOperator(model, batches, cache_graphs=True) as op:
                g = torch.Generator().manual_seed(seed)      # as top_eigenvalues draws it
                run = top_eigen_run(op.matvec, torch.randn(op.dim, generator=g, dtype=op.dtype),
                                    5, tol=1e-4, max_iter=100, generator=g)
                r = top_from_run(run, 5, op.dim, 1e-4)
            rows["native"].append((r.n_matvec, time.perf_counter() - t, r.values))
            optimum.append(first_accurate_step(run, ref, 1e-4))
        t = time.perf_counter()
        with PyHessian(model, list(batches), CPU) as ph:
            counter = _count_hvps(ph)
            vals = ph.top_eigenvalues(5, tol=1e-4, max_iter=100, seed=seed)
        rows["pyhessian"].append((counter(), time.perf_counter() - t, vals))
    out = {}
    for name, rs in rows.items():
        errs = [float(np.max(np.abs(np.array(v) - ref) / np.abs(ref))) for _, _, v in rs]
        out[name] = {"hvps": [n for n, _, _ in rs], "wall": [w for _, w, _ in rs], "err": errs}
        print(f"  {name:9s} HVPs {out[name]['hvps']}  wall s "
              f"{[round(w, 2) for w in out[name]['wall']]}  max rel err "
              f"{[f'{e:.1e}' for e in errs]}")
    out["optimum"] = optimum
    print(f"  first step of the native runs with all top-5 Ritz values within 1e-4 of the "
          f"reference: {optimum}")
    return out


def _count_hvps(ph: PyHessian):
    """Count PyHessian's products by wrapping its module-level HVP function (benchmark only)."""
    module = sys.modules["pyhessian.hessian"]
    original = module.hessian_vector_product
    calls = [0]

    def counting(*args, **kw):
        calls[0] += 1
        return original(*args, **kw)

    module.hessian_vector_product = counting

    def read() -> int:
        module.hessian_vector_product = original
        return calls[0]

    return read


def exact_trace(model, batches, check_hvps: int) -> tuple[float, float]:
    """tr(H) by the Gauss–Newton identity (exact for these piecewise-linear nets) and its
    seconds; printed with an independent HVP-based check."""
    with preserved(model):
        set_bn_mode(model, "eval")
        assert resolve_estimator("auto", model) == "gauss-newton"     # the suite's default here
        gauss_newton_trace(model, batches)                            # warm-up
        t = time.perf_counter()
        exact = gauss_newton_trace(model, batches)
        t_ggn = time.perf_counter() - t
        with HessianOperator(model, batches, cache_graphs=True) as op:
            check = TRACE_ESTIMATORS.get("deflated")(
                op.matvec, op.dim, check_hvps, generator=torch.Generator().manual_seed(10_000),
                dtype=op.dtype, device=CPU)
    z = (check.mean - exact) / check.stderr if check.stderr else math.inf
    print(f"  exact trace (tr Gauss–Newton = tr H for this ReLU/BN-eval net, {t_ggn:.1f} s): "
          f"{exact:.4f}; check: deflated with {check.n_hvp} HVPs {check.mean:.4f} ± "
          f"{check.stderr:.4f} (z = {z:+.2f})")
    return exact, t_ggn


def deflated_rows(op: HessianOperator, seed: int, slq_steps: int) -> dict:
    """{("deflated" | "deflated (suite)", budget): TraceEstimate}, from nested prefixes of one
    Lanczos run per seed: the standalone estimator stops its run where :func:`krylov_pays`
    says; the suite's run also waits for the top-5 eigenvalues (tol 1e-4) and ``slq_steps``
    steps, as the native backend does. A prefix of a Lanczos run is the shorter run from the same
    start, so each row is an exact sample of its estimator (rows of one seed are correlated)."""
    common = {"dtype": op.dtype, "device": CPU}
    start = torch.Generator().manual_seed(seed + 5000)
    floor = 10 * torch.finfo(op.dtype).eps
    stopped: dict = {}

    def variants(a, b, beta):
        m = len(a)
        for budget in BUDGETS:
            pays = krylov_pays(a, b, beta, budget, op.dim)
            yield ("deflated", budget), not pays
            eig = m >= 100 or converged_top(a, b, beta, 5, op.dim, 1e-4, floor)
            yield ("deflated (suite)", budget), m >= slq_steps and eig and not pays

    def stop(a, b, beta):
        for key, done in variants(a, b, beta):
            if done and key not in stopped:
                stopped[key] = len(a)
        return len(stopped) == 2 * len(BUDGETS)

    run = lanczos(op.matvec, rademacher(op.dim, start, **common), max(100, *BUDGETS),
                  generator=start, stop=stop)
    out = {}
    for key, budget in [(k, b) for k in ("deflated", "deflated (suite)") for b in BUDGETS]:
        m = stopped.get((key, budget), run.n_matvec)
        prefix = LanczosRun(run.alphas[:m], run.betas[:m - 1], run.basis[:m],
                            run.betas[m - 1] if m < run.n_matvec else run.residual, m)
        probes = TRACE_ESTIMATORS.get("deflated").products_after(budget, m, op.dim)
        out[(key, budget)] = deflated_rest(op.matvec, prefix, probes, op.dim,
                                           generator=torch.Generator().manual_seed(seed),
                                           **common)
    return out


def xtrace_rows(op: HessianOperator, seed: int) -> dict:
    """{budget: TraceEstimate} of XTrace from nested prefixes of one run with max(BUDGETS)/2
    test vectors: the same numbers as separate runs with the same seed (tested)."""
    g = torch.Generator().manual_seed(seed)
    s_max = max(BUDGETS) // 2
    omega = torch.stack([torch.randn(op.dim, generator=g, dtype=op.dtype) for _ in range(s_max)])
    Y = torch.stack([op.matvec(w) for w in omega]).T
    Q, R = torch.linalg.qr(Y)
    Z = torch.stack([op.matvec(q) for q in Q.T.contiguous()]).T
    return {b: xtrace_from_products(omega[:b // 2], Y[:, :b // 2], Q[:, :b // 2],
                                    R[:b // 2, :b // 2], Z[:, :b // 2], op.dim) for b in BUDGETS}


def traces(model, batches, seeds: int, exact: float, slq_steps: int, hutchpp: bool) -> dict:
    """{estimator: {budget: (RMS relative error %, mean products)}} and a printed table."""
    names = ["pyhessian", "hutchinson", *(["hutch++"] if hutchpp else []), "xtrace", "deflated",
             "deflated (suite)"]
    res = {n: {b: ([], [], []) for b in BUDGETS} for n in names}

    def add(name, b, mean, n_hvp, stderr):
        e, n, s = res[name][b]
        e.append(mean / exact - 1)
        n.append(n_hvp)
        s.append(stderr / abs(exact))

    with preserved(model):
        set_bn_mode(model, "eval")
        with HessianOperator(model, batches, cache_graphs=True) as op:
            for seed in range(seeds):
                for b in BUDGETS if hutchpp else ():
                    est = TRACE_ESTIMATORS.get("hutch++")(
                        op.matvec, op.dim, b, generator=torch.Generator().manual_seed(seed),
                        dtype=op.dtype, device=CPU)
                    add("hutch++", b, est.mean, est.n_hvp, est.stderr)
                for b, est in xtrace_rows(op, seed).items():
                    add("xtrace", b, est.mean, est.n_hvp, est.stderr)
                for (name, b), est in deflated_rows(op, seed, slq_steps).items():
                    add(name, b, est.mean, est.n_hvp, est.stderr)
                # Hutchinson: budgets are prefixes of one probe sequence per seed
                z_gen = torch.Generator().manual_seed(seed + 1000)   # not PyHessian's stream
                samples = []
                for _ in range(max(BUDGETS)):
                    z = rademacher(op.dim, z_gen, op.dtype, CPU)
                    samples.append(float(torch.dot(z.double(), op.matvec(z).double())))
                for b in BUDGETS:
                    s = samples[:b]
                    add("hutchinson", b, np.mean(s), b, np.std(s, ddof=1) / math.sqrt(b))
    with PyHessian(model, list(batches), CPU) as ph:
        for seed in range(seeds):
            samples = ph.trace_samples(max(BUDGETS), seed=seed)
            for b in BUDGETS:
                s = samples[:b]
                add("pyhessian", b, np.mean(s), b, np.std(s, ddof=1) / math.sqrt(b))
    print("  trace vs exact, per budget " + " / ".join(map(str, BUDGETS)) + " HVPs: RMS relative "
          "error % [mean products, mean reported stderr %, seeds within ±2 stderr]")
    out = {}
    for name in names:
        cells, out[name] = [], {}
        for b in BUDGETS:
            e, n, s = (np.array(v) for v in res[name][b])
            rms = 100 * math.sqrt(np.mean(e ** 2))
            out[name][b] = (rms, float(np.mean(n)))
            cells.append(f"{rms:6.2f} [{np.mean(n):5.1f}, {100 * np.mean(s):.2f}, "
                         f"{int(np.sum(np.abs(e) <= 2 * s))}/{len(e)}]")
        print(f"    {name:17s} " + " | ".join(cells))
    return out


def goals(top: dict | None, tr: dict | None, exact_cost: tuple[float, float] | None) -> None:
    """The goal lines; ``exact_cost`` = (seconds of the Gauss–Newton trace, of one HVP)."""
    if top:
        top_goals(top)
    for budget, target in ((60, 1.0), (100, 0.5)) if tr else ():
        best = min((n for n in tr if n not in ("pyhessian", "hutchinson")),
                   key=lambda n: tr[n][budget][0])
        rms, used = tr[best][budget]
        suite, suite_used = tr["deflated (suite)"][budget]
        t_gn, t_hvp = exact_cost
        print(f"  GOAL trace RMS <= {target} % at {budget} products: the suite's default (auto ="
              f" gauss-newton on this piecewise-linear net) is exact with 0 products, "
              f"{t_gn:.2f} s = the time of {t_gn / t_hvp:.1f} HVPs -> holds; from products alone"
              f": best {best} {rms:.2f} % ({used:.0f} products) -> "
              f"{'holds' if rms <= target else 'FAILS'}; deflated in the suite {suite:.2f} % "
              f"({suite_used:.0f} products); PyHessian {tr['pyhessian'][budget][0]:.2f} %")


def top_goals(top: dict) -> None:
    nat, py = top["native"], top["pyhessian"]
    ratio = np.mean(py["hvps"]) / np.mean(nat["hvps"])
    ok = max(nat["hvps"]) <= 15 and max(nat["err"]) <= 1e-4 and ratio >= 4 \
        and max(nat["err"]) <= min(py["err"])
    print(f"  GOAL top-5 <= 15 products at error <= 1e-4, >= 4x fewer than PyHessian at equal or "
          f"better accuracy: native {min(nat['hvps'])}-{max(nat['hvps'])} products (max error "
          f"{max(nat['err']):.1e}), PyHessian {min(py['hvps'])}-{max(py['hvps'])} (error >= "
          f"{min(py['err']):.1e}): {ratio:.1f}x fewer -> {'holds' if ok else 'FAILS'}; the "
          f"Krylov space itself first holds the top 5 within 1e-4 at step "
          f"{min(top['optimum'])}-{max(top['optimum'])} (no stop rule can return earlier)")
    wall = np.mean(py["wall"]) / np.mean(nat["wall"])
    print(f"  GOAL top-5 wall time >= 3.5x less than PyHessian: native {np.mean(nat['wall']):.2f} s"
          f", PyHessian {np.mean(py['wall']):.2f} s: {wall:.1f}x -> "
          f"{'holds' if wall >= 3.5 else 'FAILS'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--check-hvps", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--slq-steps", type=int, default=40, help="the suite's hessian.slq_steps")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--models", default="resnet8,mlp")
    ap.add_argument("--parts", default="top5,trace", help="top5 and/or trace")
    ap.add_argument("--no-hutchpp", action="store_true", help="skip the Hutch++ row (saves time)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = datasets.spec("digits")
    ds = datasets.get("digits", split="train", augment=False)
    batches = first_samples(ds, args.samples, args.samples, CPU)
    builders = {
        "resnet8": ("ResNet-8", lambda: models.create("resnet8", spec.num_classes, mean=spec.mean,
                                                      std=spec.std)),
        "mlp": ("MLP 3072-32-10 (ReLU)", lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.ReLU(), nn.Linear(32, 10))),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, N = {args.samples} "
          f"samples, float32, BN eval; {args.seeds} seeds; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; shared machine: timings are noisy")
    for key in args.models.split(","):
        title, build = builders[key]
        torch.manual_seed(0)
        model = train_briefly(build(), ds, args.epochs, 0.05, 0)
        print(f"\n== {title}: {sum(p.numel() for p in model.parameters())} parameters")
        t_hvp = hvp_costs(model, batches)
        top = tr = exact_cost = None
        if "top5" in parts:
            ref = reference_top5(model, batches)
            print(f"  top-5 reference: {np.array2string(ref, precision=5)}")
            top = top5(model, batches, ref, args.seeds)
        if "trace" in parts:
            exact, t_gn = exact_trace(model, batches, args.check_hvps)
            exact_cost = (t_gn, t_hvp)
            tr = traces(model, batches, args.seeds, exact, args.slq_steps, not args.no_hutchpp)
        goals(top, tr, exact_cost)
        print(f"  (load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())})")


if __name__ == "__main__":
    main()
