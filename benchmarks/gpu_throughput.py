"""Training throughput (images/s) of online vs spaced-online vs self vs spaced-self for ResNet-18
on CIFAR-shaped synthetic data, with mixed precision and channels_last on and off, next to the
data pipeline's images/s per loader worker, measured side by side in one run.

Data: an in-memory dataset registered by this script (``synthetic-cifar``: uint8 3×32×32 images,
100 classes, CIFAR-100's normalisation and augmentation policies) — nothing is downloaded.
Each measurement is one epoch of ``--steps`` batches through flatkd's own training loop after a
warm-up epoch of the same length (no test pass, no checkpoint), so the spaced methods pay their
steady-state cost: s = 1 epoch puts exactly one interval's replay in the timed epoch. Methods
and variants alternate within each repeat, so machine load affects all alike; figures are
medians over ``--repeats``.

Prints
  * training images/s per method and variant (AMP off/bf16/fp16 × NCHW/channels_last), the
    ratio to online KD in the same variant and each variant's speed-up over fp32 NCHW;
  * the data pipeline alone (augmentation + collation, no model): images/s in the main process
    and per worker for each augmentation policy the methods use, and the workers needed to feed
    the fastest method.

AMP variants need the training key ``amp`` (off | bf16 | fp16) and the layout variants the key
``channels_last``; on a flatkd without them those variants are skipped with a note.

    python benchmarks/gpu_throughput.py                      # CPU: small defaults
    python benchmarks/gpu_throughput.py --device cuda        # GPU: batch 128, 50 steps, 3 repeats
    python benchmarks/gpu_throughput.py --amp off,bf16 --channels-last off --steps 20
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import typing
from pathlib import Path

import torch

from flatkd import config as cfgmod
from flatkd.datasets.base import DATASETS, DatasetFamily, DatasetSpec, TensorImageDataset
from flatkd.errors import FlatkdError
from flatkd.training import Trainer, resolve
from flatkd.training.batches import epoch_specs, materialize
from flatkd.training.config import TrainConfig

DATASET = "synthetic-cifar"
METHODS = ("online", "spaced-online", "self", "spaced-self")
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


# ---------------------------------------------------------------- synthetic data

def register_dataset(n_train: int, n_test: int = 256, seed: int = 0) -> None:
    """Register ``synthetic-cifar``: random uint8 images (1 byte per value, like CIFAR in
    memory), labels 0..99, CIFAR-100's spec (crop-flip; AutoAugment + Cutout for self KD)."""
    if DATASET in DATASETS:
        return
    g = torch.Generator().manual_seed(seed)
    data = {split: (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                    torch.randint(0, 100, (n,), generator=g).tolist())
            for split, n in (("train", n_train), ("test", n_test))}
    spec = DatasetSpec(name=DATASET, num_classes=100, image_size=32, mean=CIFAR100_MEAN,
                       std=CIFAR100_STD, train_size=n_train, test_size=n_test, hflip=True,
                       augmentation="as CIFAR-100", self_policy="autoaugment-cutout",
                       description="random CIFAR-shaped images (benchmark only)")
    DATASETS.register(DATASET)(DatasetFamily(
        spec=lambda: spec,
        load=lambda split, root=None, download=False: TensorImageDataset(*data[split], spec)))


# ---------------------------------------------------------------- what this flatkd offers

def key_support() -> tuple[list[str], bool, list[str]]:
    """(AMP modes the ``amp`` key takes, whether ``channels_last`` exists, notes)."""
    hints = typing.get_type_hints(TrainConfig)
    meaning = {k: m for k, _, m in cfgmod.describe(TrainConfig())}
    notes = []
    amp_hint = hints.get("amp")
    args = _literal_strings(amp_hint)
    if {"bf16", "fp16"} & set(args) or (amp_hint is str and "bf16" in meaning.get("amp", "")):
        amp = [m for m in ("off", "bf16", "fp16") if m in args or not args]
    else:
        amp = ["off"]
        notes.append("the training key amp=off|bf16|fp16 is not in this flatkd "
                     f"(amp is {getattr(amp_hint, '__name__', amp_hint)}): AMP variants skipped")
    channels_last = "channels_last" in hints
    if not channels_last:
        notes.append("the training key channels_last is not in this flatkd: channels_last "
                     "variants skipped")
    return amp, channels_last, notes


def _literal_strings(hint) -> list[str]:
    """The string values a type hint admits (``Literal[...]``, also inside Optional/Union)."""
    out = []
    for a in typing.get_args(hint):
        out += [a] if isinstance(a, str) else _literal_strings(a)
    return out


