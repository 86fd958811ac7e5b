"""Spaced-online vs online KD: epoch wall time and replay-buffer memory, measured in one run.

Data: the embedded digits set, which is CIFAR-shaped (3×32×32 float images), at the paper's
batch size 128 and s = 1.5 epochs, ResNet-8 on CPU. Runs alternate (online, spaced, online, …)
so machine load affects both alike. Prints:
  * epoch wall-time ratio spaced-online / online (goal ≤ 1.10),
  * replay-buffer bytes at s = 1.5 vs the bytes of caching the augmented images (goal < 1 %).

    python benchmarks/spaced_overhead.py [--epochs 2] [--repeats 3] [--arch resnet8]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from flatkd.training import Trainer, resolve
from flatkd.training.batches import BatchSpec


def timed_run(method: str, args, out: Path) -> tuple[float, Trainer]:
    overrides = {"batch_size": 128, "optim.lr": 0.01, "test_subset": 32}
    interval = 1.5 if method == "spaced-online" else None
    cfg = resolve(method, args.arch, "digits", epochs=args.epochs, interval=interval,
                  overrides={**overrides, "spaced.leftover": "distil"})
    shutil.rmtree(out, ignore_errors=True)
    trainer = Trainer(cfg, out, progress=False)
    start = time.perf_counter()
    trainer.run()
    return (time.perf_counter() - start) / args.epochs, trainer


def buffer_bytes(specs: list[BatchSpec]) -> int:
    """Bytes of the buffer as stored: int64 per index, plus step, epoch and seed per batch."""
    return sum(8 * (len(s.indices) + 3) for s in specs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--arch", default="resnet8")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flatkd-bench-"))
    times: dict[str, list[float]] = {"online": [], "spaced-online": []}
    for r in range(args.repeats):
        for method in times:
            seconds, trainer = timed_run(method, args, tmp / method)
            times[method].append(seconds)
            print(f"repeat {r + 1}: {method:14s} {seconds:7.2f} s/epoch", flush=True)
    ratio = statistics.median(times["spaced-online"]) / statistics.median(times["online"])

    interval = trainer.interval_steps          # the last trainer is spaced-online
    specs = [s for s in _specs(trainer)][:interval]
    c, h, w = trainer.train_set[0][0].shape
    images = sum(len(s.indices) for s in specs) * c * h * w * 4     # float32 augmented pixels
    held = buffer_bytes(specs)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, arch {args.arch}, "
          f"batch 128, {trainer.bpe} batches/epoch, s = 1.5 epochs = {interval} steps")
    print(f"epoch time spaced-online / online (median of {args.repeats}): {ratio:.3f}  (goal ≤ 1.10)")
    print(f"replay buffer at s = 1.5: {held:,} B vs {images:,} B of cached images "
          f"= {100 * held / images:.3f} %  (goal < 1 %)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _specs(trainer: Trainer):
    from flatkd.training.batches import epoch_specs
    for epoch in range(1, trainer.cfg.epochs + 1):
        yield from epoch_specs(len(trainer.train_set), trainer.cfg.batch_size, trainer.cfg.seed,
                               epoch, (epoch - 1) * trainer.bpe + 1)


if __name__ == "__main__":
    sys.exit(main())
