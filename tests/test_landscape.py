"""Loss-landscape slices and linear paths: filter normalisation, zero BN/bias directions, the
origin reproducing the unperturbed loss exactly, consistent 1-D/2-D slices, path endpoints,
barriers and BatchNorm recomputation."""
import copy

import pytest
import torch
from torch import nn

from flatkd.errors import FlatkdError
from flatkd.flatness.data import first_samples
from flatkd.flatness.perturbation import evaluate
from flatkd.landscape.config import LandscapeConfig
from flatkd.batchnorm import recalibrate_on
from flatkd.landscape.path import linear_path
from flatkd.landscape.slices import filter_direction, filter_norms, grid, slices

from flatness_nets import conv_bn_net, random_images

CPU = torch.device("cpu")


@pytest.fixture
def setup():
    model = conv_bn_net()
    with torch.no_grad():                       # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    batches = first_samples(random_images(40), 40, 16, CPU)
    return model, batches


def test_filter_normalised_directions(setup):
    model, _ = setup
    base = [p.detach() for p in model.parameters()]
    d = filter_direction(base, torch.Generator().manual_seed(0))
    for got, want in zip(filter_norms(d), filter_norms(base)):
        assert torch.allclose(got, want, rtol=1e-5, atol=0)     # each filter's norm = weight's
    for t, p in zip(d, base):
        if p.dim() == 1:                                          # BN affine and biases
            assert torch.count_nonzero(t) == 0
    assert sum(p.dim() > 1 for p in base) == 2 and sum(p.dim() == 1 for p in base) == 4


def test_grid_holds_the_origin_exactly():
    g = grid(21, 0.7)
    assert len(g) == 21 and g[10] == 0.0 and g[0] == -0.7 and g[-1] == 0.7


def test_slice_origin_reproduces_the_unperturbed_loss_exactly(setup):
    model, batches = setup
    before = copy.deepcopy(model.state_dict())
    loss0, acc0 = evaluate(model, batches)
    out = slices(model, batches, ["1d", "2d"], resolution=5, span=0.5,
                 generator=torch.Generator().manual_seed(0))
    assert out["origin"] == {"loss": loss0, "accuracy": acc0}
    assert out["1d"]["loss"][2] == loss0 and out["2d"]["loss"][2][2] == loss0
    # the 2-D slice's β = 0 column is the 1-D slice (same first direction)
    assert [row[2] for row in out["2d"]["loss"]] == out["1d"]["loss"]
    assert max(out["1d"]["loss"]) > loss0                        # the slice does move
    assert abs(out["directions"]["cosine_d1_d2"]) < 0.5
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])                          # restored bit-exactly


def test_same_seed_same_slice(setup):
    model, batches = setup
    a = slices(model, batches, ["1d"], resolution=3, span=1.0,
               generator=torch.Generator().manual_seed(5))
    b = slices(model, batches, ["1d"], resolution=3, span=1.0,
               generator=torch.Generator().manual_seed(5))
    assert a == b


def test_path_endpoints_barrier_and_restoration(setup):
    model, batches = setup
    partner = conv_bn_net()
    with torch.no_grad():
        for p in partner.parameters():
            p.add_(0.5 * torch.randn_like(p))
    before = copy.deepcopy(model.state_dict())
    out = linear_path(model, partner, batches, batches, points=5, bn="interpolate")
    assert out["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert out["loss"][0] == evaluate(model, batches)[0]
    assert out["loss"][-1] == pytest.approx(evaluate(partner, batches)[0], rel=1e-6)
    b = out["barrier"]
    chord = [(1 - t) * out["loss"][0] + t * out["loss"][-1] for t in out["t"]]
    assert b["loss"] == pytest.approx(max(l - c for l, c in zip(out["loss"], chord)))
    assert b["loss"] >= 0 and b["accuracy"] >= 0              # the endpoints count: gap 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    self_path = linear_path(model, copy.deepcopy(model), batches, batches, points=3,
                            bn="interpolate")
    assert self_path["barrier"]["loss"] == pytest.approx(0.0, abs=1e-6)


def test_recomputed_batchnorm_statistics_are_the_data_statistics(setup):
    model, batches = setup
    recalibrate_on(model, first_samples(random_images(40), 40, 40, CPU))
    x = torch.cat([b[0] for b in batches])
    feats = model[0](x)
    bn = model[1]
    assert torch.allclose(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, feats.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4)
    assert not model.training


def test_incompatible_partner_is_refused(setup):
    model, batches = setup
    other = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5))
    with pytest.raises(FlatkdError, match="same architecture"):
        linear_path(model, other, batches, batches, points=3, bn="recompute")


@pytest.mark.parametrize("key,value,needle", [
    ("resolution", 20, "odd"), ("slices", ["3d"], "1d, 2d"), ("span", 0.0, "> 0"),
    ("path_bn", "keep", "recompute, interpolate"), ("path_points", 1, ">= 2")])
def test_bad_landscape_settings(key, value, needle):
    with pytest.raises(FlatkdError, match=f"landscape.{key}") as e:
        LandscapeConfig(**{key: value}).validate()
    assert needle in str(e.value)