def variant_overrides(amp: str, channels_last: bool, have_amp: list[str],
                      have_cl: bool) -> dict:
    out = {}
    if len(have_amp) > 1 and amp != "off":     # off is the default (and YAML reads "off" as false)
        out["amp"] = amp
    if have_cl:
        out["channels_last"] = channels_last
    return out


def variant_name(amp: str, channels_last: bool) -> str:
    return f"{'fp32' if amp == 'off' else amp} {'CL' if channels_last else 'NCHW'}"


# ---------------------------------------------------------------- measurements

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_for(method: str, args, overrides: dict, out: Path) -> Trainer:
    interval = 1.0 if method.startswith("spaced") else None
    cfg = resolve(method, args.arch, DATASET, epochs=2, interval=interval, seed=0,
                  device=args.device, overrides={
                      "batch_size": args.batch, "train_subset": args.batch * args.steps,
                      "test_subset": min(args.batch, 256), "num_workers": args.workers,
                      "spaced.leftover": "distil",
                      "augment.rotation": not method.endswith("self"),   # CIFAR online-KD pipeline
                      **overrides})
    shutil.rmtree(out, ignore_errors=True)
    return Trainer(cfg, out, progress=False)


def time_training(method: str, args, overrides: dict, out: Path) -> tuple[float, float]:
    """(dataset images/s, optimizer updates per batch) of the second epoch of ``method``."""
    trainer = trainer_for(method, args, overrides, out)
    updates = [0]

    def count(tr, u, x, y):
        updates[0] += 1
    trainer.on_update = count
    trainer._end_epoch = lambda epoch: None      # no test pass, no checkpoint: training only
    trainer._train_epoch(1)                      # warm-up: allocator, cuDNN autotune, workers
    updates[0] = 0
    _sync(trainer.device)
    start = time.perf_counter()
    trainer._train_epoch(2)
    _sync(trainer.device)
    seconds = time.perf_counter() - start
    n = len(trainer.train_set)
    return n / seconds, updates[0] / trainer.bpe


def time_loader(method: str, args, workers: int) -> float:
    """Images/s of the data pipeline alone (the method's augmentation, collation)."""
    trainer = trainer_for(method, args, {}, Path(tempfile.mkdtemp(prefix="flatkd-tp-")))
    n_batches = max(args.steps, 2 * max(workers, 1))
    specs = epoch_specs(len(trainer.train_set), args.batch, 0, 1, 1)
    specs = (specs * math.ceil(n_batches / len(specs)))[:n_batches]
    it = materialize(trainer.train_set, trainer.augment, specs[:max(workers, 1)], workers)
    for _ in it:                                  # warm-up: worker start-up is not counted
        pass
    start = time.perf_counter()
    images = sum(x.shape[0] for _, x, _ in materialize(trainer.train_set, trainer.augment,
                                                       specs, workers))
    seconds = time.perf_counter() - start
    shutil.rmtree(trainer.out, ignore_errors=True)
    return images / seconds


# ---------------------------------------------------------------- main

