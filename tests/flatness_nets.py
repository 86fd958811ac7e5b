"""Small nets, data and exact float64 Hessians shared by the flatness tests."""
import copy
import functools

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, hessian

from flatkd.flatness.state import set_bn_mode

N = 32


def conv_bn_net() -> nn.Module:
    """Conv → BN → ReLU → pool → linear, 5 classes, seeded, in eval mode (default BN statistics)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)).eval()


def random_images(n: int) -> torch.utils.data.TensorDataset:
    """``n`` seeded random [3, 8, 8] images in [0, 1] with labels in 0..4."""
    g = torch.Generator().manual_seed(1)
    return torch.utils.data.TensorDataset(torch.rand(n, 3, 8, 8, generator=g),
                                          torch.randint(0, 5, (n,), generator=g))


def conv_bn() -> nn.Module:
    """The conv + BN net of :func:`conv_bn_net` with non-trivial running statistics (205 params)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5))
    m.train()
    with torch.no_grad():                       # non-trivial running statistics
        m(torch.rand(64, 3, 8, 8) * 2)
    return m.eval()


def mlp() -> nn.Module:
    """192 → 4 (tanh) → 5, seeded (797 params)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4), nn.Tanh(), nn.Linear(4, 5)).eval()


def dataset() -> torch.utils.data.Dataset:
    """``N`` seeded random [3, 8, 8] images with labels in 0..4 (the Hessian's sample set)."""
    g = torch.Generator().manual_seed(2)
    return torch.utils.data.TensorDataset(torch.rand(N, 3, 8, 8, generator=g),
                                          torch.randint(0, 5, (N,), generator=g))


def exact_hessian(model: nn.Module, bn_mode: str = "eval") -> np.ndarray:
    """Dense float64 Hessian of the mean cross-entropy on the whole :func:`dataset` as one batch.

    torch.func.hessian in eval mode. In train mode torch.func (jacfwd or jacrev twice) returns
    an asymmetric, wrong Hessian through batch_norm with batch statistics (torch 2.14; checked
    against finite differences), so there the reference is torch.autograd.functional.hessian.
    """
    m64 = copy.deepcopy(model).double()
    set_bn_mode(m64, bn_mode)
    for m in m64.modules():                     # batch statistics without buffer updates
        if isinstance(m, nn.BatchNorm2d) and bn_mode == "train":
            m.track_running_stats = False
    x, y = dataset().tensors
    names, shapes = zip(*[(n, p.shape) for n, p in m64.named_parameters()])
    flat = torch.cat([p.detach().reshape(-1) for p in m64.parameters()])

    def loss(v):
        parts = torch.split(v, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return nn.functional.cross_entropy(functional_call(m64, params, (x.double(),)), y)

    if bn_mode == "train":
        return torch.autograd.functional.hessian(loss, flat).numpy()
    return hessian(loss)(flat).detach().numpy()


def sym(eigs, seed: int = 0) -> torch.Tensor:
    """A dense float64 symmetric matrix with eigenvalues ``eigs`` in a seeded random basis."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(list(eigs), dtype=torch.float64)) @ q.T


@functools.lru_cache(maxsize=None)
def exact_spectrum(name: str) -> tuple[torch.Tensor, np.ndarray]:
    """(H [P, P] float64 symmetrised, eigenvalues descending) of ``conv_bn`` or ``mlp`` on
    :func:`dataset`; computed once per test session."""
    h = torch.from_numpy(exact_hessian({"conv_bn": conv_bn, "mlp": mlp}[name]()))
    h = (h + h.T) / 2
    return h, np.linalg.eigvalsh(h.numpy())[::-1].copy()
