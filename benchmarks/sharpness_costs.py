"""Sharpness / landscape benchmark (a script, not a timed test). One run prints:

1. worst-case adaptive sharpness at its defaults: gradient evaluations per batch (counted by
   wrapping the loss; goal ≤ 25) and time per batch in units of one gradient;
2. PAC-Bayes bisection at its defaults: noise levels evaluated per searched σ (goal ≤ 12) and
   their number relative to a log-spaced grid of the same final resolution over the same range;
3. a 2-D 21 × 21 filter-normalised slice of a digits ResNet-8 on 512 training samples: wall
   time (goal ≤ 5 min on 2 cores) and its ratio to the goal, with the process CPU time next to
   it (on a machine shared with other jobs the wall time overstates the cost; CPU time / torch
   threads is what an idle machine would need at full thread efficiency).

Model: ``--ckpt PATH`` (e.g. a reference checkpoint), or by default a ResNet-8 trained here for
2 epochs on digits (PAC-Bayes needs a trained network: a random one has no accuracy to lose).
Usage: ``python benchmarks/sharpness_costs.py [--ckpt PATH]``.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import torch

import flatkd
from flatkd.flatness.data import first_samples
from flatkd.landscape.config import LandscapeConfig
from flatkd.landscape.slices import slices
from flatkd.sharpness.adaptive import worst_case
from flatkd.sharpness.config import PacBayesConfig, SharpnessConfig
from flatkd.sharpness.params import cross_entropy
from flatkd.sharpness.pacbayes import pacbayes_sigmas

CPU = torch.device("cpu")


def model_from(ckpt: str | None) -> torch.nn.Module:
    if ckpt:
        return flatkd.load_checkpoint(ckpt).build_model("student")
    from flatkd.training import Trainer, resolve
    cfg = resolve("baseline", "resnet8", "digits", epochs=2, overrides={})
    out = tempfile.mkdtemp(prefix="flatkd-bench-")
    path = Trainer(cfg, os.path.join(out, "run"), progress=False).run()
    return flatkd.load_checkpoint(path).build_model("student")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="checkpoint to measure (default: train a ResNet-8 here)")
    args = parser.parse_args()
    model = model_from(args.ckpt)
    train = flatkd.datasets.get("digits", split="train", augment=False)
    print(f"torch threads: {torch.get_num_threads()}; load average: "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")

    # 1. worst-case sharpness: gradient evaluations per batch
    s = SharpnessConfig()
    batches = first_samples(train, s.samples, s.m, CPU)
    grads = 0

    def counting(model, x, y):
        nonlocal grads
        out = cross_entropy(model, x, y)
        grads += out.requires_grad
        return out
    t = time.perf_counter()
    r = worst_case(model, batches, rho=s.rho, norm=s.norm, adaptive=s.adaptive, steps=s.steps,
                   step_size=s.step_size, loss=counting)
    t_worst = time.perf_counter() - t
    x, y = batches.materialised[0]
    t = time.perf_counter()
    for _ in range(3):
        torch.autograd.grad(cross_entropy(model, x, y), list(model.parameters()))
    t_grad = (time.perf_counter() - t) / 3
    n_b = len(batches.materialised)
    print(f"1. worst-case sharpness (defaults: {s.norm}, ρ = {s.rho}, m = {s.m}, "
          f"{s.steps} steps): {grads / n_b:.0f} gradient evaluations per batch (goal ≤ 25; "
          f"reported {r['grad_evals_per_batch']}); {t_worst / n_b:.2f} s per batch = "
          f"{t_worst / n_b / t_grad:.1f} gradients of {s.m} samples; value {r['value']:.4g}")

    # 2. PAC-Bayes bisection
    pb = PacBayesConfig()
    b256 = first_samples(train, min(s.samples, len(train)), 256, CPU)
    t = time.perf_counter()
    out = pacbayes_sigmas(model, b256, pb, generator=torch.Generator().manual_seed(0))
    t_pb = time.perf_counter() - t
    for key in ("isotropic", "magnitude_aware"):
        o = out[key]
        lo, hi = o["bracket"]
        width = (hi / lo) if lo and hi else float("nan")
        grid = math.log(pb.sigma_max / lo) / math.log(width) if lo and width > 1 else float("nan")
        print(f"2. PAC-Bayes {key}: σ = {o['sigma']:.4g} in [{lo:.4g}, {hi:.4g}], "
              f"{o['evaluations']} levels evaluated (goal ≤ 12; × {pb.draws} draws); a log grid "
              f"of the same resolution from σ to sigma_max needs {grid:.0f} levels "
              f"(ratio {o['evaluations'] / grid:.2f})")
    print(f"   both searches: {t_pb:.1f} s")

    # 3. 2-D 21 × 21 slice on 512 samples
    lc = LandscapeConfig()
    b512 = first_samples(train, 512, 256, CPU)
    t, c = time.perf_counter(), time.process_time()
    sl = slices(model, b512, ["2d"], resolution=21, span=lc.span,
                generator=torch.Generator().manual_seed(0))
    t_2d, c_2d = time.perf_counter() - t, time.process_time() - c
    print(f"3. 2-D 21 × 21 slice, 512 samples: {t_2d:.1f} s wall (goal ≤ 300 s: ratio "
          f"{t_2d / 300:.2f}); {c_2d:.1f} s CPU on {torch.get_num_threads()} threads; loss at "
          f"the centre {sl['origin']['loss']:.4g}, max "
          f"{max(max(v for v in r if v is not None) for r in sl['2d']['loss']):.4g}")
    print(f"load average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
