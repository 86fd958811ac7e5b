"""PyHessian 0.1: one test per upstream quirk (fails if upstream changes) and one per guard in
flatkd.flatness.pyhessian_compat (fails if the guard is removed)."""
import copy
import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn
from pyhessian import hessian

from flatkd.flatness.backends import HESSIAN_BACKENDS
from flatkd.flatness.config import HessianConfig
from flatkd.flatness.data import first_samples
from flatkd.flatness.pyhessian_compat import PyHessian

from flatness_nets import conv_bn_net, random_images

CPU = torch.device("cpu")


class Quadratic(nn.Module):
    """model(x) = w; with ``criterion`` below the loss is ½ Σ d_i w_i², so H = diag(d)."""

    def __init__(self, d):
        super().__init__()
        self.d = torch.tensor(d)
        self.w = nn.Parameter(torch.ones(len(d)))

    def forward(self, x):
        return self.w


def criterion(out, d):
    return 0.5 * (d * out ** 2).sum()


def quad_batch(d):
    return [(torch.zeros(1), torch.tensor(d))]



def raw(model, d=None, **kw):
    """Upstream PyHessian on the quadratic (d given) or on ``net``/``data`` (CE)."""
    if d is not None:
        return hessian(model, criterion, data=quad_batch(d)[0], cuda=False, **kw)
    x, y = random_images(24).tensors
    return hessian(model, nn.functional.cross_entropy, data=(x, y), cuda=False, **kw)


# 1. cuda default ---------------------------------------------------------------------------------

def test_quirk_cuda_is_the_default():
    assert inspect.signature(hessian.__init__).parameters["cuda"].default is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_guard_device_is_passed_explicitly():
    with pytest.raises((AssertionError, RuntimeError)):
        hessian(conv_bn_net(), nn.functional.cross_entropy, data=random_images(24).tensors)
    with PyHessian(conv_bn_net(), [random_images(24).tensors], CPU) as ph:
        assert ph.trace(6, seed=0)["n_hvp"] == 6


# 2. torch.eig in density ---------------------------------------------------------------------------

def test_quirk_density_calls_removed_torch_eig():
    with pytest.raises((AttributeError, RuntimeError), match="eig|removed"):
        raw(conv_bn_net()).density(iter=5, n_v=1)


def test_guard_density_works_and_torch_is_not_patched():
    eig_before = torch.eig
    with PyHessian(Quadratic([4.0, 3.0, 2.0, 1.0, 0.5]), quad_batch([4.0, 3.0, 2.0, 1.0, 0.5]),
                   CPU, criterion=criterion) as ph:
        nodes, weights = ph.density_nodes(5, 1, seed=0)
    assert np.allclose(np.sort(nodes[0]), [0.5, 1.0, 2.0, 3.0, 4.0], atol=1e-4)
    assert weights[0].sum() == pytest.approx(1.0, abs=1e-5)
    assert torch.eig is eig_before
    import sys
    assert sys.modules["pyhessian.hessian"].torch is torch


# 3. trace stops on the signed trace ----------------------------------------------------------------

NEG = [-1.0, -2.0, -3.0, -4.0]


def test_quirk_trace_stops_early_on_a_negative_trace():
    samples = raw(Quadratic(NEG), NEG).trace(maxIter=50, tol=1e-3)
    assert len(samples) <= 6


def test_guard_trace_uses_the_full_probe_budget():
    with PyHessian(Quadratic(NEG), quad_batch(NEG), CPU, criterion=criterion) as ph:
        t = ph.trace(50, seed=0)
    assert t["n_hvp"] == 50
    assert t["mean"] == pytest.approx(sum(NEG), abs=1e-4) and t["stderr"] < 1e-4  # diagonal H


# 4. leaves the model in eval mode ------------------------------------------------------------------

def test_quirk_constructor_leaves_eval_mode():
    model = conv_bn_net().train()
    raw(model)
    assert not model.training


def test_guard_modes_restored():
    model = conv_bn_net().train()
    with PyHessian(model, [random_images(24).tensors], CPU) as ph:
        ph.trace(6, seed=0)
    assert all(m.training for m in model.modules())


