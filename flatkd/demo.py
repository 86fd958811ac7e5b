"""``flatkd demo``: the main job end to end on the embedded digits set.

Trains baseline, online, spaced-online, self and spaced-self ResNet-8s, evaluates each student
with the flatness and robustness suites (:data:`SUITES`; reduced evaluation sizes so it fits
in minutes on 2 CPU cores), and builds the report. One seed per method gives no verdict: the
report ends with the runs beside the shipped reference set of the same recipe (3–5 seeds) and
takes its verdicts from that set, saying so (:mod:`flatkd.report.reference`). Re-running reuses finished steps: a complete checkpoint is not retrained (an
interrupted one is resumed) and a result whose checkpoint hash still matches is not re-evaluated.

Progress: one line per step (``[k/11] train …``, ``evaluate …``, ``report``; a step that is
reused says ``reused``) and one overall bar with an ETA over the work left, counted in optimizer
updates: a training counts the updates its method's schedule will run (replays included) and
ticks with each of them; an evaluation counts :data:`EVAL_WORK`, the report
:data:`REPORT_WORK` (their cost in updates, measured); reused steps count nothing.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .evaluator import evaluate
from .io import write_text
from .provenance import sha256_of
from .training import Trainer, TrainConfig, resolve

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
# the overall bar's weights, in training updates of the same wall time (measured on 2 CPU cores:
# an eval-quick flatness + robustness evaluation of a ResNet-8 took as long as 323 updates of a
# digits training, the report of one result 4)
EVAL_WORK = 320
REPORT_WORK = 20


def train_config(method: str, interval: float | None) -> TrainConfig:
    """The demo's training of ``method`` (the digits preset, seed 0)."""
    return resolve(method, ARCH, DATASET, seed=SEED, interval=interval)


def _trained_epochs(ckpt: Path) -> int:
    """Epochs the checkpoint holds (0 if there is none; an unreadable one is removed)."""
    if not ckpt.exists():
        return 0
    try:
        return load_checkpoint(ckpt).epoch
    except CheckpointError:
        ckpt.unlink()
        return 0


def training(method: str, interval: float | None, out: Path, progress: bool) -> Optional[Trainer]:
    """The Trainer that completes ``method``'s run in ``out`` (resuming an interrupted one), or
    None when a complete checkpoint is already there."""
    cfg = train_config(method, interval)
    if _trained_epochs(out / "checkpoint.pt") >= cfg.epochs:
        return None
    return Trainer(cfg, out, resume=(out / "checkpoint.pt").exists(), progress=progress)


def _result_sha256(path: Path) -> str | None:
    """The checkpoint hash a result file was computed from (None if unreadable)."""
    try:
        return json.loads(path.read_text())["checkpoint"]["sha256"]
    except (ValueError, KeyError, TypeError):
        return None


def result_reusable(ckpt: Path, out: Path) -> bool:
    """Whether ``out`` already holds a result for this exact checkpoint file."""
    return out.exists() and ckpt.exists() and _result_sha256(out) == sha256_of(ckpt)


class _Progress:
    """The step lines and the overall bar (nothing at all when ``progress`` is off)."""

    def __init__(self, work: int, steps: int, progress: bool):
        self.steps, self.k, self.on = steps, 0, progress
        self.bar = tqdm(total=work, desc="demo", unit="update", disable=not progress,
                        dynamic_ncols=True)

    def step(self, what: str) -> None:
        self.k += 1
        if self.on:
            self.bar.set_description(f"demo [{self.k}/{self.steps}]")
            tqdm.write(f"[{self.k}/{self.steps}] {what}")

    def tick(self, *_) -> None:
        self.bar.update(1)

    def reach(self, n: int) -> None:
        """Advance to ``n`` units done (a step finished; no-op when its ticks got there)."""
        if self.on and n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def run_demo(out_dir: str | Path = "demo", progress: bool = True) -> Path:
    """Run the whole job into ``out_dir``; returns the report directory."""
    from .report import build_report
    from .report.reference import beside_reference, reference_results_dir

    out = Path(out_dir)
    runs = {m: out / "runs" / m for m in RUNS}
    results = {m: out / "results" / f"{m}.json" for m in RUNS}
    trainers = {m: training(m, s, runs[m], progress) for m, s in RUNS.items()}
    planned = {m: t.planned_updates() for m, t in trainers.items() if t is not None}
    reuse = {m: trainers[m] is None and result_reusable(runs[m] / "checkpoint.pt", results[m])
             for m in RUNS}
    work = sum(planned.values()) + EVAL_WORK * sum(not r for r in reuse.values()) + REPORT_WORK
    p = _Progress(work, 2 * len(RUNS) + 1, progress)
    done = 0
    try:
        for method in RUNS:
            ckpt, t = runs[method] / "checkpoint.pt", trainers[method]
            if t is None:
                p.step(f"train {method}: reused {ckpt} (complete)")
            else:
                p.step(f"train {method} ({ARCH} on {DATASET}, {planned[method]} updates"
                       + (f", resuming after epoch {t.epoch})" if t.epoch else ")"))
                if progress:
                    t.on_update = p.tick
                t.run()
                done += planned[method]
                p.reach(done)
            if reuse[method]:
                p.step(f"evaluate {method}: reused {results[method]} (same checkpoint)")
            else:
                p.step(f"evaluate {method}: flatness + robustness")
                evaluate(ckpt, SUITES, config_file=str(EVAL_CONFIG), out=results[method],
                         progress=progress)
                done += EVAL_WORK
                p.reach(done)
        p.step("build the report (verdicts from the shipped reference set)")
        written = build_report(list(results.values()), out / "report")
        report_md = written["markdown"]
        write_text(report_md, report_md.read_text() + "\n" + "\n".join(
            beside_reference(list(results.values()), reference_results_dir())))
        p.reach(done + REPORT_WORK)
    finally:
        p.close()
    return out / "report"
