"""Per-step cost of the Table 4 / App. A.3 methods relative to online KD, measured side by side.

One short run per method on the same digits subset (ResNet-8, batch 16, one epoch per stage,
256 training images = 16 steps per epoch; the per-epoch test pass is limited to 16 images so the
steps dominate), the methods interleaved round after round so machine load hits all alike.
Cost per data step = run wall time / (steps per epoch × stages): a multi-stage method (BAN,
TAKD, SHAKE without a teacher checkpoint) is charged for all its stages per data step, which is
what a user pays for the method. Prints, per method, the median seconds per data step, the
ratio to online KD, the number of stages and every network's optimizer steps.

    python benchmarks/kd_method_costs.py [--rounds 3] [--threads 1] [--methods online,tsb,...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from flatkd.training import Trainer, resolve

METHODS = ["baseline", "online", "spaced-online", "online+lskd", "spaced-online+lskd",
           "online+ctkd", "spaced-online+ctkd", "tsb", "spaced-tsb", "dml", "spaced-dml",
           "shake", "spaced-shake", "ban", "spaced-ban", "takd", "spaced-takd", "dlb",
           "online-dlb", "spaced-dlb", "pskd", "online-pskd", "spaced-pskd"]
SMALL = {"train_subset": 256, "test_subset": 16, "batch_size": 16, "epochs": 1}
FROZEN_TEACHER = ("shake", "spaced-shake")          # given a trained teacher checkpoint


def per_step(method: str, root: Path, teacher_ckpt: str) -> tuple[float, int, dict]:
    """(seconds per data step, stages, optimizer steps per network) of one short run."""
    over = dict(SMALL)
    if method in FROZEN_TEACHER:
        over["teacher_ckpt"] = teacher_ckpt
    interval = 0.5 if method.startswith("spaced") else None
    if interval:
        over["spaced.leftover"] = "distil"          # every batch is learned within the epoch
    cfg = resolve(method, "resnet8", "digits", interval=interval, overrides=over)
    trainer = Trainer(cfg, Path(tempfile.mkdtemp(dir=root)) / "run", progress=False)
    start = time.perf_counter()
    trainer.run()
    return ((time.perf_counter() - start) / (trainer.bpe * trainer.stages), trainer.stages,
            dict(trainer.opt_steps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if "online" not in methods:
        methods.insert(0, "online")
    root = Path(tempfile.mkdtemp(prefix="flatkd-costs-"))
    teacher = Trainer(resolve("baseline", "resnet8", "digits", overrides=SMALL), root / "teacher",
                      progress=False).run()
    times: dict[str, list[float]] = {m: [] for m in methods}
    info: dict[str, tuple[int, dict]] = {}
    loads = []
    for r in range(args.rounds):
        for m in methods:
            loads.append(os.getloadavg()[0])
            dt, stages, steps = per_step(m, root, str(teacher))
            times[m].append(dt)
            info[m] = (stages, steps)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    ref = statistics.median(times["online"])
    print(f"ResNet-8 on digits, batch 16, {args.threads} thread(s), median of {args.rounds} "
          f"rounds; 1-min load average during the run {min(loads):.1f}–{max(loads):.1f}")
    print(f"{'method':22s} {'s/step':>8s} {'× online':>9s} {'stages':>6s}  optimizer steps")
    for m in methods:
        med = statistics.median(times[m])
        stages, steps = info[m]
        print(f"{m:22s} {med:8.4f} {med / ref:9.2f} {stages:6d}  {steps}")


if __name__ == "__main__":
    main()
