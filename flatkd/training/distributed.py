"""Multi-process training and evaluation on ``torch.distributed`` (launched by ``torchrun``;
NCCL on CUDA, gloo on CPU).

Every rank draws the same *global* epoch plan (``epoch_specs``) and the method schedules global
:class:`BatchSpec` s, so replay buffers, replay steps and checkpoints are identical on every
rank and a run resumes under any world size. Only materialisation is per rank: :func:`shard`
gives rank r the contiguous slice ``[r·m, (r+1)·m)`` (m = ⌈B / world⌉) of the global batch,
padded by wrapping around as ``DistributedSampler`` pads, and keeps every sample's augmentation
seed (``spec.seed + position in the global batch``), so a rank's pixels equal the
single-process pixels of the same samples. Batch size and learning rate are the *global* ones.

Gradients are averaged with one flattened all-reduce per optimizer step and buffers (BatchNorm
statistics) broadcast from rank 0 after it, which is what ``DistributedDataParallel`` does with
``broadcast_buffers=True``. DDP itself is not used: flatkd's methods call ``forward_features`` /
``forward_exits`` rather than ``forward``, which DDP's reducer does not see (it raises on the
next step or skips the reduction), and a frozen teacher needs no wrapper.

Evaluation splits a sample set into contiguous blocks of whole evaluation batches
(:func:`batch_range`), so every batch a rank runs is a batch of the single-process run, and sums
its counts (:func:`sum_counts`) or tensors (:func:`sum_tensors_`) over the ranks; files every
rank needs are written by rank 0 alone (:func:`main_first`).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..errors import FlatkdError
from .batches import BatchSpec


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size`` (1: not distributed)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    collective_device: str = "cpu"      # where small collectives (counts, sums) live

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:<local_rank>`` (made current) for a distributed CUDA
        run, else ``device`` unchanged."""
        if device.type != "cuda" or not self.enabled:
            return device
        mine = torch.device(f"cuda:{self.local_rank}")
        torch.cuda.set_device(mine)
        return mine


def launched() -> bool:
    """True inside a torchrun (or any ``env://``) launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_type: str) -> DistContext:
    """Join the process group of a torchrun launch (``nccl`` for CUDA, ``gloo`` for CPU); a
    single process gets the trivial context."""
    if not launched():
        return DistContext()
    if not dist.is_available():
        raise FlatkdError("this PyTorch build has no torch.distributed; run a single process")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    elif dist.get_backend() != backend:
        raise FlatkdError(f"the process group uses {dist.get_backend()}, but a {device_type} run "
                          f"needs {backend}")
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank,
                       f"cuda:{local_rank}" if backend == "nccl" else "cpu")


def shard(spec: BatchSpec, rank: int, world_size: int) -> BatchSpec:
    """Rank ``rank``'s part of the global batch ``spec`` (see the module docstring)."""
    if world_size == 1:
        return spec
    n = len(spec.indices)
    per_rank = -(-n // world_size)
    start = rank * per_rank
    indices = tuple(spec.indices[j % n] for j in range(start, start + per_rank))
    return BatchSpec(spec.step, spec.epoch, indices, spec.seed + start)


def _flat_all_reduce(tensors: list[torch.Tensor], op) -> None:
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=op)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Replace every gradient by its mean over the ranks (one all-reduce for all of them).

    A parameter without a gradient on this rank takes part with zeros, so every rank issues
    the same collective."""
    if not ctx.enabled:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    sum_tensors_(grads, ctx)
    for g in grads:
        g.div_(ctx.world_size)


def sum_tensors_(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Replace every tensor by its element-wise sum over the ranks, in place (one all-reduce
    per dtype and device); every rank ends with the same bits."""
    if not ctx.enabled:
        return
    for group in _by_dtype(tensors):
        _flat_all_reduce(group, dist.ReduceOp.SUM)


def broadcast_buffers(modules: Iterable[nn.Module], ctx: DistContext) -> None:
    """Copy rank 0's floating-point buffers (BatchNorm statistics) to every rank; integer
    buffers (``num_batches_tracked``) advance identically on every rank."""
    if not ctx.enabled:
        return
    buffers = [b for m in modules for b in m.buffers() if b.is_floating_point()]
    for group in _by_dtype(buffers):
        flat = torch.cat([b.reshape(-1) for b in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for b in group:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def sum_over_ranks(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.collective_device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def sum_counts(counts: list[int], ctx: DistContext) -> list[int]:
    """Element-wise sum of integer ``counts`` over the ranks (exact below 2⁵³)."""
    return [int(c) for c in sum_over_ranks([float(c) for c in counts], ctx)]


def batch_range(n: int, batch_size: int, ctx: DistContext) -> range:
    """This rank's share ``range(lo, hi)`` of n samples evaluated in batches of ``batch_size``.

    Rank r of W gets the global batches ⌊r·b/W⌋ … ⌊(r+1)·b/W⌋ − 1 (b = ⌈n / batch_size⌉; a rank
    may get none), so ``lo`` is a multiple of ``batch_size`` and ``range(lo, hi, batch_size)``
    starts exactly the single-process batches: per-batch numbers, and random draws keyed by a
    batch's first sample index, do not depend on the number of ranks."""
    if not ctx.enabled:
        return range(n)
    b = -(-n // batch_size)
    lo, hi = (min(n, (k * b // ctx.world_size) * batch_size) for k in (ctx.rank, ctx.rank + 1))
    return range(lo, hi)


MAIN_FIRST_TIMEOUT = datetime.timedelta(hours=24)


@contextlib.contextmanager
def main_first(ctx: DistContext) -> Iterator[None]:
    """Run the body on rank 0 first and on the other ranks once rank 0 has left it, e.g. rank 0
    writes cache files that the others then read.

    The others wait on a barrier of a gloo group of their own with a timeout of
    :data:`MAIN_FIRST_TIMEOUT`: rank 0's work (generating corrupted test sets) may outlast the
    default group's collective timeout (30 minutes for gloo, 10 for NCCL)."""
    if not ctx.enabled:
        yield
        return
    group = dist.new_group(backend="gloo", timeout=MAIN_FIRST_TIMEOUT)
    if not ctx.is_main:
        dist.barrier(group=group)
    yield
    if ctx.is_main:
        dist.barrier(group=group)
    dist.destroy_process_group(group)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def _by_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    groups: dict = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    return list(groups.values())
