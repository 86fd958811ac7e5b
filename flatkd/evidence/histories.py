"""What a result's run folder says about its training: per-epoch metrics (from the checkpoint,
else the run's ``metrics.csv``), spaced replay boundaries and student optimizer steps."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from .results import Result, dataset_facts


@dataclass(frozen=True)
class TrainingHistory:
    """What a result's checkpoint says about training: per-epoch ``rows`` (``ck.metrics``),
    spaced replay ``boundaries`` in epochs (``ck.interval_boundaries_epochs()``), the number
    of student optimizer steps ``step`` (the last row's ``student_steps``, else ``ck.step``;
    spaced self-KD takes extra replay steps) and the checkpoint's ``num_classes``."""

    rows: list[dict]
    boundaries: list[float]
    step: int
    num_classes: int | None = None

    def column(self, name: str) -> list[float]:
        """The finite values of metric column ``name`` over the epochs (rows lacking it or
        holding None are skipped)."""
        return [float(r[name]) for r in self.rows
                if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]

    def final(self, name: str) -> float | None:
        """``name`` in the last epoch's row (None when that row lacks it)."""
        v = self.rows[-1].get(name) if self.rows else None
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def best(self, name: str) -> float | None:
        """The maximum of ``name`` over the epochs (None when no row has it)."""
        vals = self.column(name)
        return max(vals) if vals else None


def training_history(result: Result) -> tuple[TrainingHistory | None, str]:
    """``(history, "")`` from the result's checkpoint or, when the checkpoint file is gone, from
    its run folder's ``metrics.csv`` (then without the replay boundaries, which only the
    checkpoint records); ``(None, reason)`` when neither can be read (the report states the
    reason instead of the curve)."""
    path = result.checkpoint_file()
    if path is None:
        csv_path = result.metrics_file()
        if csv_path is not None:
            rows = read_metrics_csv(csv_path)
            if rows:
                steps = rows[-1].get("student_steps") or rows[-1].get("step") or 0
                return TrainingHistory(rows, [], int(steps),
                                       dataset_facts(result.dataset)[0]), ""
        return None, f"checkpoint {result.checkpoint.get('path')!r} of {result.path.name} not found"
    try:
        ck = load_checkpoint(path)
    except CheckpointError as e:
        return None, str(e)
    rows = list(ck.metrics)
    steps = rows[-1].get("student_steps", ck.step) if rows else ck.step
    n_cls = ck.raw.get("num_classes")
    return TrainingHistory(rows, list(ck.interval_boundaries_epochs()), int(steps),
                           int(n_cls) if isinstance(n_cls, int) else None), ""


def read_metrics_csv(path: Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` as the checkpoint holds them: integers as int, other
    numbers as float, empty cells absent."""
    def value(text: str):
        try:
            return int(text)
        except ValueError:
            return float(text)
    with open(path, newline="") as f:
        try:
            return [{k: value(v) for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(f)]
        except ValueError:
            return []


#: ``{result path: TrainingHistory or None}`` plus the reasons for the ones that are None.
Histories = Mapping[Path, "TrainingHistory | None"]


def load_histories(results: Iterable[Result]) -> tuple[dict[Path, TrainingHistory | None],
                                                         list[str]]:
    """Every result's training history (each checkpoint read once) and, for those whose
    checkpoint could not be read, the reasons."""
    out: dict[Path, TrainingHistory | None] = {}
    reasons: list[str] = []
    for r in results:
        hist, reason = training_history(r)
        out[r.path] = hist
        if hist is None:
            reasons.append(reason)
    return out, reasons
