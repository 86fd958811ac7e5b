"""Seconds per training step with 1 process vs 2 gloo processes on CPU, measured in one run.

Online KD (teacher and student step together), ResNet-8 on a digits train subset, the same
*global* batch in both runs (2 processes: half of it per rank, gradients all-reduced). Every
process is started the same way — torch.multiprocessing spawn with the environment torchrun
sets (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK) — and uses one intra-op thread
(OMP_NUM_THREADS=1 per process), so 2 processes use 2 cores and 1 process 1 core. A step's time
is the time from the start of one global step to the next on rank 0, within an epoch (the
per-epoch test pass and the first ``--warmup`` steps are left out); runs alternate (1, 2, 1, …)
so machine load affects both alike. Prints the median s/step of each and the ratio.

    python benchmarks/distributed_step_time.py [--subset 1024] [--batch 128] [--repeats 2]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(rank: int, world: int, port: int, args, out: Path) -> None:
    """Worker: one rank of a ``world``-process online-KD run; rank 0 saves its step times."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from flatkd.training import Trainer, resolve
    starts: dict[tuple[int, int], float] = {}      # (epoch, step) → start of its first update

    def stamp(trainer, u, x, y):
        starts.setdefault((u.spec.epoch, u.spec.step), time.perf_counter())

    cfg = resolve("online", "resnet8", "digits", epochs=args.epochs,
                  overrides={"train_subset": args.subset, "test_subset": 32,
                             "batch_size": args.batch})
    Trainer(cfg, out / "run", progress=False, on_update=stamp).run()
    if rank == 0:
        keys = sorted(starts)
        steps = [starts[b] - starts[a] for a, b in zip(keys, keys[1:])
                 if a[0] == b[0] and a[1] > args.warmup]
        torch.save(steps, out / "steps.pt")
    if world > 1:
        torch.distributed.destroy_process_group()


def seconds_per_step(world: int, args, tmp: Path) -> float:
    """Median seconds per global step of one ``world``-process run (in a new folder of ``tmp``)."""
    out = Path(tempfile.mkdtemp(dir=tmp))
    mp.spawn(_train, args=(world, _free_port(), args, out), nprocs=world, join=True)
    return statistics.median(torch.load(out / "steps.pt"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subset", type=int, default=1024, help="training images (default 1024)")
    p.add_argument("--batch", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="first steps left out (default 2)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="flatkd-bench-") as tmp:
        for r in range(args.repeats):
            for world in times:
                times[world].append(seconds_per_step(world, args, Path(tmp)))
                print(f"repeat {r + 1}: {world} process(es) {times[world][-1]:.3f} s/step",
                      flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPUs (load average over the last "
          f"5 minutes {os.getloadavg()[1]:.1f}), online KD, ResNet-8, digits, {args.subset} "
          f"images, global batch {args.batch}, {args.subset // args.batch} steps/epoch, gloo, "
          "1 thread per process")
    print(f"1 process:   {one:.3f} s/step (median of {args.repeats})")
    print(f"2 processes: {two:.3f} s/step (median of {args.repeats})")
    print(f"ratio 2-process / 1-process step time: {two / one:.3f}  (speed-up {one / two:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
