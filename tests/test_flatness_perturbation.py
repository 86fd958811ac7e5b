"""Gaussian parameter-perturbation curves: σ=0 exact, model restored bit-exactly, both modes."""
import copy

import pytest
import torch
from torch import nn

from flatkd.flatness.config import PerturbationConfig
from flatkd.flatness.data import first_samples
from flatkd.flatness.perturbation import direction, evaluate, perturbation_curve

CPU = torch.device("cpu")
KEYS = {"sigma", "loss_mean", "loss_std", "acc_mean", "acc_std", "repeats"}


def net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5))
    m.train()
    with torch.no_grad():
        m(torch.rand(32, 3, 8, 8))
    return m


def batches(n=40):
    g = torch.Generator().manual_seed(1)
    ds = torch.utils.data.TensorDataset(torch.rand(n, 3, 8, 8, generator=g),
                                        torch.randint(0, 5, (n,), generator=g))
    return first_samples(ds, n, 16, CPU)


@pytest.mark.parametrize("mode", ["absolute", "filter"])
def test_sigma_zero_exact_and_model_restored_bit_exactly(mode):
    model = net()                                   # in train mode: must come back so
    before = copy.deepcopy(model.state_dict())
    b = batches()
    cfg = PerturbationConfig(sigmas=[0.0, 0.05, 0.0, 0.5], repeats=3, mode=mode)
    rows = perturbation_curve(model, b, cfg, seed=0)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    loss, acc = evaluate(model, b)
    assert [set(r) for r in rows] == [KEYS] * 4
    for r in (rows[0], rows[2]):
        assert (r["loss_mean"], r["acc_mean"], r["loss_std"], r["repeats"]) == (loss, acc, 0.0, 1)
    assert rows[1]["repeats"] == 3 and rows[1]["loss_std"] > 0
    assert rows[3]["loss_mean"] > max(rows[1]["loss_mean"], loss)
    assert 0.0 <= rows[3]["acc_mean"] <= 1.0


def test_same_seed_same_rows_and_common_directions_across_sigmas():
    cfg = PerturbationConfig(sigmas=[0.01, 0.02], repeats=2)
    a = perturbation_curve(net(), batches(), cfg, seed=5)
    assert a == perturbation_curve(net(), batches(), cfg, seed=5)
    assert a != perturbation_curve(net(), batches(), cfg, seed=6)


def test_filter_direction_has_the_filter_norms_of_the_weights():
    model = net()
    params = list(model.parameters())
    for p, d in zip(params, direction(params, "filter", torch.Generator().manual_seed(0))):
        rows = (lambda t: t.reshape(t.shape[0], -1)) if p.dim() > 1 else (lambda t: t.reshape(1, -1))
        assert torch.allclose(rows(d).norm(dim=1), rows(p.detach()).norm(dim=1), rtol=1e-5)


@pytest.mark.parametrize("include", [True, False])
def test_bn_bias_switch(include):
    model = nn.Linear(4, 3)                         # x = 0: logits are the bias alone
    ds = torch.utils.data.TensorDataset(torch.zeros(8, 4), torch.arange(8) % 3)
    cfg = PerturbationConfig(sigmas=[0.0, 1.0], repeats=3, perturb_bn_bias=include)
    rows = perturbation_curve(model, first_samples(ds, 8, 8, CPU), cfg, seed=0)
    changed = rows[1]["loss_std"] > 0
    assert changed is include
