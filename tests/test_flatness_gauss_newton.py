"""The exact Gauss–Newton trace of piecewise-linear nets: equal to the exact Hessian trace, the
structural check that guards it, ``auto`` resolution, refusal, and torchrun sharding."""
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import flatkd.models as models
from flatkd.errors import FlatkdError
from flatkd.flatness.backends import HESSIAN_BACKENDS
from flatkd.flatness.config import HessianConfig
from flatkd.flatness.data import first_samples
from flatkd.flatness.gauss_newton import (gauss_newton_trace, not_piecewise_linear,
                                          register_piecewise_linear)
from flatkd.flatness.hvp import HessianOperator
from flatkd.flatness.state import preserved, set_bn_mode
from flatkd.flatness.trace import TRACE_ESTIMATORS, resolve_estimator
from flatkd.training.distributed import DistContext

from flatness_nets import N, conv_bn, dataset, exact_spectrum, mlp
from test_distributed import WORLD, free_port

CPU = torch.device("cpu")


def f64_data(batch_size: int = 10):
    x, y = dataset().tensors
    return first_samples(torch.utils.data.TensorDataset(x.double(), y), N, batch_size, CPU)


def test_gauss_newton_trace_is_the_hessian_trace_of_a_relu_net_only():
    """ReLU + BatchNorm(eval) net: tr(H) = tr(GGN) exactly (the residual has a zero diagonal),
    however the (sample, class) pairs are chunked; the tanh MLP: they differ, and the check
    says why."""
    exact = float(torch.trace(exact_spectrum("conv_bn")[0]))
    for max_values in (2 ** 25, 205, 1):                 # all pairs at once … one pair per call
        assert gauss_newton_trace(conv_bn().double(), f64_data(), max_values=max_values) \
            == pytest.approx(exact, rel=1e-12)
    tanh = gauss_newton_trace(mlp().double(), f64_data())
    assert abs(tanh - float(torch.trace(exact_spectrum("mlp")[0]))) > 0.1 * abs(tanh)
    assert not_piecewise_linear(conv_bn()) == []
    assert not_piecewise_linear(mlp()) == ["2 (Tanh)"]


def test_structural_check_flags_batch_statistics_and_unknown_blocks():
    net = conv_bn()
    set_bn_mode(net, "train")
    assert not_piecewise_linear(net) == ["1 (BatchNorm2d in training mode)"]

    class Block(nn.Module):                 # its forward could do anything: not trusted
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return nn.functional.gelu(self.conv(x))

    model = nn.Sequential(Block(), nn.Flatten(), nn.Linear(192, 5)).eval()
    assert not_piecewise_linear(model) == ["0 (Block)"]
    register_piecewise_linear(Block)                    # a user vouches for a ReLU-only block
    try:
        assert not_piecewise_linear(model) == []
    finally:
        from flatkd.flatness import gauss_newton
        gauss_newton._PIECEWISE_LINEAR.discard(Block)


def test_the_cifar_resnets_qualify_and_the_vits_do_not():
    resnet = models.create("resnet8", 10, mean=(0.5,) * 3, std=(0.25,) * 3).eval()
    assert not_piecewise_linear(resnet) == []
    assert resolve_estimator("auto", resnet) == "gauss-newton"
    torch.manual_seed(0)
    vit = models.create("deit_tiny", 10, mean=(0.5,) * 3, std=(0.25,) * 3).eval()
    assert any("LayerNorm" in b or "GELU" in b for b in not_piecewise_linear(vit))
    assert resolve_estimator("auto", vit) == "deflated"


