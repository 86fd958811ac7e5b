"""Helpers shared by the Table 4 / App. A.3 methods: frozen forwards, soft losses against
probability targets, per-sample state keyed by dataset index, network naming."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ... import models
from ..config import TrainConfig
from .online import _arch_kwargs
from .seeding import seeded


def kd_kl_prob(s: torch.Tensor, q: torch.Tensor, T: float) -> torch.Tensor:
    """T²·KL(q ‖ softmax(s/T)), batch mean, for a *probability* target q [N, C] (no gradient
    into q) and student logits s [N, C]. With q = softmax(t/T) it equals ``kd_kl(s, t, T)``."""
    q = q.detach()
    log_q = torch.log(q.clamp_min(1e-12))
    kl = (q * (log_q - F.log_softmax(s / T, 1))).sum(1).mean()
    return kl * T * T


def soft_ce(s: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """−Σ_c q_c log softmax(s)_c, batch mean (soft-target cross-entropy, T = 1)."""
    return -(q.detach() * F.log_softmax(s, 1)).sum(1).mean()


@contextlib.contextmanager
def bn_frozen(net: nn.Module):
    """Inside the block BatchNorm layers may run in train mode (batch statistics) but their
    running statistics and counters are restored afterwards, bit-exactly."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m._buffers.items() if v is not None} for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buf in zip(bns, saved):
                for k, v in buf.items():
                    m._buffers[k].copy_(v)


def frozen_forward(net: nn.Module, x: torch.Tensor, bn: str = "train",
                   features: bool = False):
    """Forward ``net`` without gradient; ``bn``: ``train`` (batch statistics, running statistics
    updated — a frozen teacher's BN during replay in the official code), ``batch`` (batch
    statistics, running statistics left untouched) or ``eval`` (running statistics). The
    module's train/eval mode is restored. Returns logits, or (logits, pooled feature)."""
    was = net.training
    net.train(bn in ("train", "batch"))
    ctx = bn_frozen(net) if bn == "batch" else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        out = net.forward_features(x) if features else net(x)
    net.train(was)
    return out


def make_net(cfg: TrainConfig, seed: int, num_classes: int, mean, std, arch: str | None = None,
             width: float = 1.0) -> tuple[nn.Module, dict]:
    """A network of ``arch`` (default the student's) built from ``seed``, and its record."""
    kw = _arch_kwargs(arch or cfg.arch, num_classes, mean, std, width, cfg=cfg)
    return seeded(seed, lambda: models.create(**kw)), kw


class PerSampleBuffer:
    """A float tensor of per-sample rows keyed by dataset index (never by pixels): ``shape``
    = (*lead, N, *row). Rows not yet written hold ``fill``; the index range grows on demand,
    so the method needs no dataset size. Saved and restored bit-exactly (``state``/``load``)."""

    def __init__(self, lead: tuple[int, ...], row: tuple[int, ...], fill: float = 0.0,
                 dtype=torch.float32):
        self.lead, self.row, self.fill, self.dtype = tuple(lead), tuple(row), fill, dtype
        self.data = torch.full((*self.lead, 0, *self.row), fill, dtype=dtype)

    def _grow(self, n: int) -> None:
        have = self.data.shape[len(self.lead)]
        if n <= have:
            return
        size = max(n, 2 * have)
        extra = torch.full((*self.lead, size - have, *self.row), self.fill, dtype=self.dtype,
                           device=self.data.device)
        self.data = torch.cat([self.data, extra], dim=len(self.lead))

    def to(self, device) -> "PerSampleBuffer":
        self.data = self.data.to(device)
        return self

    def index(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.data.device)
        self._grow(int(idx.max()) + 1 if idx.numel() else 0)
        return idx

    def get(self, idx) -> torch.Tensor:
        """Rows ``idx`` (a copy), shape (*lead, len(idx), *row)."""
        i = self.index(idx)
        return self.data.index_select(len(self.lead), i).clone()

    def set(self, idx, values: torch.Tensor) -> None:
        i = self.index(idx)
        self.data.index_copy_(len(self.lead), i, values.detach().to(self.dtype))

    def state(self) -> torch.Tensor:
        return self.data.detach().cpu().clone()

    def load(self, t) -> None:
        if t is not None:
            self.data = torch.as_tensor(t, dtype=self.dtype).to(self.data.device).clone()
