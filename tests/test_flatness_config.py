"""HessianConfig / PerturbationConfig validation, and run_flatness refusing bad settings early."""
import pytest
import torch
from torch import nn

from flatkd.config import apply_overrides
from flatkd.errors import FlatkdError
from flatkd.flatness.config import HessianConfig, PerturbationConfig
from flatkd.flatness.suite import run_flatness


def test_defaults_are_valid_and_documented_values():
    h, p = HessianConfig(), PerturbationConfig()
    h.validate()
    p.validate()
    assert (h.samples, h.top_k, h.backend, h.trace_estimator, h.bn_mode) == \
        (256, 5, "native", "auto", "eval")
    assert p.sigmas[0] == 0.0 and p.mode == "absolute" and p.data == "hessian"


@pytest.mark.parametrize("key,value,needle", [
    ("top_k", 0, ">= 1"),
    ("samples", -3, ">= 1"),
    ("backend", "scipy", "native, pyhessian"),
    ("trace_estimator", "lanczos", "auto, deflated, gauss-newton, hutch++, hutchinson, xtrace"),
    ("bn_mode", "frozen", "eval, train"),
    ("trace_hvps", 2, ">= 6"),
    ("density_width", 0.0, "> 0"),
    ("tol", float("nan"), "> 0"),
    ("max_iter", 5, "top_k + 2"),
])
def test_bad_hessian_settings_name_the_valid_values(key, value, needle):
    cfg = HessianConfig(**{key: value})
    with pytest.raises(FlatkdError, match=f"hessian.{key}") as e:
        cfg.validate()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_pyhessian_backend_refuses_train_mode_batchnorm():
    with pytest.raises(FlatkdError, match="valid choices with backend=pyhessian: eval"):
        HessianConfig(backend="pyhessian", bn_mode="train").validate()


@pytest.mark.parametrize("key,value,needle", [
    ("sigmas", [], "at least one"),
    ("sigmas", [0.0, -0.1], ">= 0"),
    ("repeats", 0, ">= 1"),
    ("mode", "layer", "absolute, filter"),
    ("data", "test", "hessian, train"),
])
def test_bad_perturbation_settings_name_the_valid_values(key, value, needle):
    with pytest.raises(FlatkdError, match=f"perturbation.{key}") as e:
        PerturbationConfig(**{key: value}).validate()
    assert needle in str(e.value)


def test_set_overrides_are_coerced():
    h = apply_overrides(HessianConfig(), {"samples": "128", "backend": "pyhessian", "tol": "1e-3"})
    p = apply_overrides(PerturbationConfig(), {"sigmas": "0,0.01,0.1", "perturb_bn_bias": "false"})
    assert (h.samples, h.backend, h.tol) == (128, "pyhessian", 1e-3)
    assert p.sigmas == [0.0, 0.01, 0.1] and p.perturb_bn_bias is False


class CountingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("hcfg,needle", [
    (HessianConfig(samples=11), "hessian.samples=11 exceeds the train split (10 samples); valid values: 1..10"),
    (HessianConfig(samples=4, top_k=16), "hessian.top_k=16 exceeds the number of parameters (15)"),
    (HessianConfig(samples=4, backend="nope"), "valid choices: native, pyhessian"),
])
def test_run_flatness_refuses_before_any_work(hcfg, needle):
    model = CountingNet()
    ds = torch.utils.data.TensorDataset(torch.rand(10, 1, 2, 2), torch.zeros(10, dtype=torch.long))
    with pytest.raises(FlatkdError) as e:
        run_flatness(model, ds, hcfg, PerturbationConfig(), seed=0, device=torch.device("cpu"),
                     batch_size=4, progress=False)
    assert needle in str(e.value) and model.calls == 0
