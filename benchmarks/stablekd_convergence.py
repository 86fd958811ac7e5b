"""StableKD vs vanilla KD on digits: epochs to reach the same test accuracy, and seconds per epoch.

One run of this script trains, for each epoch budget e (default 3, 6, 9, 12), a ResNet-8
student with vanilla offline KD and with StableKD-4/2 from the same frozen teacher, each run
from scratch with its own budget (the paper's Fig. 4/5 protocol: a point per budget, the
learning-rate schedule spanning the budget). Target accuracy = vanilla KD's test accuracy at
its largest budget. Prints each run's final test accuracy and training seconds per epoch, then:

  * epochs to target: the smallest budget whose final accuracy reaches the target, per method,
    and their ratio KD / StableKD (> 1: StableKD needs fewer epochs);
  * seconds per epoch, StableKD / KD (the paper's Table 7 reports them about equal).

Recipes (digits, batch 16, the dataset preset): StableKD lr 0.1 with the per-stage triangular2
cycle, KD lr 0.1 with 30 % linear warm-up then cosine (a OneCycle-like schedule), KD loss
CE + KL at T = 1 written as Eq. 3 with α = 0.5, no feature term. The teacher defaults to a
ResNet-8 ×2 trained here first (offline's teacher-first mode, its network ``teacher``).

    python benchmarks/stablekd_convergence.py [--teacher-ckpt PATH --teacher-model student]
        [--budgets 3 6 9 12] [--seed 0]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from flatkd.training import Trainer, resolve

LR = 0.1
METHODS = {
    "KD": ("offline", lambda e: {"kd.alpha": 0.5, "kd.temperature": 1.0, "kd.feature_weight": 0.0,
                                 "optim.schedule": "cosine", "optim.lr": LR,
                                 "optim.warmup_epochs": 0.3 * e}),
    "StableKD-4/2": ("stablekd", lambda e: {"optim.schedule": "triangular2", "optim.lr": LR}),
}


def teacher(args, tmp: Path) -> tuple[str, str]:
    """(checkpoint, network) of the teacher: the given one, or a ResNet-8 ×2 trained here."""
    if args.teacher_ckpt:
        return args.teacher_ckpt, args.teacher_model
    print("training a ResNet-8 x2 teacher (15 epochs) ...", flush=True)
    cfg = resolve("offline", "resnet8", "digits", overrides={
        "teacher_width": 2.0, "epochs": 15, "optim.schedule": "cosine", "seed": 100})
    t = Trainer(cfg, tmp / "teacher", progress=False)
    t._train_epoch(1)                    # the teacher trains (all epochs) inside the first step
    print(f"teacher test accuracy {t.metrics[-1]['teacher_test_acc']:.4f}", flush=True)
    return str(t.ckpt_path), "teacher"


def run(method: str, overrides: dict, epochs: int, t_ckpt: str, t_model: str, seed: int,
        out: Path) -> tuple[float, float]:
    """(final student test accuracy, training seconds per epoch incl. the per-epoch test pass)."""
    cfg = resolve(method, "resnet8", "digits", overrides={
        **overrides, "epochs": epochs, "seed": seed, "teacher_ckpt": t_ckpt,
        "teacher_ckpt_model": t_model})
    shutil.rmtree(out, ignore_errors=True)
    trainer = Trainer(cfg, out, progress=False)
    start = time.perf_counter()
    trainer.run()
    return trainer.metrics[-1]["student_test_acc"], (time.perf_counter() - start) / epochs


def epochs_to(target: float, accs: dict[int, float]) -> int | None:
    return min((e for e, a in accs.items() if a >= target), default=None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher-ckpt", default=None)
    p.add_argument("--teacher-model", default="student", choices=("student", "teacher"))
    p.add_argument("--budgets", type=int, nargs="+", default=[3, 6, 9, 12])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flatkd-stablekd-"))
    t_ckpt, t_model = teacher(args, tmp)
    acc: dict[str, dict[int, float]] = {name: {} for name in METHODS}
    secs: dict[str, list[float]] = {name: [] for name in METHODS}
    for e in sorted(args.budgets):
        for name, (method, recipe) in METHODS.items():      # alternate: load affects both alike
            a, s = run(method, recipe(e), e, t_ckpt, t_model, args.seed, tmp / f"{name}-{e}")
            acc[name][e] = a
            secs[name].append(s)
            print(f"{name:13s} {e:3d} epochs: test acc {a:.4f}  {s:6.2f} s/epoch", flush=True)
    target = acc["KD"][max(args.budgets)]
    need = {name: epochs_to(target, acc[name]) for name in METHODS}
    print(f"\ntarget accuracy (KD at {max(args.budgets)} epochs): {target:.4f}")
    for name, e in need.items():
        print(f"  {name:13s} epochs to target: {e if e is not None else 'not reached'}")
    if need["StableKD-4/2"] is not None:
        print(f"epochs-to-accuracy ratio KD / StableKD: {need['KD'] / need['StableKD-4/2']:.2f}")
    else:
        print("epochs-to-accuracy ratio KD / StableKD: StableKD did not reach the target")
    mean = {name: sum(v) / len(v) for name, v in secs.items()}
    print(f"seconds per epoch StableKD / KD: {mean['StableKD-4/2'] / mean['KD']:.2f} "
          f"({mean['StableKD-4/2']:.2f} s vs {mean['KD']:.2f} s)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