# 5. power iteration returns the largest |λ| ----------------------------------------------------------

MIXED = [-5.0, 3.0, 2.0, 1.0, 0.5]


def test_quirk_power_iteration_finds_largest_modulus():
    torch.manual_seed(0)
    values, _ = raw(Quadratic(MIXED), MIXED).eigenvalues(top_n=1, tol=1e-6)
    assert values[0] == pytest.approx(-5.0, rel=1e-3)


def test_guard_top_eigenvalues_are_algebraic():
    with PyHessian(Quadratic(MIXED), quad_batch(MIXED), CPU, criterion=criterion) as ph:
        top = ph.top_eigenvalues(2, tol=1e-6, max_iter=200, seed=0)
    assert top == pytest.approx([3.0, 2.0], rel=1e-3)


# 6. global RNG ---------------------------------------------------------------------------------------

def test_quirk_uses_the_global_rng():
    h = raw(conv_bn_net())
    state = torch.get_rng_state()
    h.trace(maxIter=3, tol=-math.inf)
    assert not torch.equal(state, torch.get_rng_state())


def test_guard_seeded_and_global_rng_untouched():
    model, batch = conv_bn_net(), random_images(24).tensors
    state = torch.get_rng_state()
    with PyHessian(model, [batch], CPU) as ph:
        a = ph.trace(6, seed=3)
        b = ph.trace(6, seed=3)
        c = ph.trace(6, seed=4)
    assert torch.equal(state, torch.get_rng_state())
    assert a == b and a != c


# 7. the double-backward graph stays alive; stale .grad is added ------------------------------------

def test_quirk_graph_kept_in_param_grad_and_stale_grad_added():
    model = conv_bn_net()
    raw(model)
    assert any(p.grad is not None and p.grad.grad_fn is not None for p in model.parameters())
    fresh = [p.grad.detach().clone() for p in model.parameters()]
    h = raw(model)                                  # .grad from the first call is still there
    assert all(torch.allclose(g, 2 * f) for g, f in zip(h.gradsH, fresh))


def test_guard_graph_released_and_grads_restored():
    model = conv_bn_net()
    stale = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, s in zip(model.parameters(), stale):
        p.grad = s
    with PyHessian(model, [random_images(24).tensors], CPU) as ph:
        with_stale = ph.top_eigenvalues(1, tol=1e-4, max_iter=100, seed=0)
        handle = ph._h
    assert handle.gradsH is None and handle.params is None
    assert all(p.grad is s for p, s in zip(model.parameters(), stale))
    for p in model.parameters():
        p.grad = None
    with PyHessian(model, [random_images(24).tensors], CPU) as ph:
        clean = ph.top_eigenvalues(1, tol=1e-4, max_iter=100, seed=0)
    assert with_stale == clean


# the two backends agree ------------------------------------------------------------------------------

@pytest.mark.crosslib
def test_backends_agree_on_the_same_model():
    model = conv_bn_net()
    before = copy.deepcopy(model.state_dict())
    cfg = HessianConfig(samples=24, top_k=3, trace_hvps=60, slq_probes=1, slq_steps=20,
                        max_iter=200)
    out = {b: HESSIAN_BACKENDS.get(b)(model, first_samples(random_images(24), 24, 24, CPU), cfg, seed=0)
           for b in ("native", "pyhessian")}
    nat, pyh = out["native"], out["pyhessian"]
    assert set(nat) >= set(pyh) and pyh["backend"] == "pyhessian"
    assert np.allclose(pyh["top_eigenvalues"], nat["top_eigenvalues"], rtol=2e-3)
    se = math.hypot(nat["trace"]["stderr"], pyh["trace"]["stderr"])
    assert abs(nat["trace"]["mean"] - pyh["trace"]["mean"]) <= 3 * se
    for r in out.values():
        assert np.trapezoid(r["density"]["values"], r["density"]["grid"]) == pytest.approx(1, abs=1e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