def test_resnet_block_trace_matches_deflated_estimate():
    """A real ResNet-8 (torchvision BasicBlocks, residual sums, BN eval) on 16 digits-like
    images: the exact trace lies within 3 stderr of an HVP-based estimate with 200 products."""
    torch.manual_seed(0)
    model = models.create("resnet8", 5, mean=(0.5,) * 3, std=(0.25,) * 3)
    model.train()
    with torch.no_grad():                                  # non-trivial running statistics
        model(torch.rand(32, 3, 8, 8))
    model.eval()
    x, y = dataset().tensors
    data = first_samples(torch.utils.data.TensorDataset(x[:16], y[:16]), 16, 16, CPU)
    exact = gauss_newton_trace(model, data)
    with preserved(model):
        set_bn_mode(model, "eval")
        with HessianOperator(model, data, cache_graphs=True) as op:
            est = TRACE_ESTIMATORS.get("deflated")(op.matvec, op.dim, 200,
                                                   generator=torch.Generator().manual_seed(0),
                                                   dtype=op.dtype, device=CPU)
    assert est.stderr > 0 and abs(est.mean - exact) <= 3 * est.stderr


def test_explicit_gauss_newton_is_refused_where_it_is_not_exact():
    for model, bn_mode, named in ((mlp(), "eval", "Tanh"),
                                  (conv_bn(), "train", "BatchNorm2d in training mode")):
        cfg = HessianConfig(samples=N, top_k=2, trace_estimator="gauss-newton", bn_mode=bn_mode,
                            slq_steps=4)
        calls = []
        matvec = HessianOperator.matvec
        try:
            HessianOperator.matvec = lambda op, v: (calls.append(1), matvec(op, v))[1]
            with pytest.raises(FlatkdError) as err:
                HESSIAN_BACKENDS.get("native")(model, first_samples(dataset(), N, N, CPU), cfg,
                                               seed=0)
        finally:
            HessianOperator.matvec = matvec
        msg = str(err.value)
        assert named in msg and "valid choices for this model: auto, deflated, hutch++" in msg
        assert calls == []                                   # refused before any product
    assert resolve_estimator("auto", mlp()) == "deflated"
    assert resolve_estimator("xtrace", conv_bn()) == "xtrace"


def _two_rank_trace(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    x, y = dataset().tensors
    data = first_samples(torch.utils.data.TensorDataset(x.double(), y), N, 10, CPU,
                         dist=DistContext(rank, WORLD))
    out[rank] = (gauss_newton_trace(conv_bn().double(), data), len(data.share))
    torch.distributed.destroy_process_group()


def test_sharded_over_two_ranks_equals_one_process():
    out = mp.Manager().dict()
    mp.spawn(_two_rank_trace, args=(free_port(), out), nprocs=WORLD, join=True)
    exact = gauss_newton_trace(conv_bn().double(), f64_data())
    shares = sorted(n for _, n in out.values())
    assert shares[0] > 0 and sum(shares) == N               # each rank its own samples
    assert all(t == pytest.approx(exact, rel=1e-12) for t, _ in out.values())


def test_progress_counts_the_samples_and_the_product_plan_has_no_probes(monkeypatch):
    """``auto`` on a ReLU/BN net: the products bar plans the shared Lanczos run alone, and the
    exact trace shows its own bar over the samples."""
    import flatkd.flatness.backends as backends
    import flatkd.flatness.gauss_newton as gauss_newton

    bars = []

    class Bar:
        def __init__(self, total, desc, **kw):
            self.total, self.desc, self.n = total, desc, 0
            bars.append(self)

        def update(self, k):
            self.n += k

        def refresh(self):
            pass

        close = refresh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(backends, "tqdm", Bar)
    monkeypatch.setattr(gauss_newton, "tqdm", Bar)
    cfg = HessianConfig(samples=N, top_k=2, slq_steps=8)
    res = backends.native(conv_bn(), first_samples(dataset(), N, 10, CPU), cfg, seed=0,
                          progress=True)
    products, samples = bars
    assert res["trace_estimator"] == "gauss-newton"
    assert products.n == products.total == res["n_hvp_total"] == res["lanczos_steps"]
    assert samples.desc.startswith("gauss-newton") and samples.n == samples.total == N
