"""``flatkd demo``: the main job end to end on the embedded digits set.

Trains baseline, online, spaced-online, self and spaced-self ResNet-8s, evaluates each student
with the flatness and robustness suites (:data:`SUITES`; reduced evaluation sizes so it fits
in minutes on 2 CPU cores), and builds
the report. Re-running reuses finished steps: a complete checkpoint is not retrained (an
interrupted one is resumed) and a result whose checkpoint hash still matches is not re-evaluated.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .evaluator import evaluate
from .provenance import sha256_of
from .training import Trainer, resolve

ARCH, DATASET, SEED = "resnet8", "digits", 0
RUNS = {                              # method → space interval in epochs (None: not spaced)
    "baseline": None,
    "online": None,
    "spaced-online": 1.5,
    "self": None,
    "spaced-self": 1.0,
}
EVAL_CONFIG = resources.files("flatkd.presets").joinpath("eval-quick.yaml")   # reduced sizes
SUITES = "flatness,robustness"


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(msg, flush=True)


def train_step(method: str, interval: float | None, out: Path, progress: bool) -> Path:
    """Train ``method`` into ``out`` unless a complete checkpoint is already there."""
    cfg = resolve(method, ARCH, DATASET, seed=SEED, interval=interval)
    ckpt = out / "checkpoint.pt"
    resume = False
    if ckpt.exists():
        try:
            done = load_checkpoint(ckpt).epoch
        except CheckpointError:
            ckpt.unlink()
            done = 0
        if done >= cfg.epochs:
            return ckpt
        resume = done > 0
    return Trainer(cfg, out, resume=resume, progress=progress).run()


def _result_sha256(path: Path) -> str | None:
    """The checkpoint hash a result file was computed from (None if unreadable)."""
    try:
        return json.loads(path.read_text())["checkpoint"]["sha256"]
    except (ValueError, KeyError, TypeError):
        return None


def eval_step(ckpt: Path, out: Path, progress: bool) -> Path:
    """Evaluate ``ckpt`` into ``out`` unless ``out`` already holds a result for this exact file."""
    if out.exists() and _result_sha256(out) == sha256_of(ckpt):
        return out
    evaluate(ckpt, SUITES, config_file=str(EVAL_CONFIG), out=out, progress=progress)
    return out


def run_demo(out_dir: str | Path = "demo", progress: bool = True) -> Path:
    """Run the whole job into ``out_dir``; returns the report directory."""
    from .report import build_report

    out = Path(out_dir)
    results = []
    total = len(RUNS)
    for i, (method, interval) in enumerate(RUNS.items(), 1):
        _say(f"[{i}/{total}] train {method} ({ARCH} on {DATASET})", progress)
        ckpt = train_step(method, interval, out / "runs" / method, progress)
        _say(f"[{i}/{total}] evaluate {method}: flatness + robustness", progress)
        results.append(eval_step(ckpt, out / "results" / f"{method}.json", progress))
    _say("building the report", progress)
    build_report(results, out / "report")
    return out / "report"
