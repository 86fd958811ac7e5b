"""BatchNorm statistics that match the weights: re-estimation before a network is measured.

A BatchNorm layer's running mean and variance are an exponential average over the training
batches of *earlier* weights (momentum 0.1: roughly the last 10 steps). After a large
learning-rate step, or for a frozen teacher that keeps updating them in train mode during
spaced replay, they no longer describe the final weights, and every eval-mode number —
accuracy, Hessian, perturbation curves — then measures the stale statistics rather than the
trained function. :func:`recalibrate` re-estimates them for the weights as they are: the
cumulative average, over the batches of a fixed un-augmented sample, of each batch's mean and
unbiased variance — what ``torch.optim.swa_utils.update_bn`` computes (momentum None). It is
written here for three measured reasons: only the BatchNorm layers run in train mode
(``update_bn`` switches the whole network, so dropout and drop-path would perturb the statistics);
each batch's statistics (BatchNorm's own, read from its buffers with momentum 1, so the
pass costs what a train-mode forward costs) are summed in float64 in batch order
(``update_bn``'s running update re-rounds the average at every batch); and under torchrun each
rank computes its share of the batches and the ranks exchange them, so every rank ends with the
bits one process computes.
"""
from __future__ import annotations

import torch
from torch import nn

from .flatness.data import Batches, first_samples
from .training import distributed


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _indexed(batches: Batches):
    """(global batch index, x, y) of this rank's batches of ``batches`` (the index counts the
    single-process batches: a rank's share starts at a batch boundary)."""
    first = batches.share.start // batches.batch_size
    return ((first + i, x, y) for i, (x, y) in enumerate(batches))


def _in_batch_order(per_batch: torch.Tensor, dist: distributed.DistContext) -> torch.Tensor:
    """``per_batch`` [B, ...] holds this rank's batches (zeros elsewhere): every rank's rows,
    summed over the batches in batch order (adding the other ranks' zeros is exact, so the
    result has the bits of one process)."""
    if dist.enabled:
        per_batch = per_batch.to(dist.collective_device)
        distributed.sum_tensors_([per_batch], dist)
    return per_batch.sum(0).cpu()


def recalibrate(model: nn.Module, dataset, *, samples: int, batch_size: int,
                device: torch.device, dist: distributed.DistContext = distributed.DistContext()
                ) -> int:
    """:func:`recalibrate_on` the first ``samples`` items of ``dataset`` (un-augmented
    ``(image [3, H, W], label)``, batches of ``batch_size``, this rank's share under ``dist``).
    Returns the number of samples used (``min(samples, len(dataset))``)."""
    n = min(samples, len(dataset))
    recalibrate_on(model, first_samples(dataset, n, batch_size, device, materialise=False,
                                        dist=dist))
    return n


@torch.no_grad()
def recalibrate_on(model: nn.Module, batches: Batches) -> None:
    """Replace every BatchNorm's running statistics of ``model`` (in place) by the average,
    over the batches of ``batches``, of each batch's per-channel mean and unbiased variance of
    the layer's input; BatchNorm in train mode, everything else in eval mode, no gradient;
    ``num_batches_tracked`` = the number of batches. Modes are restored."""
    layers = bn_layers(model)
    n_batches = -(-batches.n // batches.batch_size)
    sums = [torch.zeros(2, n_batches, m.num_features, dtype=torch.float64, device=batches.device)
            for m in layers]
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()      # finite start: 0·old + 1·batch is then exact
        m.train()
        m.momentum = 1.0             # the running buffers then hold exactly the batch's statistics
    try:
        for index, x, _ in _indexed(batches):
            model(x)
            for m, s in zip(layers, sums):
                s[0, index] = m.running_mean
                s[1, index] = m.running_var
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    for m, s in zip(layers, sums):
        total = _in_batch_order(s.transpose(0, 1).contiguous(), batches.dist) / n_batches
        m.running_mean.copy_(total[0].to(m.running_mean.device))
        m.running_var.copy_(total[1].to(m.running_var.device))
        m.num_batches_tracked.fill_(n_batches)


def accuracy_and_loss(model: nn.Module, dataset, n: int, batch_size: int, device: torch.device,
                      dist: distributed.DistContext = distributed.DistContext()
                      ) -> tuple[float, float]:
    """Eval-mode top-1 accuracy (fraction) and mean cross-entropy (nats) over the first ``n``
    samples of ``dataset``; per-batch sums combined in batch order over the ranks (the bits of
    one process). The training flag is restored."""
    batches = first_samples(dataset, n, batch_size, device, materialise=False, dist=dist)
    was_training = model.training
    model.eval()
    per_batch = torch.zeros(-(-n // batch_size), 2, dtype=torch.float64)
    with torch.no_grad():
        for index, x, y in _indexed(batches):
            logits = model(x).float()
            per_batch[index, 0] = float((logits.argmax(1) == y).sum())
            per_batch[index, 1] = float(nn.functional.cross_entropy(logits, y, reduction="sum")
                                        .double())
    model.train(was_training)
    correct, loss = (float(v) for v in _in_batch_order(per_batch, dist))
    return correct / n, loss / n
