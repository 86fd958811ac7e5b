"""The one place that calls PyHessian 0.1 (``from pyhessian import hessian``), guarding its
defects (listed below). Each guard has a test in tests/test_flatness_pyhessian.py, and each
quirk a test that fails if upstream changes.

Quirks and guards:

1. ``cuda=True`` is the default → the device is always passed explicitly.
2. ``density()`` calls ``torch.eig`` (removed from torch) → during ``density()`` the module-level
   name ``torch`` inside ``pyhessian.hessian`` is swapped for a proxy adding an ``eig`` built on
   ``torch.linalg.eigh`` (T is symmetric), then put back; torch itself is never patched.
3. ``trace()`` stops on ``|mean − prev| / (prev + 1e-6) < tol`` with the *signed* trace, so a
   negative or small trace stops after 2–6 probes → called with ``tol=-inf`` (never stops early)
   and a fixed probe count; mean and standard error are computed here.
4. The constructor calls ``model.eval()`` and leaves it so → modes, requires_grad, .grad and
   buffers are restored by :func:`flatkd.flatness.state.preserved`.
5. ``eigenvalues()`` is power iteration: it returns eigenvalues in order of |λ|, so a large
   negative eigenvalue displaces the largest positive ones → more are requested until
   ``top_k`` non-negative ones are found (after k of them, every later one is smaller in
   modulus, so those are the k largest λ), then the list is sorted descending.
6. It draws from the global torch RNG → calls run under ``torch.random.fork_rng`` seeded with
   the given seed: reproducible, and the caller's global RNG state is untouched.
7. The double-backward graph lives in ``param.grad`` and the object's ``gradsH`` (and ``.grad``
   already present is silently *added* to the gradient) → ``.grad`` is cleared before, the
   object's references are dropped and ``.grad`` restored afterwards (frees the graph).
"""
from __future__ import annotations

import contextlib
import math
import sys
import types
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attention_compat import second_order_attention
from .state import preserved


def _eig_from_eigh(T: torch.Tensor, eigenvectors: bool = False):
    """Old ``torch.eig`` contract for a symmetric T: (values [n, 2] real|imag, vectors [n, n])."""
    vals, vecs = torch.linalg.eigh(T)
    return torch.stack([vals, torch.zeros_like(vals)], dim=1), vecs


class _TorchWithEig(types.ModuleType):
    """Forwards every attribute to ``torch``; ``eig`` is set on the instance."""

    def __getattr__(self, name: str):
        return getattr(torch, name)


@contextlib.contextmanager
def _torch_eig_available() -> Iterator[None]:
    """Guard 2: give ``pyhessian.hessian`` a ``torch`` namespace with ``eig``, then restore it."""
    import pyhessian  # noqa: F401  (the package's __init__ shadows the submodule's name)

    module = sys.modules["pyhessian.hessian"]
    original = module.torch
    proxy = _TorchWithEig("torch")
    proxy.eig = _eig_from_eigh
    module.torch = proxy
    try:
        yield
    finally:
        module.torch = original


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Guard 6: a private, seeded global RNG stream; the caller's state comes back afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class PyHessian:
    """PyHessian on one batch (graph reused) or a list of batches (graph rebuilt per product),
    loss ``criterion(model(x), y)`` (mean cross-entropy by default), with all guards applied.

    Use as a context manager: on exit the graph is released and the model restored.
    """

    def __init__(self, model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                 device: torch.device, criterion: Callable = F.cross_entropy):
        self.model = model
        self.criterion = criterion
        self.batches = batches
        self.device = device
        self._stack = contextlib.ExitStack()
        self._h = None

    def __enter__(self) -> "PyHessian":
        from pyhessian import hessian

        self._stack.enter_context(preserved(self.model))             # guards 4 and 7 (.grad)
        self._stack.enter_context(second_order_attention())   # double backward through ViTs
        cuda = self.device.type == "cuda"                               # guard 1
        try:
            if len(self.batches) == 1:
                self._h = hessian(self.model, self.criterion, data=self.batches[0], cuda=cuda)
            else:
                self._h = hessian(self.model, self.criterion, dataloader=self.batches, cuda=cuda)
        except BaseException:
            for p in self.model.parameters():
                p.grad = None
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._h.gradsH = None                                          # guard 7
        self._h.params = None
        self._h = None
        for p in self.model.parameters():
            p.grad = None
        self._stack.close()

    def top_eigenvalues(self, k: int, *, tol: float, max_iter: int, seed: int) -> list[float]:
        """The k largest λ, descending (guard 5), seeded (guard 6)."""
        dim = sum(p.numel() for p in self.model.parameters())
        n = k
        while True:
            with _seeded(seed, self.device):
                values, _ = self._h.eigenvalues(maxIter=max_iter, tol=tol, top_n=n)
            non_negative = [v for v in values if v >= 0]
            if len(non_negative) >= k or n >= dim:
                return sorted(values, reverse=True)[:k]
            n = min(dim, n + k - len(non_negative))

    def trace_samples(self, n_probes: int, *, seed: int) -> list[float]:
        """PyHessian's Hutchinson samples zᵀHz, exactly ``n_probes`` of them (guard 3), seeded."""
        with _seeded(seed, self.device):
            return [float(s) for s in self._h.trace(maxIter=n_probes, tol=-math.inf)]

    def trace(self, n_probes: int, *, seed: int) -> dict:
        """Hutchinson trace from ``trace_samples``: mean, stderr, n_hvp."""
        samples = self.trace_samples(n_probes, seed=seed)
        mean = float(np.mean(samples))
        stderr = float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
        return {"mean": mean, "stderr": stderr, "n_hvp": len(samples)}

    def density_nodes(self, steps: int, probes: int, *, seed: int
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """SLQ nodes and weights per probe (guard 2), seeded (guard 6)."""
        with _seeded(seed, self.device), _torch_eig_available():
            nodes, weights = self._h.density(iter=steps, n_v=probes)
        return ([np.asarray(n, dtype=np.float64) for n in nodes],
                [np.asarray(w, dtype=np.float64) for w in weights])