def parse(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch", type=int, help="batch size (default: 128 on CUDA, 16 on CPU)")
    p.add_argument("--steps", type=int, help="timed batches per measurement, after as many "
                   "warm-up batches (default: 50 on CUDA, 3 on CPU)")
    p.add_argument("--repeats", type=int, help="repeats; medians are printed (default: 3 on "
                   "CUDA, 1 on CPU)")
    p.add_argument("--workers", type=int, help="DataLoader workers of the training loop and of "
                   "the loader measurement (default: min(8, cores) on CUDA, 0 on CPU)")
    p.add_argument("--amp", help="AMP modes to measure, those this flatkd offers (default: "
                   "off,bf16,fp16 on CUDA; off,bf16 on CPU, where fp16 is emulated and slow)")
    p.add_argument("--channels-last", dest="channels_last", default="off,on",
                   help="memory layouts to measure (default: off,on)")
    p.add_argument("--methods", default=",".join(METHODS), help="methods (default: all four)")
    a = p.parse_args(argv)
    on_gpu = a.device == "cuda" or (a.device == "auto" and cuda)
    a.batch = a.batch or (128 if on_gpu else 16)
    a.steps = a.steps or (50 if on_gpu else 3)
    a.repeats = a.repeats or (3 if on_gpu else 1)
    a.amp = a.amp or ("off,bf16,fp16" if on_gpu else "off,bf16")
    a.workers = a.workers if a.workers is not None else (min(8, os.cpu_count() or 1) if on_gpu else 0)
    return a


def main(argv=None) -> int:
    args = parse(argv)
    have_amp, have_cl, notes = key_support()
    want_amp = [m.strip() for m in args.amp.split(",") if m.strip()]
    amps = [m for m in want_amp if m in have_amp]
    notes += [f"amp={m} not available here: skipped" for m in want_amp
              if m not in have_amp and len(have_amp) > 1]
    layouts = [v.strip() == "on" for v in args.channels_last.split(",") if v.strip()]
    layouts = [v for v in layouts if have_cl or not v] or [False]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    variants = [(a, c) for a in (amps or ["off"]) for c in dict.fromkeys(layouts)]
    register_dataset(args.batch * args.steps)
    tmp = Path(tempfile.mkdtemp(prefix="flatkd-throughput-"))
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) \
        else "cpu"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"ResNet-18 throughput on {DATASET} (3×32×32, 100 classes): {args.arch}, batch "
          f"{args.batch}, {args.steps} timed + {args.steps} warm-up batches, {args.repeats} "
          f"repeat(s), {args.workers} loader worker(s); {name}; torch {torch.__version__}"
          + (f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""))
    for n in notes:
        print(f"note: {n}")
    print(flush=True)

    rates: dict[tuple, list[float]] = {}
    per_batch: dict[str, float] = {}
    failed: dict[tuple, str] = {}
    for r in range(args.repeats):
        for v in variants:
            for m in methods:
                if (v, m) in failed:
                    continue
                try:
                    rate, upb = time_training(m, args, variant_overrides(*v, have_amp, have_cl),
                                              tmp / "run")
                except (FlatkdError, RuntimeError) as e:
                    failed[(v, m)] = (str(e).splitlines() or [type(e).__name__])[0][:100]
                    print(f"  {variant_name(*v):10s} {m:14s} n/a: {failed[(v, m)]}", flush=True)
                    continue
                rates.setdefault((v, m), []).append(rate)
                per_batch[m] = upb
                print(f"  repeat {r + 1}: {variant_name(*v):10s} {m:14s} {rate:9.1f} images/s",
                      flush=True)

    med = {k: statistics.median(v) for k, v in rates.items()}
    width = 16
    print("\ntraining images/s (median; in brackets: ratio to online KD in the same column)")
    print(f"{'method':14s} {'updates/batch':>13s} " + "".join(f"{variant_name(*v):>{width}s}"
                                                         for v in variants))
    for m in methods:
        cells = []
        for v in variants:
            x, ref = med.get((v, m)), med.get((v, "online"))
            cells.append("n/a" if x is None else f"{x:.1f} ({x / ref:.2f})" if ref else f"{x:.1f}")
        print(f"{m:14s} {per_batch.get(m, float('nan')):13.2f} "
              + "".join(f"{c:>{width}s}" for c in cells))
    base = variants[0]
    if len(variants) > 1:
        print(f"\nspeed-up over {variant_name(*base)} (same method)")
        print(f"{'method':14s} " + "".join(f"{variant_name(*v):>{width}s}" for v in variants[1:]))
        for m in methods:
            cells = [f"{med[(v, m)] / med[(base, m)]:.2f}" if (v, m) in med and (base, m) in med
                     else "n/a" for v in variants[1:]]
            print(f"{m:14s} " + "".join(f"{c:>{width}s}" for c in cells))

    print("\ndata pipeline alone (augmentation + collation, no model), images/s")
    fastest = max(med.values()) if med else float("nan")
    print(f"{'policy (methods)':48s} {'main process':>13s} {'per worker':>11s} "
          f"{'workers to feed':>16s}")
    families = {}
    for m in methods:
        tr = trainer_for(m, args, {}, tmp / "probe")
        policy = tr.augment_policy + ("+rotation" if tr.cfg.augment.rotation else "")
        families.setdefault(policy, []).append(m)
    for desc, ms in families.items():
        main_rate = time_loader(ms[0], args, 0)
        w = max(args.workers, 1)
        per_worker = time_loader(ms[0], args, args.workers) / w if args.workers else main_rate
        need = math.ceil(fastest / per_worker) if math.isfinite(fastest) else "n/a"
        label = f"{desc} ({', '.join(ms)})"
        print(f"{label:48s} {main_rate:13.1f} {per_worker:11.1f} {need!s:>16s}")
    print(f"\nfastest training rate: {fastest:.1f} images/s; 'workers to feed' = that rate / the "
          "per-worker rate (rounded up): fewer workers make the loader the bottleneck.")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
