"""Report statistics beyond Table 1/2: corruption and BIM tables over seeds with paired tests,
accuracy vs interval (Table 6), the chance-level rule. Every number is recomputed by hand."""
import math

import numpy as np
import pytest
from scipy import stats

import report_fixtures as fx
from flatkd.evidence import load_results
from flatkd.report import robustness as R
from flatkd.report import tables as T
from flatkd.report import cells as S


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return load_results(fx.write_results(tmp_path_factory.mktemp("res")))


def _corr(method, corruption, severity):
    return np.array([[c["accuracy"] for c in fx._result(method, s, fx.Path("."))["robustness"]
                      ["corruptions"] if (c["corruption"], c["severity"]) == (corruption, severity)][0]
                     for s in fx.SEEDS])


@pytest.mark.crosslib
def test_corruption_table_mean_std_and_paired_test_per_cell(results):
    df = R.corruption_table(results)
    assert set(df["family"]) == {"online", "self"}
    assert len(df) == 2 * len(fx.CORRUPTIONS) * len(fx.SEVERITIES)
    row = df[(df["family"] == "online") & (df["corruption"] == "frost")
             & (df["severity"] == 3)].iloc[0]
    a, b = _corr("spaced-online", "frost", 3), _corr("online", "frost", 3)
    assert row["w_ours_mean"] == pytest.approx(a.mean()) and row["wo_ours_mean"] == pytest.approx(b.mean())
    assert row["w_ours_std"] == pytest.approx(a.std(ddof=1))
    assert row["wo_ours_std"] == pytest.approx(b.std(ddof=1))
    assert row["delta"] == pytest.approx(a.mean() - b.mean())
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert row["n_pairs"] == 3 and row["group"] == "digits/resnet8 s=1.5"
    disp = R.corruption_display(df[df["family"] == "online"])
    line = disp[(disp["corruption"] == "frost") & (disp["severity"] == 3)].iloc[0]
    assert line["w/ Ours"] == f"{100 * a.mean():.2f} ± {100 * a.std(ddof=1):.2f}"
    assert line["p (paired t)"] == f"{row['p_value']:.3g}"
    assert list(disp.columns) == ["corruption", "severity", "w/o Ours", "w/ Ours", "Δ",
                                  "p (paired t)"]


@pytest.mark.crosslib
def test_bim_table_mean_std_and_paired_test_per_epsilon(results):
    df = R.bim_table(results)
    on = df[df["family"] == "online"]
    assert list(on["epsilon_255"]) == [1, 2, 4, 8]
    row = on[on["epsilon_255"] == 4].iloc[0]

    def bim(m):
        return np.array([[x["accuracy"] for x in fx._result(m, s, fx.Path("."))["robustness"]
                          ["adversarial"] if round(x["epsilon"] * 255) == 4][0] for s in fx.SEEDS])
    a, b = bim("spaced-online"), bim("online")
    assert row["w_ours_std"] == pytest.approx(a.std(ddof=1))
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    disp = R.bim_display(on)
    assert list(disp.columns) == ["", "1/255", "2/255", "4/255", "8/255"]
    assert disp["4/255"].tolist() == [
        f"{100 * b.mean():.2f} ± {100 * b.std(ddof=1):.2f}",
        f"{100 * a.mean():.2f} ± {100 * a.std(ddof=1):.2f}",
        f"{100 * (a.mean() - b.mean()):+.2f}", f"{row['p_value']:.3g}"]


def test_cells_summary_counts_cells(results):
    df = R.corruption_table(results)
    on = df[df["family"] == "online"]
    (text,) = R.cells_summary(on, "corruption accuracy", "spaced-online", "online")
    higher = int((on["delta"] > 0).sum())
    sig_up = int(((on["p_value"] < 0.05) & (on["delta"] > 0)).sum())
    sig_down = int(((on["p_value"] < 0.05) & (on["delta"] < 0)).sum())
    assert f"spaced mean higher in {higher} of {len(on)} cells" in text
    tested = int(on["p_value"].notna().sum())
    assert 0 < tested < len(on)                 # some cells sit at the floor for every seed
    assert (f"significantly higher in {sig_up}, significantly lower in {sig_down}, "
            f"NOT significant in {tested - sig_up - sig_down}; {len(on) - tested} cell(s) "
            "not testable") in text


