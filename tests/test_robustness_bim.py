"""BIM: schedules, foolbox quirks, L∞ bound, accuracy ordering, agreement with plain torch."""
import pytest
import torch
from torch import nn

import flatkd.datasets
from flatkd.errors import FlatkdError
from flatkd.robustness.bim import BimSchedule, bim_reference, bim_rows, kurakin, schedules
from flatkd.robustness.foolbox_compat import fb, linf_bim
from flatkd.robustness.suite import accuracy, collect

CPU = torch.device("cpu")


def tiny_net(seed=0):
    """Digits are upscaled 8x8 images: pool back to 8x8, one conv, a linear classifier."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def train_tiny_net(x, y, steps=150):
    """``tiny_net`` fitted full-batch on (x, y) (about a second on CPU)."""
    model = tiny_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def setup():
    """The attack is tested on the data the model was fitted on (mechanics, not generalisation)."""
    x, y = collect(flatkd.datasets.get("digits", split="test"))
    return train_tiny_net(x, y), x, y


def test_kurakin_schedule():
    got = [(s.steps, s.stepsize) for s in schedules([0.5, 1, 2, 4, 8], "kurakin")]
    assert got == [(1, 1 / 255), (1, 1 / 255), (2, 1 / 255), (5, 1 / 255), (10, 1 / 255)]
    assert kurakin(0).steps == 1 and kurakin(2).epsilon == 2 / 255
    assert kurakin(16).steps == 20  # min(16 + 4, 1.25 * 16)


def test_foolbox_default_schedule():
    (s,) = schedules([4], "foolbox-default")
    assert s == BimSchedule(epsilon=4 / 255, stepsize=0.2 * 4 / 255, steps=10)


def test_unknown_protocol_names_valid_ones():
    with pytest.raises(FlatkdError, match="foolbox-default, kurakin"):
        schedules([1], "pgd")


def test_quirk_foolbox_asserts_on_out_of_bounds_input():
    model, x = tiny_net().eval(), torch.rand(4, 3, 32, 32)
    attack = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=1 / 255, steps=1)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=CPU)
    with pytest.raises(AssertionError):
        attack(fmodel, x.index_fill(0, torch.tensor([0]), 1 + 1e-6),
               torch.zeros(4, dtype=torch.long), epsilons=1 / 255)
    x_adv, _ = linf_bim(model, x.index_fill(0, torch.tensor([0]), 1 + 1e-6),
                        torch.zeros(4, dtype=torch.long), epsilon=1 / 255,
                        stepsize=1 / 255, steps=1, device=CPU)
    assert x_adv.max() <= 1


def test_quirk_foolbox_does_not_cast_float64():
    model, x = tiny_net().eval(), torch.rand(4, 3, 32, 32, dtype=torch.float64)
    attack = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=1 / 255, steps=1)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=CPU)
    with pytest.raises(RuntimeError, match="should be the same"):
        attack(fmodel, x, torch.zeros(4, dtype=torch.long), epsilons=1 / 255)
    x_adv, _ = linf_bim(model, x, torch.zeros(4, dtype=torch.long), epsilon=1 / 255,
                        stepsize=1 / 255, steps=1, device=CPU)
    assert x_adv.dtype == torch.float32


def test_quirk_foolbox_default_device_is_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert fb.models.pytorch.get_device(None) == torch.device("cuda:0")


def test_quirk_foolbox_imports_deprecated_scipy_namespace():
    with pytest.warns(DeprecationWarning, match="scipy.ndimage.filters"):
        from scipy.ndimage.filters import gaussian_filter  # noqa: F401


def test_perturbation_within_epsilon_and_bounds(setup):
    model, x, y = setup
    for eps255 in (1, 8):
        s = kurakin(eps255)
        x_adv, _ = linf_bim(model, x[:64], y[:64], epsilon=s.epsilon, stepsize=s.stepsize,
                            steps=s.steps, device=CPU)
        assert (x_adv - x[:64]).abs().max() <= s.epsilon + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_accuracy_ordering_and_eps_zero(setup):
    model, x, y = setup
    clean = accuracy(model, x, y, device=CPU, batch_size=128)
    assert clean > 0.8
    rows = bim_rows(model, x, y, schedules([0, 2, 16], "kurakin"), device=CPU, batch_size=128,
                    progress=False)
    accs = [r["accuracy"] for r in rows]
    assert accs[0] == clean
    assert accs[2] <= accs[1] <= clean and accs[2] < clean
    assert rows[1] == {"attack": "BIM", "epsilon": 2 / 255, "stepsize": 1 / 255, "steps": 2,
                       "accuracy": accs[1]}


@pytest.mark.crosslib
def test_foolbox_matches_plain_torch_bim(setup):
    model, x, y = setup
    s = kurakin(2)
    x_fb, is_adv = linf_bim(model, x, y, epsilon=s.epsilon, stepsize=s.stepsize, steps=s.steps,
                            device=CPU)
    x_ref = bim_reference(model, x, y, s)
    close = ((x_fb - x_ref).abs() <= 1e-5).float().mean()
    assert close > 0.999
    with torch.no_grad():
        acc_ref = (model(x_ref).argmax(1) == y).float().mean().item()
    assert abs(acc_ref - (1 - is_adv.float().mean().item())) <= 1 / len(y)
