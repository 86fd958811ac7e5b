"""What is finished: a run's checkpoint (complete, partial, missing) and its result files.

A checkpoint is complete when it has trained every epoch the sweep asks for with the sweep's
settings; a result is current when it was computed from exactly that checkpoint file (sha256)
with the sweep's evaluation settings and suite. A checkpoint trained with other settings is an
error naming the key (the sweep never silently reuses or overwrites another experiment).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as cfgmod
from ..errors import CheckpointError, FlatkdError
from ..io import write_json
from ..provenance import sha256_of
from .spec import Run, Sweep

CACHE_NAME = ".sha256-cache.json"


@dataclass
class RunState:
    """``train``: todo | partial | done; ``results``: model → todo | stale | done (only the
    models the checkpoint holds, once it exists); ``epoch``/``step``: the checkpoint's."""

    train: str
    epoch: int = 0
    step: int = 0
    models: list[str] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.train == "done":
            pending = [m for m, s in self.results.items() if s != "done"]
            return "done" if not pending else "evaluate"
        return {"partial": "resume", "todo": "todo"}[self.train]

    @property
    def finished(self) -> bool:
        return self.label == "done"


class ShaCache:
    """sha256 of checkpoint files keyed by (size, mtime_ns), kept in ``<out>/.sha256-cache.json``
    so planning a sweep of large checkpoints does not re-hash them every time."""

    def __init__(self, out: Path):
        self.path = out / CACHE_NAME
        self.lock = threading.Lock()
        self.changed = False
        try:
            self.entries = json.loads(self.path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}

    def sha256(self, path: Path) -> str:
        st = os.stat(path)
        key = str(path.resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        with self.lock:
            hit = self.entries.get(key)
            if isinstance(hit, list) and len(hit) == 3 and hit[:2] == stamp:
                return hit[2]
        digest = sha256_of(path)
        with self.lock:
            self.entries[key] = [*stamp, digest]
            self.changed = True
        return digest

    def save(self) -> None:
        with self.lock:
            if self.changed and self.path.parent.is_dir():
                write_json(self.path, self.entries)
                self.changed = False


def _peek(path: Path) -> dict:
    """The checkpoint's plain entries, memory-mapped (its tensors are not read)."""
    import torch

    from ..checkpoint import read, validate
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:                        # anything odd: let the full reader name it
        return read(path)
    validate(data, path)
    return data


def _mismatch(run: Run, saved: dict, now: dict) -> str | None:
    """The first setting the checkpoint was trained with that differs from the sweep's (keys the
    checkpoint does not record, from an older flatkd, are not compared)."""
    from ..training.resume import RESUME_MAY_CHANGE, epochs_fixed_by
    was, want = cfgmod.flatten(saved), cfgmod.flatten(now)
    for key in sorted(want):
        if key in was and key not in RESUME_MAY_CHANGE and was[key] != want[key]:
            return f"{key}={was[key]!r} (the sweep asks for {want[key]!r})"
    if was.get("epochs", 0) > want["epochs"]:
        return f"epochs={was['epochs']!r} (the sweep asks for {want['epochs']!r})"
    if "epochs" in was and was["epochs"] != want["epochs"] and epochs_fixed_by(saved):
        return (f"epochs={was['epochs']!r} under {epochs_fixed_by(saved)} (the sweep asks for "
                f"{want['epochs']!r})")
    return None


def inspect(sweep: Sweep, run: Run, cache: ShaCache | None = None) -> RunState:
    """The state of ``run`` on disk; raises FlatkdError for a checkpoint of another experiment
    or one that cannot be read."""
    from ..config import to_plain
    ckpt = sweep.run_dir(run) / "checkpoint.pt"
    if not ckpt.exists():
        return RunState("todo")
    try:
        raw = _peek(ckpt)
    except CheckpointError as e:
        raise FlatkdError(f"run {run.name}: {e}; remove {ckpt.parent} to train it again") from None
    cfg = run.config()
    wrong = _mismatch(run, raw["config"], to_plain(cfg))
    if wrong:
        raise FlatkdError(f"run {run.name}: {ckpt} was trained with {wrong}; remove "
                          f"{ckpt.parent} to train it again, or give the sweep another out")
    done = raw["epoch"] >= cfg.epochs and raw["config"].get("epochs") == cfg.epochs
    state = RunState("done" if done else "partial", raw["epoch"], raw["step"],
                     sorted(raw["architectures"]))
    if done and sweep.eval.suite != "none":
        cache = cache or ShaCache(sweep.out)
        digest = cache.sha256(ckpt)
        for model in sweep.eval.models:
            if model in state.models:
                state.results[model] = _result_state(sweep, run, model, digest)
    return state


def expected_settings(sweep: Sweep) -> tuple[dict, list[str]]:
    """(evaluation settings as a result records them, suite names)."""
    from ..evaluator import suite_names
    settings = json.loads(json.dumps(cfgmod.to_plain(sweep.eval.resolved())))
    return settings, suite_names(sweep.eval.suite)


def _result_state(sweep: Sweep, run: Run, model: str, digest: str) -> str:
    path = sweep.result_path(run, model)
    if not path.exists():
        return "todo"
    try:
        data = json.loads(path.read_text())
        ck, prov = data["checkpoint"], data["provenance"]
        settings, suites = expected_settings(sweep)
        current = (ck["sha256"] == digest and ck.get("model", "student") == model
                   and prov.get("settings") == settings and prov.get("suites") == suites)
    except (OSError, ValueError, KeyError, TypeError):
        return "stale"
    return "done" if current else "stale"
