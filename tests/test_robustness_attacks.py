"""FGSM and PGD through foolbox: perturbations within ε and the pixel bounds, FGSM equal to its
closed form, PGD reproducible from the evaluation seed, restarts never raise accuracy, rows in
the result format."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatkd.errors import FlatkdError
from flatkd.robustness.attacks import (AttackSettings, attack_rows, fgsm_batch, pgd_batch,
                                       pgd_stepsize)
from flatkd.robustness.config import RobustnessConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def net_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                          nn.Flatten(), nn.Linear(128, 4)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 3, 16, 16, generator=g)
    x[:4] = 0.0                                          # corners of the box: clipping matters
    x[4:8] = 1.0
    with torch.no_grad():
        y = model(x).argmax(1)                           # all clean-correct
    return model, x, y


@pytest.mark.crosslib
def test_fgsm_is_the_clipped_sign_step(net_and_data):
    model, x, y = net_and_data
    eps = 8 / 255
    x_adv, _ = fgsm_batch(model, x, y, epsilon=eps, device=CPU)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    want = (x + eps * g.sign()).clamp(0, 1)
    assert torch.allclose(x_adv, want, atol=1e-6)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_stays_in_the_ball_and_is_reproducible(net_and_data):
    model, x, y = net_and_data
    eps = 4 / 255
    a, adv_a = pgd_batch(model, x, y, epsilon=eps, stepsize=pgd_stepsize(eps, 5), steps=5,
                         seed=11, device=CPU)
    b, _ = pgd_batch(model, x, y, epsilon=eps, stepsize=pgd_stepsize(eps, 5), steps=5, seed=11,
                     device=CPU)
    c, _ = pgd_batch(model, x, y, epsilon=eps, stepsize=pgd_stepsize(eps, 5), steps=5, seed=12,
                     device=CPU)
    assert torch.equal(a, b) and not torch.equal(a, c)          # seeded random start
    assert (a - x).abs().max() <= eps + 1e-6 and a.min() >= 0 and a.max() <= 1
    state = torch.get_rng_state()
    pgd_batch(model, x, y, epsilon=eps, stepsize=eps, steps=1, seed=3, device=CPU)
    assert torch.equal(torch.get_rng_state(), state)            # caller's RNG untouched


def test_attack_rows_format_and_restarts(net_and_data):
    model, x, y = net_and_data
    s1 = AttackSettings(epsilons=[2.0, 16.0], bim_protocol="kurakin", pgd_steps=4,
                        pgd_restarts=1, seed=0)
    rows = attack_rows(model, x, y, ["fgsm", "pgd", "bim"], s1, device=CPU, batch_size=10,
                       progress=False)
    assert [r["attack"] for r in rows] == ["FGSM", "FGSM", "PGD", "PGD", "BIM", "BIM"]
    assert [r["epsilon"] for r in rows[:2]] == [2 / 255, 16 / 255]
    assert rows[0]["steps"] == 1 and rows[0]["stepsize"] == 2 / 255
    assert rows[2]["steps"] == 4 and rows[2]["restarts"] == 1
    assert rows[2]["stepsize"] == pytest.approx(2.5 * 2 / 255 / 4)
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    assert rows[1]["accuracy"] <= rows[0]["accuracy"] and rows[3]["accuracy"] <= rows[2]["accuracy"]
    s3 = AttackSettings(epsilons=[2.0, 16.0], bim_protocol="kurakin", pgd_steps=4,
                        pgd_restarts=3, seed=0)
    more = attack_rows(model, x, y, ["pgd"], s3, device=CPU, batch_size=10, progress=False)
    # restart 0 is the same run as before; more restarts can only fool more images
    assert all(m["accuracy"] <= r["accuracy"] for m, r in zip(more, rows[2:4]))


def test_attack_names_are_validated():
    RobustnessConfig(attacks=["bim", "fgsm", "pgd"]).validate()
    with pytest.raises(FlatkdError, match="bim, fgsm, pgd"):
        RobustnessConfig(attacks=["cw"]).validate()
    with pytest.raises(FlatkdError, match="pgd_restarts"):
        RobustnessConfig(pgd_restarts=0).validate()
