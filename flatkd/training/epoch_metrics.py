"""What a training run measures at the end of an epoch and how it writes it: each network's
test accuracy (with the BatchNorm statistics as trained, and re-estimated for the final
weights) and ``metrics.csv``."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import batchnorm as BN
from ..accuracy import top1_accuracy
from ..flatness.state import preserved
from ..io import write_text
from . import distributed


def evaluated_networks(method) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of the student and, where the method has one, the teacher."""
    for name in ("student", "teacher"):
        if name in method.nets.architectures and name in method.nets.modules:
            yield name, method.nets.modules[name]


def test_accuracies(method, test_set, batch_size: int, device: torch.device,
                    dist: distributed.DistContext) -> dict:
    """``<network>_test_acc`` (None for a network the method lacks) plus the method's own
    ``test_metrics``; with several ranks each takes every world_size-th test sample and the
    correct counts are summed, so the value equals a single-process pass."""
    n_all = len(test_set)
    if dist.enabled:
        test_set = torch.utils.data.Subset(test_set, range(dist.rank, n_all, dist.world_size))
    loader = DataLoader(test_set, batch_size=batch_size)
    row = {"student_test_acc": None, "teacher_test_acc": None}
    for name, module in evaluated_networks(method):
        row[f"{name}_test_acc"] = top1_accuracy(module, loader, device)
    row.update(method.test_metrics(loader, device))
    if not dist.enabled:
        return row
    keys = [k for k, v in row.items() if v is not None]
    correct = distributed.sum_over_ranks([round(row[k] * len(test_set)) for k in keys], dist)
    return {**row, **{k: c / n_all for k, c in zip(keys, correct)}}


def recalibrated_accuracies(method, train_set, test_set, batch_size: int, device: torch.device,
                            dist: distributed.DistContext) -> dict:
    """``<network>_test_acc_recalibrated``: each network's test accuracy after its BatchNorm
    statistics are re-estimated (:func:`flatkd.batchnorm.recalibrate` over the un-augmented
    ``train_set``); the network's buffers and modes are restored bit-exactly afterwards — not
    a deep copy, which a compiled network does not survive. Networks without BatchNorm repeat
    their accuracy. Equal on every rank (the ranks exchange their batches' statistics)."""
    row = {}
    for name, module in evaluated_networks(method):
        with preserved(module):
            BN.recalibrate(module, train_set, samples=len(train_set), batch_size=batch_size,
                           device=device, dist=dist)
            acc, _ = BN.accuracy_and_loss(module, test_set, len(test_set), batch_size, device,
                                          dist)
        row[f"{name}_test_acc_recalibrated"] = acc
    return row


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` as CSV (columns: every key any row has, in first-seen order), atomically."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())
