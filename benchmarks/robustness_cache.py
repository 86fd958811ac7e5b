"""Robustness-suite benchmark (a script, not a timed test). One run prints:

1. suite time for a second checkpoint / first (corrupted sets cached by the first; goal ≤ 0.2),
2. corruption generation, all cores vs one (goal ≥ 1.6× on 2 cores),
3. foolbox BIM vs a plain torch BIM loop, same model and data (goal ≤ 1.3×).

Data: the digits test split (360 images, 32 px), the default suite (paper's six corruptions at
severities 1, 3, 5; BIM ε = 0.5, 1, 2, 4, 8 /255, Kurakin schedule). Models: two checkpoints
(``--ckpt A --ckpt B``) or, by default, two randomly initialised ResNet-8s (timings do not depend
on the weights). Usage: ``python benchmarks/robustness_cache.py [--ckpt A --ckpt B]``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import flatkd.datasets
import flatkd.models
from flatkd.robustness.bim import bim_reference, kurakin
from flatkd.robustness.cache import available_cores, generate
from flatkd.robustness.config import RobustnessConfig
from flatkd.robustness.foolbox_compat import linf_bim
from flatkd.robustness.suite import collect, run_robustness, to_uint8_hwc

CPU = torch.device("cpu")


def models(ckpts: list[str] | None) -> list[torch.nn.Module]:
    if ckpts:
        from flatkd.checkpoint import load_checkpoint

        return [load_checkpoint(p).build_model("student") for p in ckpts]
    spec = flatkd.datasets.spec("digits")
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out.append(flatkd.models.create("resnet8", spec.num_classes, mean=spec.mean,
                                        std=spec.std).eval())
    return out


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", help="two checkpoints (default: two ResNet-8s)")
    args = parser.parse_args()
    test_set = flatkd.datasets.get("digits", split="test")
    first_model, second_model = models(args.ckpt)
    cfg = RobustnessConfig()
    print(f"cores available: {available_cores()}; torch threads: {torch.get_num_threads()}; "
          f"load average at start: {os.getloadavg()[0]:.1f}")

    with tempfile.TemporaryDirectory() as cache_dir:
        suite = dict(test_set=test_set, dataset_name="digits", cfg=cfg, seed=0, device=CPU,
                     batch_size=256, progress=False, cache_dir=Path(cache_dir))
        t1, r1 = timed(lambda: run_robustness(first_model, **suite))
        t2, r2 = timed(lambda: run_robustness(second_model, **suite))
    print(f"1. suite, first checkpoint {t1:.1f} s, second {t2:.1f} s: ratio {t2 / t1:.2f} "
          f"(goal <= 0.2); {len(r1['corruptions'])} corruption rows, "
          f"{len(r1['adversarial'])} BIM rows")
    no_bim = RobustnessConfig(epsilons=[])
    with tempfile.TemporaryDirectory() as cache_dir:
        suite.update(cfg=no_bim, cache_dir=Path(cache_dir))
        c1, _ = timed(lambda: run_robustness(first_model, **suite))
        c2, _ = timed(lambda: run_robustness(second_model, **suite))
    print(f"   corruption part alone (no BIM): first {c1:.1f} s, second {c2:.1f} s: ratio "
          f"{c2 / c1:.2f}; BIM share of the full suite: {(t2 - c2) / t2:.0%}")

    x, y = collect(test_set)
    images = to_uint8_hwc(x)
    jobs = [(c, s) for c in cfg.corruption_names() for s in cfg.severities]
    gen = dict(constants=cfg.constants, seed=0, progress=False)
    t_one, a = timed(lambda: generate(images, jobs, workers=1, **gen))
    t_all, b = timed(lambda: generate(images, jobs, workers=0, **gen))
    assert all((a[j] == b[j]).all() for j in jobs), "worker count changed the images"
    print(f"2. generation of {len(jobs)} sets x {len(images)} images: one core {t_one:.1f} s "
          f"({1000 * t_one / len(images):.0f} ms/image), all {available_cores()} cores "
          f"{t_all:.1f} s: speed-up {t_one / t_all:.2f}x (goal >= 1.6x)")

    def plain_torch_accuracy(s):
        correct = 0
        for i in range(0, len(y), 256):
            x_adv = bim_reference(first_model, x[i:i + 256], y[i:i + 256], s)
            with torch.no_grad():
                correct += int((first_model(x_adv).argmax(1) == y[i:i + 256]).sum())
        return correct / len(y)

    def foolbox_accuracy(s):
        correct = 0
        for i in range(0, len(y), 256):
            _, is_adv = linf_bim(first_model, x[i:i + 256], y[i:i + 256], epsilon=s.epsilon,
                                 stepsize=s.stepsize, steps=s.steps, device=CPU)
            correct += int((~is_adv).sum())
        return correct / len(y)

    for eps255 in (2, 8):
        s = kurakin(eps255)
        t_ref, acc_ref = timed(lambda: plain_torch_accuracy(s))
        t_fb, acc_fb = timed(lambda: foolbox_accuracy(s))
        print(f"3. BIM eps={eps255}/255 ({s.steps} steps), accuracy incl.: foolbox {t_fb:.2f} s "
              f"(acc {acc_fb:.4f}), plain torch {t_ref:.2f} s (acc {acc_ref:.4f}): ratio "
              f"{t_fb / t_ref:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
