"""Synthetic but realistic result files (SPEC §6) for the report tests and the report notebook test.

The numbers are fixed (no RNG) so tests can recompute every table cell by hand:
digits / ResNet-8, methods baseline, online, spaced-online (s = 1.5), self and spaced-self (s = 4.0,
arch ``byot_resnet8``), seeds 0, 1, 2. Spaced methods are a little more accurate and flatter.
``write_results(..., intervals=...)`` adds further spaced intervals (:data:`EXTRA_ACCURACY`);
``write_checkpoints`` writes small checkpoint files (metrics only, no weights) whose per-epoch
accuracies end at :data:`ACCURACY`, peak :data:`BEST_BUMP` higher one epoch earlier and, for
self KD, carry exit and exit-ensemble columns (:data:`ENSEMBLE_OFFSET`).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

SEEDS = (0, 1, 2)
DATASET = "digits"
#: test accuracy (fraction) per method and seed.
ACCURACY = {
    "baseline": (0.9500, 0.9472, 0.9528),
    "online": (0.9611, 0.9583, 0.9639),
    "spaced-online": (0.9694, 0.9667, 0.9750),
    "self": (0.9556, 0.9583, 0.9611),
    "spaced-self": (0.9583, 0.9556, 0.9667),
}
#: Hessian trace per method and seed.
TRACE = {
    "baseline": (412.0, 398.0, 420.0),
    "online": (350.0, 362.0, 341.0),
    "spaced-online": (301.0, 296.0, 310.0),
    "self": (380.0, 371.0, 392.0),
    "spaced-self": (366.0, 379.0, 360.0),
}
INTERVAL = {"spaced-online": 1.5, "spaced-self": 4.0}
#: test accuracy per (spaced method, further interval) and seed.
EXTRA_ACCURACY = {
    ("spaced-online", 0.5): (0.9639, 0.9639, 0.9667),
    ("spaced-online", 3.0): (0.9667, 0.9694, 0.9722),
}
#: per-epoch accuracy peaks this much above the final one in the second-to-last epoch.
BEST_BUMP = {
    "baseline": (0.0, 0.0056, 0.0028),
    "online": (0.0083, 0.0, 0.0111),
    "spaced-online": (0.0, 0.0028, 0.0),
    "self": (0.0056, 0.0083, 0.0),
    "spaced-self": (0.0028, 0.0, 0.0083),
}
#: exit-ensemble accuracy minus the deepest exit's, every epoch (self-KD methods only).
ENSEMBLE_OFFSET = {"self": (0.0083, 0.0111, 0.0056), "spaced-self": (0.0139, 0.0083, 0.0111)}
#: severity constants recorded in every fixture result's provenance.
CONSTANTS = "cifar-c"
BATCHES_PER_EPOCH = 12
ARCH = {"self": "byot_resnet8", "spaced-self": "byot_resnet8"}
SIGMAS = (0.0, 0.002, 0.005, 0.01, 0.02)
EPSILONS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
CORRUPTIONS = ("impulse_noise", "zoom_blur", "snow", "frost", "jpeg_compression", "brightness")
SEVERITIES = (1, 3, 5)


def accuracy(method: str, seed: int, interval: float | None = None) -> float:
    """Final test accuracy of (method, interval, seed)."""
    i = SEEDS.index(seed)
    if interval is None or interval == INTERVAL.get(method):
        return ACCURACY[method][i]
    return EXTRA_ACCURACY[method, interval][i]


def _stem(method: str, interval: float | None) -> str:
    return method if interval is None or interval == INTERVAL.get(method) else \
        f"{method}_i{interval:g}"


def _result(method: str, seed: int, ckpt_dir: Path, interval: float | None = None) -> dict:
    i = SEEDS.index(seed)
    interval = INTERVAL.get(method) if interval is None else interval
    acc = accuracy(method, seed, interval)
    trace = TRACE[method][i]
    top = [trace * f for f in (0.21, 0.09, 0.05, 0.03, 0.02)]
    grid = [-0.1 * top[0] + k * (1.2 * top[0]) / 79 for k in range(80)]
    density = [math.exp(-(g / (0.02 * top[0])) ** 2) + 1e-3 * math.exp(-((g - top[0]) / 3.0) ** 2)
               + 1e-6 for g in grid]
    pert = []
    for s in SIGMAS:
        rise = 0.5 * trace * s ** 2 * 50.0
        pert.append({"sigma": s, "loss_mean": 0.05 + rise, "loss_std": 0.2 * rise,
                     "acc_mean": max(0.1, 0.995 - 0.6 * rise / (1 + rise)),
                     "acc_std": 0.0 if s == 0 else 0.01 + 0.02 * s / SIGMAS[-1], "repeats": 5})
    corr = []
    for c_i, c in enumerate(CORRUPTIONS):
        for sev in SEVERITIES:
            drop = 0.04 * sev ** 1.6 * (1 + 0.3 * c_i) * (trace / 350.0)  # severe: chance
            corr.append({"corruption": c, "severity": sev, "accuracy": max(0.1, acc - drop)})
    adv = [{"attack": "BIM", "epsilon": e, "stepsize": 1 / 255,
            "steps": max(1, int(min(e * 255 + 4, 1.25 * e * 255))),
            "accuracy": max(0.0, acc - 35.0 * e * (trace / 350.0))} for e in EPSILONS]
    arch = ARCH.get(method, "resnet8")
    ckpt = ckpt_dir / f"{_stem(method, interval)}_s{seed}.pt"
    return {
        "format": "flatkd.result", "version": 1,
        "checkpoint": {"path": str(ckpt), "sha256": hashlib.sha256(ckpt.name.encode()).hexdigest(), "method": method, "arch": arch,
                       "dataset": DATASET, "model": "student", "interval": interval,
                       "seed": seed},
        "flatness": {
            "hessian": {"trace": {"mean": trace, "stderr": 0.01 * trace, "n_hvp": 100},
                        "top_eigenvalues": top,
                        "density": {"grid": grid, "values": density},
                        "backend": "native", "n_samples": 256},
            "perturbation": pert},
        "robustness": {"clean_accuracy": acc, "corruptions": corr, "adversarial": adv},
        "provenance": {"flatkd": "0.1.0", "seed": seed,
                       "settings": {"robustness": {"constants": CONSTANTS},
                                    "perturbation": {"mode": "absolute"}}},
    }


def write_results(out_dir: str | Path, methods=tuple(ACCURACY), seeds=SEEDS,
                  intervals: dict[str, tuple[float, ...]] | None = None) -> list[Path]:
    """Write one result JSON per (method, interval, seed) into ``out_dir``; return their paths.

    ``intervals`` gives a spaced method further intervals (keys of :data:`EXTRA_ACCURACY`)
    besides its default. Their checkpoint paths point into ``out_dir`` but no checkpoint files
    are written (see :func:`write_checkpoints`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in methods:
        for iv in (INTERVAL.get(m), *(intervals or {}).get(m, ())):
            for s in seeds:
                p = out / f"{_stem(m, iv)}_seed{s}.json"
                p.write_text(json.dumps(_result(m, s, out, iv), indent=1))
                paths.append(p)
    return paths


def history_rows(method: str, seed: int, interval: float | None = None, epochs: int = 6,
                 ensemble: bool = True) -> list[dict]:
    """Per-epoch metric rows of (method, interval, seed), as the training loop writes them."""
    i = SEEDS.index(seed)
    final = accuracy(method, seed, interval)
    teacher = method in ("online", "spaced-online")
    spaced_self = method == "spaced-self"
    rows = []
    for e in range(1, epochs + 1):
        acc = final - 0.5 * math.exp(-e / 1.2) * (e < epochs - 2)   # settled: last 3 epochs
        if e == epochs - 1:
            acc = final + BEST_BUMP[method][i]
        row = {"epoch": e, "step": BATCHES_PER_EPOCH * e, "train_loss": 2.3 * math.exp(-e / 3),
               "student_test_acc": acc,
               "teacher_test_acc": min(1.0, acc + 0.01) if teacher else None,
               "student_steps": BATCHES_PER_EPOCH * e * (2 if spaced_self else 1)}
        if ensemble and method in ENSEMBLE_OFFSET:
            row |= {"exit_1_test_acc": acc - 0.01, "exit_2_test_acc": acc - 0.03,
                    "exit_3_test_acc": acc - 0.08,
                    "ensemble_test_acc": acc + ENSEMBLE_OFFSET[method][i]}
        rows.append(row)
    return rows


def write_checkpoints(result_paths, epochs: int = 6, ensemble: bool = True) -> list[Path]:
    """A small checkpoint (no weights: metrics, replay steps) at the path each result names."""
    from flatkd import checkpoint
    written = []
    for rp in result_paths:
        ck = json.loads(Path(rp).read_text())["checkpoint"]
        method, seed, interval = ck["method"], ck["seed"], ck["interval"]
        bpe = BATCHES_PER_EPOCH
        replay = ([round(interval * bpe) * k for k in range(1, int(epochs / interval) + 1)]
                  if interval else [])
        rows = history_rows(method, seed, interval, epochs, ensemble)
        checkpoint.save(ck["path"], {
            "format": checkpoint.FORMAT, "version": checkpoint.VERSION, "method": method,
            "arch": ck["arch"], "dataset": ck["dataset"], "num_classes": 10, "models": {},
            "architectures": {}, "optim": {}, "epoch": epochs, "step": bpe * epochs,
            "config": {}, "metrics": rows, "provenance": {},
            "state": {"replay_steps": replay, "batches_per_epoch": bpe}})
        written.append(Path(ck["path"]))
    return written


def metric_rows(epochs: int = 12, teacher: bool = True, offset: float = 0.0) -> list[dict]:
    """Per-epoch checkpoint metrics rows (keys as ``ck.metrics``) of a run that learns digits."""
    rows = []
    for e in range(1, epochs + 1):
        s = 0.95 - 0.75 * math.exp(-e / 2.5) + offset
        rows.append({"epoch": e, "step": 12 * e, "train_loss": 2.3 * math.exp(-e / 3.0),
                     "student_test_acc": s,
                     "teacher_test_acc": min(1.0, s + 0.01) if teacher else None})
    return rows
