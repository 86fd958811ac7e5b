"""Training curves for outside viewers: TensorBoard events under ``OUT/tb/`` (``log.tensorboard``)
and, when asked, Weights & Biases (``log.wandb``). ``metrics.csv`` is written either way.

The loop calls :class:`Curves` at points it already has: after each update (the float logs the
method returned from ``Method.loss``, under the update's role), after each batch (the learning
rate, a replay the batch triggered) and at each epoch end (the metrics row). Nothing here touches
a tensor: every value is a Python float the loop or the method already computed.

Tags (the x axis is the global data step, metrics.csv's ``step``; a replayed batch's losses are
plotted at the step the batch first came in):

* ``loss/<role>`` — the loss of every update of that role (``teacher``, ``student``, ``replay``,
  ``deep``, ``self``, a peer …): one point per optimizer update.
* ``terms/<role>/<key>`` — the other logs of those updates (ce, kd, feat, …).
* ``lr`` — the learning rate at each step.
* ``replay/replays`` — how many replays (distilled intervals) have run, at each replay's step.
* ``test/<network>_test_acc`` (and the method's other test columns) — per-epoch test accuracy.
* ``epoch/<key>`` — the rest of the metrics row (train_loss, lr, optimizer steps).

W&B gets the same tags, each plotted against a ``data_step`` metric.

Points are kept in memory and written when the loop saves a checkpoint (each epoch end, and
every ``checkpoint_every`` steps): the events on disk are exactly the history the checkpoint
continues from. An interrupted run loses only what its checkpoint lost too, and ``--resume``
appends to the same folder without repeating a step — even the replays of batches buffered in
the checkpoint, whose points lie before the checkpoint's step. (``purge_step`` = the first
step after the checkpoint also hides anything a run wrote past its last checkpoint.) Only rank 0
writes.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from ..errors import FlatkdError

TB_DIR = "tb"
WANDB_ID_FILE = "wandb-run-id.txt"
INSTALL_TENSORBOARD = "pip install 'flatkd[tensorboard]'"


def _after_existing_event_files(log_dir: Path) -> None:
    """Wait (at most a second) until a new event file sorts after the existing ones.

    tensorboard names a file ``events.out.tfevents.<10-digit second>.<host>.<pid>.<counter>``
    and readers take a folder's files in name order; the counter is not zero-padded, so within
    one second and one process ``….10`` sorts before ``….9`` and a resumed session's events
    (with their purge step) would be read before the ones they continue. Seen in the test
    suite, where a crashed and a resumed run share a process."""
    stamps = []
    for f in log_dir.glob("events.out.tfevents.*"):
        part = f.name.split(".")[3]
        if part.isdigit():
            stamps.append(int(part))
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)


def _summary_writer():
    """torch's SummaryWriter class, or None when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def resolve_tensorboard(wanted: Optional[bool]) -> bool:
    """``log.tensorboard``: unset → on exactly when tensorboard is installed; true without it
    → FlatkdError naming the install command."""
    if wanted is False:
        return False
    have = _summary_writer() is not None
    if wanted and not have:
        raise FlatkdError("log.tensorboard=true needs the tensorboard package: "
                          f"{INSTALL_TENSORBOARD} (or --set log.tensorboard=false)")
    return have


def resolve_wandb(wanted: bool) -> bool:
    """``log.wandb`` (never on by default): true without the wandb package → FlatkdError."""
    if not wanted:
        return False
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise FlatkdError("log.wandb=true needs the wandb package: pip install wandb "
                          "(and wandb login, or WANDB_MODE=offline); or --set log.wandb=false"
                          ) from None
    return True


class Curves:
    """The open sinks of one run (rank 0): collects points, writes them at :meth:`flush`."""

    def __init__(self, out: Path, *, tensorboard: bool, wandb: bool, first_step: int,
                 record: dict):
        self.tb = None
        self.wandb = None
        self._pending: list[tuple[int, dict[str, float]]] = []    # (step, tag → value)
        if tensorboard:
            from tensorboard.compat.proto.summary_pb2 import Summary   # what SummaryWriter writes
            self._summary = Summary
            _after_existing_event_files(out / TB_DIR)
            self.tb = _summary_writer()(log_dir=str(out / TB_DIR), purge_step=first_step)
        if wandb:
            self.wandb = _open_wandb(out, record)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        self._pending.append((step, values))

    def flush(self) -> None:
        """Write every point collected so far (the loop calls it as it saves a checkpoint)."""
        if self.tb is not None:     # one event per point set (5× faster than add_scalar each)
            Summary, writer = self._summary, self.tb.file_writer
            for step, values in self._pending:
                writer.add_summary(Summary(value=[Summary.Value(tag=t, simple_value=v)
                                                  for t, v in values.items()]), step)
            self.tb.flush()
        if self.wandb is not None:
            for step, values in self._pending:
                self.wandb.log({**values, "data_step": step})
        self._pending = []

    def update(self, role: str, step: int, logs: dict[str, float], loss_key: Optional[str]) -> None:
        """One optimizer update of ``role`` on the batch of data step ``step``: ``logs[loss_key]``
        is its loss (None: the method logs none), the other logs are its terms."""
        values = {(f"loss/{role}" if k == loss_key else f"terms/{role}/{k}"): v
                  for k, v in logs.items()}
        self._scalars(values, step)

    def batch(self, step: int, lr: float, replays: Optional[int]) -> None:
        """After the batch of ``step``: its learning rate and, if it triggered a replay, the
        number of replays so far."""
        values = {"lr": lr}
        if replays is not None:
            values["replay/replays"] = float(replays)
        self._scalars(values, step)

    def epoch(self, row: dict) -> None:
        """The epoch's metrics row (as in metrics.csv), at the epoch's last step."""
        values = {(f"test/{k}" if "test" in k else f"epoch/{k}"): float(v)
                  for k, v in row.items() if k not in ("epoch", "step")
                  and isinstance(v, (int, float)) and not isinstance(v, bool)}
        values["epoch/epoch"] = float(row["epoch"])
        self._scalars(values, row["step"])

    def close(self) -> None:
        """Close the sinks; points collected after the last :meth:`flush` (after the last
        checkpoint: a resume recomputes them) are dropped."""
        self._pending = []
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _open_wandb(out: Path, record: dict):
    """A W&B run for ``out``; its id is kept in ``OUT/wandb-run-id.txt`` so that --resume
    continues the same W&B run. Every metric is plotted against ``data_step``."""
    import wandb
    id_file = out / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
    id_file.write_text(run_id + "\n")
    run = wandb.init(project="flatkd", name=out.name, id=run_id, resume="allow", dir=str(out),
                     config=record)
    run.define_metric("data_step")
    run.define_metric("*", step_metric="data_step")
    return run
