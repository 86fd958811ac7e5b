"""RobustnessConfig: defaults, dotted-key overrides, validation messages, corruption registry."""
import pytest

from flatkd.config import apply_overrides
from flatkd.errors import FlatkdError
from flatkd.robustness.config import RobustnessConfig
from flatkd.robustness.corruptions import CORRUPTIONS, available, resolve


def test_defaults_are_the_papers():
    cfg = RobustnessConfig()
    cfg.validate()
    assert cfg.corruption_names() == ["impulse_noise", "zoom_blur", "snow", "frost",
                                      "jpeg_compression", "brightness"]
    assert cfg.severities == [1, 3, 5] and cfg.constants == "imagenet-c"
    assert cfg.epsilons == [0.5, 1, 2, 4, 8] and cfg.bim_protocol == "kurakin"


def test_all_expands_per_constant_set():
    cfg = apply_overrides(RobustnessConfig(), {"corruptions": "all"})
    assert cfg.corruption_names() == CORRUPTIONS.names() and len(CORRUPTIONS.names()) == 19
    cfg = apply_overrides(cfg, {"constants": "cifar-c"})
    assert cfg.corruption_names() == [n for n in CORRUPTIONS.names() if n != "elastic_transform"]


def test_overrides_from_strings():
    cfg = apply_overrides(RobustnessConfig(), {"corruptions": "fog,snow", "severities": "2,4",
                                               "epsilons": "0,16", "workers": "1"})
    cfg.validate()
    assert cfg.corruptions == ["fog", "snow"] and cfg.severities == [2, 4]
    assert cfg.epsilons == [0.0, 16.0] and cfg.workers == 1


@pytest.mark.parametrize("key, value, message", [
    ("corruptions", ["fgo"], "unknown corruption 'fgo'; valid: all, brightness, contrast"),
    ("corruptions", ["snow", "snow"], "twice"),
    ("corruptions", ["all", "snow"], "'all' stands alone"),
    ("severities", [0], "valid: integers 1, 2, 3, 4, 5"),
    ("severities", [6], "valid: integers 1, 2, 3, 4, 5"),
    ("severities", [], "valid: integers 1, 2, 3, 4, 5"),
    ("epsilons", [-1.0], "valid: numbers in \\[0, 255\\]"),
    ("epsilons", [float("nan")], "valid: numbers in \\[0, 255\\]"),
    ("constants", "cifar10-c", "valid choices: cifar-c, imagenet-c"),
    ("bim_protocol", "fgsm", "valid choices: foolbox-default, kurakin"),
    ("workers", -1, "0 \\(all cores\\) or a positive integer"),
])
def test_validation_names_valid_values(key, value, message):
    cfg = RobustnessConfig()
    setattr(cfg, key, value)
    with pytest.raises(FlatkdError, match=message):
        cfg.validate()


def test_elastic_transform_has_no_cifar_c_table():
    assert "elastic_transform" in available("imagenet-c")
    assert "elastic_transform" not in available("cifar-c")
    with pytest.raises(FlatkdError, match="no cifar-c severity table"):
        resolve(["elastic_transform"], "cifar-c")
