"""Native Hessian backend vs PyHessian 0.1 on a ResNet-8 trained briefly on digits and on a small
MLP (flat spectrum), same samples (the first N un-augmented training images, BN eval mode).

Prints, per model:
  1. cost of one Hessian-vector product (graph reused) / one gradient, and vs PyHessian's HVP;
  2. top-5 eigenvalues: HVPs, wall time and max relative error vs a float64 reference (ARPACK
     eigsh on float64 products) for native Lanczos (tol 1e-4) and PyHessian (tol 1e-4), per seed;
  3. trace: RMS relative error vs #HVPs (10/30/100) over seeds for PyHessian's Hutchinson,
     native Hutchinson, Hutch++ and the Lanczos-deflated estimator, against a reference
     deflated estimate with a large budget (its standard error is printed).

    python benchmarks/hessian_vs_pyhessian.py [--samples 128] [--seeds 5] [--ref-hvps 1000]
                                              [--epochs 3] [--threads N]

Timings on a shared machine are noisy. Nothing here is a test; numbers go to stdout only.
"""
from __future__ import annotations

import argparse
import copy
import math
import time

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import nn

import flatkd.datasets as datasets
import flatkd.models as models
from flatkd.flatness.data import first_samples
from flatkd.flatness.hvp import HessianOperator
from flatkd.flatness.lanczos import top_eigenvalues
from flatkd.flatness.pyhessian_compat import PyHessian
from flatkd.flatness.state import preserved, set_bn_mode
from flatkd.flatness.trace import TRACE_ESTIMATORS, rademacher

CPU = torch.device("cpu")
BUDGETS = (10, 30, 100)


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


def hvp_costs(model, batches) -> None:
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


def top5(model, batches, ref: np.ndarray, seeds: int) -> None:
    rows = {"native": [], "pyhessian": []}
    for seed in range(seeds):
        with preserved(model):
            set_bn_mode(model, "eval")
            t = time.perf_counter()
            with HessianOperator(model, batches, cache_graphs=True) as op:
                r = top_eigenvalues(op.matvec, op.dim, 5, tol=1e-4, max_iter=100,
                                    generator=torch.Generator().manual_seed(seed),
                                    dtype=op.dtype, device=CPU)
            rows["native"].append((r.n_matvec, time.perf_counter() - t, r.values))
        t = time.perf_counter()
        with PyHessian(model, list(batches), CPU) as ph:
            counter = _count_hvps(ph)
            vals = ph.top_eigenvalues(5, tol=1e-4, max_iter=100, seed=seed)
        rows["pyhessian"].append((counter(), time.perf_counter() - t, vals))
    for name, rs in rows.items():
        errs = [np.max(np.abs(np.array(v) - ref) / np.abs(ref)) for _, _, v in rs]
        print(f"  {name:9s} HVPs {[n for n, _, _ in rs]}  wall s "
              f"{[round(w, 2) for _, w, _ in rs]}  max rel err {[f'{e:.1e}' for e in errs]}")


def _count_hvps(ph: PyHessian):
    """Count PyHessian's products by wrapping its module-level HVP function (benchmark only)."""
    import sys

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


def traces(model, batches, seeds: int, ref_hvps: int) -> None:
    with preserved(model):
        set_bn_mode(model, "eval")
        with HessianOperator(model, batches, cache_graphs=True) as op:
            common = {"dtype": op.dtype, "device": CPU}
            ref = TRACE_ESTIMATORS.get("deflated")(op.matvec, op.dim, ref_hvps,
                                                   generator=torch.Generator().manual_seed(10_000),
                                                   **common)
            print(f"  reference trace (deflated, {ref.n_hvp} HVPs): {ref.mean:.4f} "
                  f"± {ref.stderr:.4f} ({100 * ref.stderr / abs(ref.mean):.3f} %)")
            errs = {"hutchinson": {b: [] for b in BUDGETS}, "hutch++": {b: [] for b in BUDGETS},
                    "deflated": {b: [] for b in BUDGETS}}
            for seed in range(seeds):
                for b in BUDGETS:
                    for name in ("hutch++", "deflated"):
                        est = TRACE_ESTIMATORS.get(name)(op.matvec, op.dim, b,
                                                         generator=torch.Generator().manual_seed(seed),
                                                         **common)
                        errs[name][b].append(est.mean / ref.mean - 1)
                # Hutchinson: budgets are prefixes of one probe sequence per seed
                z_gen = torch.Generator().manual_seed(seed + 1000)   # not PyHessian's stream
                samples = []
                for _ in range(max(BUDGETS)):
                    z = rademacher(op.dim, z_gen, op.dtype, CPU)
                    samples.append(float(torch.dot(z.double(), op.matvec(z).double())))
                for b in BUDGETS:
                    errs["hutchinson"][b].append(np.mean(samples[:b]) / ref.mean - 1)
    py = {b: [] for b in BUDGETS}
    with PyHessian(model, list(batches), CPU) as ph:
        for seed in range(seeds):
            samples = ph.trace_samples(max(BUDGETS), seed=seed)
            for b in BUDGETS:
                py[b].append(np.mean(samples[:b]) / ref.mean - 1)
    print("  trace RMS relative error (%) at " + " / ".join(f"{b}" for b in BUDGETS) + " HVPs:")
    for name, e in [("pyhessian", py)] + list(errs.items()):
        print(f"    {name:10s} " + " / ".join(f"{100 * math.sqrt(np.mean(np.square(e[b]))):.2f}"
                                            for b in BUDGETS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ref-hvps", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = datasets.spec("digits")
    ds = datasets.get("digits", split="train", augment=False)
    batches = first_samples(ds, args.samples, args.samples, CPU)
    nets = {
        "ResNet-8": train_briefly(models.create("resnet8", spec.num_classes, mean=spec.mean,
                                                std=spec.std), ds, args.epochs, 0.05, 0),
        "MLP 3072-32-10": train_briefly(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32),
                                                      nn.ReLU(), nn.Linear(32, 10)),
                                        ds, args.epochs, 0.05, 0),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, N = {args.samples} "
          f"samples, float32, BN eval; {args.seeds} seeds; shared machine: timings are noisy")
    for name, model in nets.items():
        print(f"\n== {name}: {sum(p.numel() for p in model.parameters())} parameters")
        hvp_costs(model, batches)
        ref = reference_top5(model, batches)
        print(f"  top-5 reference: {np.array2string(ref, precision=5)}")
        top5(model, batches, ref, args.seeds)
        traces(model, batches, args.seeds, args.ref_hvps)


if __name__ == "__main__":
    main()