@pytest.mark.crosslib
def test_interval_table_needs_two_intervals(results, tmp_path):
    assert T.interval_table(results).empty      # one interval per spaced method
    rs = load_results(fx.write_results(tmp_path, methods=("baseline", "online", "spaced-online"),
                                       intervals={"spaced-online": (0.5, 3.0)}))
    df = T.interval_table(rs)
    assert list(df["method"]) == ["baseline", "online"] + ["spaced-online"] * 3
    assert df["interval"].tolist()[1:] == [0.0, 0.5, 1.5, 3.0] and math.isnan(df["interval"][0])
    assert set(df["selection"]) == {"final"}    # no checkpoints: no best-over-epochs values
    r = df[df["interval"] == 0.5].iloc[0]
    a = np.array(fx.EXTRA_ACCURACY["spaced-online", 0.5])
    b = np.array(fx.ACCURACY["online"])
    assert r["mean"] == pytest.approx(a.mean()) and r["std"] == pytest.approx(a.std(ddof=1))
    assert r["delta"] == pytest.approx(a.mean() - b.mean())
    assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    disp = T.interval_display(df)
    assert list(disp.columns) == ["Dataset", "Network", "KD", "accuracy", "w/o KD", "w/o (s=0)",
                                  "w/0.5", "w/1.5", "w/3.0"]
    star = " *" if r["p_value"] < 0.05 else ""
    assert disp["w/0.5"].iloc[0] == f"{100 * a.mean():.2f} ± {100 * a.std(ddof=1):.2f}{star}"


def test_chance_rule_threshold_by_hand():
    rule = S.ChanceRule(10, 360)
    noise = 2 * math.sqrt(0.1 * 0.9 / 360)
    assert rule.threshold == pytest.approx(0.1 + noise)
    assert rule.at_chance(0.1 + noise) and not rule.at_chance(0.1 + noise + 1e-6)
    big = S.ChanceRule(100, 10000)                # binomial noise 0.2 pp < the 1 pp floor
    assert big.threshold == pytest.approx(0.02)
    assert S.ChanceRule(10, None).threshold == pytest.approx(0.11)
    assert not S.ChanceRule(None, None).at_chance(0.0)
    assert "≤ 13.2 %" in rule.describe() and "360 test images" in rule.describe()


def test_holm_matches_the_step_down_rule_by_hand_and_skips_missing_tests():
    from flatkd.evidence import stats as ES
    # sorted p: 0.01·3 = 0.03; 0.03·2 = 0.06; 0.04·1 = 0.04 → raised to 0.06 (monotone)
    assert ES.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan],
                                                                  nan_ok=True)
    assert ES.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])          # capped at 1
    a = {s: 0.9 + 0.01 * s for s in range(4)}
    tests = [ES.paired_test(a, {s: v - 0.02 - 0.001 * (s % 2) for s, v in a.items()}), None,
             ES.paired_test(a, {s: v - 0.01 * (s % 2) for s, v in a.items()})]
    adj = ES.holm_adjusted(tests)
    assert adj[1] is None and adj[0].family == adj[2].family == 2
    from statsmodels.stats.multitest import multipletests
    expect = multipletests([tests[0].p, tests[2].p], method="holm")[1]
    assert [adj[0].p_holm, adj[2].p_holm] == pytest.approx(list(expect), rel=1e-12)
    assert adj[2].significant is (adj[2].p_holm < 0.05) and adj[0].p == tests[0].p


@pytest.mark.parametrize("n", [3, 5, 10])
def test_detectable_difference_has_80_percent_power_under_the_noncentral_t(n):
    """Closed form: power(δ) = P(|T| > t₀.₉₇₅,ₙ₋₁), T ~ noncentral t(n − 1, δ√n / sd)."""
    from scipy import stats as st
    from flatkd.evidence import stats as ES
    sd = 0.7
    d = ES.detectable_difference(sd, n)
    crit = st.t.ppf(0.975, n - 1)
    nc = d / sd * math.sqrt(n)
    power = st.nct.sf(crit, n - 1, nc) + st.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert ES.detectable_difference(2 * sd, n) == pytest.approx(2 * d)      # scales with sd
    assert math.isnan(ES.detectable_difference(sd, 1))


def test_detectable_difference_tends_to_the_normal_formula_for_many_seeds():
    from scipy import stats as st
    from flatkd.evidence import stats as ES
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    assert ES.detectable_difference(1.0, 2000) == pytest.approx(z / math.sqrt(2000), rel=2e-3)
