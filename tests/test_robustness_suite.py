"""run_robustness end to end on digits: SPEC §6 shape, determinism, cache reuse, sanity."""
import json

import pytest
import torch
from torch.utils.data import Subset

import flatkd.datasets
from flatkd.errors import FlatkdError
from flatkd.robustness import cache
from flatkd.robustness.config import RobustnessConfig
from flatkd.robustness.suite import collect, run_robustness, to_uint8_hwc
from test_robustness_bim import train_tiny_net

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup():
    test_set = Subset(flatkd.datasets.get("digits", split="test"), range(96))
    x, y = collect(test_set)
    return train_tiny_net(x, y), test_set


def _run(model, test_set, cache_dir, **cfg):
    return run_robustness(model, test_set, dataset_name="digits",
                          cfg=RobustnessConfig(severities=[1, 5], epsilons=[0, 2, 8],
                                               workers=2, **cfg),
                          seed=0, device=CPU, batch_size=64, progress=False, cache_dir=cache_dir)


def test_spec_section_determinism_and_cache(setup, tmp_path, monkeypatch):
    model, test_set = setup
    model.train()
    first = _run(model, test_set, tmp_path)
    assert model.training  # mode restored
    assert set(first) == {"clean_accuracy", "corruptions", "adversarial"}
    rows = first["corruptions"]
    assert [(r["corruption"], r["severity"]) for r in rows] == [
        (c, s) for c in ("impulse_noise", "zoom_blur", "snow", "frost", "jpeg_compression",
                         "brightness") for s in (1, 5)]
    assert all(set(r) == {"corruption", "severity", "accuracy"} for r in rows)
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    assert first["clean_accuracy"] > 0.9
    assert [r["steps"] for r in first["adversarial"]] == [1, 2, 10]
    assert first["adversarial"][0]["accuracy"] == first["clean_accuracy"]
    acc = {(r["corruption"], r["severity"]): r["accuracy"] for r in rows}
    assert sum(acc[c, 5] for c, _ in acc) < sum(acc[c, 1] for c, _ in acc)
    json.dumps(first, allow_nan=False)

    monkeypatch.setattr(cache, "generate", lambda *a, **k: pytest.fail("cache not used"))
    second = _run(model, test_set, tmp_path)
    assert second == first


def test_uint8_conversion_rounds_to_nearest_level():
    levels = torch.tensor([0.0, 0.4 / 255, 1.6 / 255, 254.6 / 255, 1.0])
    x = levels.view(1, 1, 1, 5).repeat(1, 3, 1, 1)
    out = to_uint8_hwc(x)
    assert out.shape == (1, 1, 5, 3) and out[0, 0, :, 0].tolist() == [0, 0, 2, 255, 255]


def test_bad_config_is_a_user_error(setup, tmp_path):
    model, test_set = setup
    with pytest.raises(FlatkdError, match="valid: integers 1, 2, 3, 4, 5"):
        run_robustness(model, test_set, dataset_name="digits",
                       cfg=RobustnessConfig(severities=[7]), seed=0, device=CPU, batch_size=64,
                       progress=False, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
