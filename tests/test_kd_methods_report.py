"""flatkd report: paper Table 4 layout (spacing as a plug-in) from result files."""
import json

import pytest
from statsmodels.stats.multitest import multipletests

from flatkd.report import build_report
from flatkd.evidence.results import COUNTERPART, FAMILIES, load_results
from flatkd.report.table4 import TABLE4, table4, table4_display

ACC = {   # method → accuracy per seed 0, 1, 2 (fractions)
    "baseline": (0.90, 0.91, 0.92),
    "online+lskd": (0.93, 0.92, 0.94),
    "spaced-online+lskd": (0.95, 0.93, 0.96),
    "tsb": (0.94, 0.94, 0.95),
    "spaced-tsb": (0.94, 0.95, 0.94),
    "dlb": (0.89, 0.90, 0.91),
    "online-dlb": (0.92, 0.93, 0.94),
}
INTERVAL = {"spaced-online+lskd": 1.5, "spaced-tsb": 1.5}


def write(tmp_path):
    paths = []
    for method, accs in ACC.items():
        for seed, acc in enumerate(accs):
            p = tmp_path / f"{method}-seed{seed}.json"
            p.write_text(json.dumps({
                "format": "flatkd.result", "version": 1,
                "checkpoint": {"path": f"missing/{method}-{seed}.pt", "sha256": f"{method}-{seed}", "method": method,
                               "arch": "resnet8", "dataset": "digits", "model": "student",
                               "seed": seed, "interval": INTERVAL.get(method), "epochs": 6},
                "robustness": {"clean_accuracy": acc, "corruptions": [], "adversarial": []},
                "provenance": {"seed": 0}}))
            paths.append(p)
    return paths


def test_plugin_families_and_counterparts():
    assert TABLE4["LSKD"] == ("baseline", "online+lskd", "spaced-online+lskd") == FAMILIES["lskd"]
    assert TABLE4["DLB"] == ("dlb", "online-dlb", "spaced-dlb")
    assert list(TABLE4)[:3] == ["TSB", "CTKD", "LSKD"]
    assert COUNTERPART["spaced-tsb"] == "tsb" and COUNTERPART["spaced-pskd"] == "online-pskd"


def test_table4_cells_delta_and_paired_test(tmp_path):
    df = table4(load_results(write(tmp_path)))
    final = df[df["selection"] == "final"].set_index("column")
    assert set(final.index) == {"LSKD", "TSB", "DLB"}
    lskd = final.loc["LSKD"]
    assert lskd["wo_kd_mean"] == pytest.approx(0.91) and lskd["w_kd_mean"] == pytest.approx(0.93)
    assert lskd["w_ours_mean"] == pytest.approx((0.95 + 0.93 + 0.96) / 3)
    assert lskd["delta"] == pytest.approx(0.05 / 3) and lskd["n_pairs"] == 3
    assert lskd["t"] == pytest.approx(5.0) and lskd["p_value"] == pytest.approx(0.03775, abs=1e-4)
    # p < 0.05 on its own, but not after Holm over the table's tests (the verdict follows Holm)
    tested = df["p_value"].dropna()
    holm = multipletests(tested, method="holm")[1]
    assert lskd["p_holm"] == pytest.approx(holm[list(tested.index).index(
        df.index[(df["column"] == "LSKD") & (df["selection"] == "final")][0])], rel=1e-12)
    assert lskd["p_holm"] > 0.05 and not lskd["significant"]
    assert f"Holm-adjusted over {len(tested)} comparisons" in lskd["verdict"]
    assert lskd["verdict"].endswith("the gain does not survive")
    tsb = final.loc["TSB"]                                   # +0.00, −… : not significant
    assert tsb["delta"] == pytest.approx(0.0) and not tsb["significant"]
    assert final.loc["DLB", "wo_kd_mean"] == pytest.approx(0.90)      # w/o KD = the DLB teacher
    assert final.loc["DLB", "w_ours_n"] == 0 and "no spaced-dlb results" in final.loc["DLB", "statement"]
    shown = table4_display(df)
    assert list(shown.columns) == ["setting", "accuracy", "row", "TSB", "LSKD", "DLB"]
    rows = shown[shown["setting"] == "digits / resnet8, s = 1.5"].set_index("row")
    assert rows.loc["w/ Ours", "LSKD"] == "94.67 ± 1.53 (3)"
    assert rows.loc["Δ (paired p)", "LSKD"] == "+1.67 (p = 0.038, Holm 0.075, n.s.)"
    assert rows.loc["Δ (paired p)", "TSB"].endswith("n.s.)")


def test_report_has_a_table4_section(tmp_path):
    (tmp_path / "r").mkdir()
    write(tmp_path / "r")
    out = build_report([tmp_path / "r"], tmp_path / "out")
    assert "table4" in out["tables"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Spacing as a plug-in (paper Table 4 layout" in text
    assert "LSKD = online+lskd / spaced-online+lskd" in text
