"""Cost of BatchNorm recalibration before evaluation, measured side by side in one run.

On a digits reference network (default: the online KD ResNet-8 of seed 0), with the reduced
evaluation sizes of ``flatkd/presets/eval-quick.yaml``, runs alternate ``--suite flatness`` with
``bn=as-saved`` and with ``bn=recalibrate`` (``--repeats`` times each) and times the
recalibration pass alone. Prints:
  * the recalibration pass's wall time and its share of the recalibrated flatness evaluation,
  * the same pass vs one plain no-grad forward pass over the same samples (the recalibration
    is one such pass; the ratio is the cost of recording the per-batch statistics),
  * the wall-time ratio recalibrate / as-saved of the whole evaluation (the before/after
    accuracy measurements of the bn section included).

    python benchmarks/bn_recalibration_cost.py [--ckpt PATH] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time
from importlib import resources

import torch

import flatkd
from flatkd import batchnorm as BN
from flatkd import datasets

REFERENCE = "checkpoints/reference/runs/online-seed0/checkpoint.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=REFERENCE)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quick = str(resources.files("flatkd.presets").joinpath("eval-quick.yaml"))
    ck = flatkd.load_checkpoint(args.ckpt)
    train = datasets.get(ck.dataset, "train")
    cpu = torch.device("cpu")
    walls = {"as-saved": [], "recalibrate": []}
    passes, forwards = [], []
    for _ in range(args.repeats):
        for mode in walls:
            start = time.perf_counter()
            flatkd.evaluate(args.ckpt, "flatness", config_file=quick, overrides={"bn": mode})
            walls[mode].append(time.perf_counter() - start)
        net = ck.build_model()
        start = time.perf_counter()
        n = BN.recalibrate(net, train, samples=50_000, batch_size=256, device=cpu)
        passes.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, n, 256):
                net(torch.stack([train[i][0] for i in range(lo, min(lo + 256, n))]))
        forwards.append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in walls.items()}
    p, f = statistics.median(passes), statistics.median(forwards)
    print(f"network: {args.ckpt} ({n} recalibration samples, {args.repeats} repeats, medians)")
    print(f"recalibration pass: {p:.3f} s = {100 * p / med['recalibrate']:.1f} % of the "
          f"recalibrated flatness evaluation ({med['recalibrate']:.1f} s)")
    print(f"recalibration pass / one plain no-grad forward pass over its samples: {p / f:.2f}×")
    print(f"flatness evaluation, recalibrate / as-saved: {med['recalibrate'] / med['as-saved']:.3f}×"
          f" ({med['recalibrate']:.1f} s vs {med['as-saved']:.1f} s)")


if __name__ == "__main__":
    main()
