"""Paper tables (5/12 and 13) from result files."""
import json
import math

import pytest

from flatkd.errors import FlatkdError
from flatkd.robustness.tables import (bim_table, corruption_table, epsilon_label,
                                      robustness_section, to_markdown)


def _result(acc, shift=0.0):
    return {"format": "flatkd.result", "version": 1, "robustness": {
        "clean_accuracy": acc,
        "corruptions": [{"corruption": c, "severity": s, "accuracy": acc - 0.1 * s + shift}
                        for c in ("snow", "frost") for s in (1, 3, 5)],
        "adversarial": [{"attack": "BIM", "epsilon": e / 255, "stepsize": 1 / 255, "steps": 1,
                         "accuracy": acc - 0.05 * e + shift} for e in (0.5, 2, 8)]}}


def test_corruption_table_layout_and_delta(tmp_path):
    path = tmp_path / "spaced.json"
    path.write_text(json.dumps(_result(0.9, 0.0125)))
    df = corruption_table({"ResNet-18": [_result(0.9), path],
                           "ResNet-50": [_result(0.95), _result(0.95, -0.02)]})
    assert list(df.index.names) == ["corruption", "severity"]
    assert list(df.index)[:3] == [("snow", 1), ("snow", 3), ("snow", 5)]
    assert list(df.columns) == [("ResNet-18", "w/o"), ("ResNet-18", "w/"), ("ResNet-18", "Δ"),
                                ("ResNet-50", "w/o"), ("ResNet-50", "w/"), ("ResNet-50", "Δ")]
    assert df.loc[("frost", 3), ("ResNet-18", "w/o")] == pytest.approx(60.0)
    assert df.loc[("frost", 3), ("ResNet-18", "Δ")] == pytest.approx(1.25)
    assert df.loc[("snow", 5), ("ResNet-50", "Δ")] == pytest.approx(-2.0)
    md = to_markdown(df)
    assert "| corruption | severity | ResNet-18 w/o |" in md
    assert "| frost | 3 | 60.00 | 61.25 | +1.25 | 65.00 | 63.00 | -2.00 |" in md


def test_bim_table_layout_and_missing_values():
    spaced = _result(0.9, 0.01)
    spaced["robustness"]["adversarial"].pop()  # no 8/255 row
    df = bim_table({"ResNet-18": [_result(0.9), spaced]}, labels=["w/o", "w/1.5"])
    assert list(df.index) == ["w/o", "w/1.5", "Δ"]
    assert list(df.columns) == [("ResNet-18", "0.5/255"), ("ResNet-18", "2/255"),
                                ("ResNet-18", "8/255")]
    assert df.loc["Δ", ("ResNet-18", "2/255")] == pytest.approx(1.0)
    assert math.isnan(df.loc["w/1.5", ("ResNet-18", "8/255")])
    md = to_markdown(df)
    assert "| Δ | +1.00 | +1.00 | — |" in md


def test_more_than_two_results_get_one_delta_each():
    df = corruption_table({"R": [_result(0.9), _result(0.9, 0.01), _result(0.9, 0.02)]})
    assert [c[1] for c in df.columns] == ["w/o", "w/ #1", "w/ #2", "Δ w/ #1", "Δ w/ #2"]
    assert df[("R", "Δ w/ #2")].to_list() == pytest.approx([2.0] * 6)


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(FlatkdError, match="no robustness section"):
        robustness_section({"format": "flatkd.result", "flatness": {}})
    with pytest.raises(FlatkdError, match="cannot read"):
        robustness_section(tmp_path / "missing.json")
    with pytest.raises(FlatkdError, match="two or more"):
        corruption_table({"R": [_result(0.9)]})
    with pytest.raises(FlatkdError, match="labels"):
        bim_table({"R": [_result(0.9), _result(0.8)]}, labels=["a"])


def test_epsilon_label():
    assert epsilon_label(2 / 255) == "2/255" and epsilon_label(0.5 / 255) == "0.5/255"
