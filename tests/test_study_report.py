"""``flatkd report`` on results holding sharpness, landscape, FGSM/PGD and corruption-error
sections: the τ table agrees with the study, figures exist and are labelled, mCE is normalised
by the stated baseline."""
import json
import math

import pandas as pd
import pytest

import report_fixtures as fx
from flatkd.evidence import load_results
from flatkd.report import build_report
from flatkd.report import style as Sty
from flatkd.report import robustness_figures as RF
from flatkd.report import measures as M
from flatkd.robustness.published import BENCHMARK
from flatkd.study import StudySettings, run_study


def _enrich(path, i):
    r = json.loads(path.read_text())
    acc = r["robustness"]["clean_accuracy"]
    trace = r["flatness"]["hessian"]["trace"]["mean"]
    gap = 0.02 + trace / 20000                              # flatter ↔ smaller gap, by design
    grid = [-1.0, -0.5, 0.0, 0.5, 1.0]
    r["sharpness"] = {
        "generalization": {"gap": gap, "test_accuracy": acc, "train_accuracy": acc + gap},
        "adaptive": {"average": {"value": trace / 1000}, "worst": {"value": (i * 7 % 5) / 10}},
        "pacbayes": {"isotropic": {"sigma": 10 / math.sqrt(trace), "inverse_sigma_sq": trace / 100},
                     "magnitude_aware": {"sigma": 0.2, "inverse_sigma_sq": 25.0}},
        "layers": {"groups": [{"name": "stem", "trace": {"mean": trace / 3}},
                              {"name": "fc", "trace": {"mean": 1.0 + i % 2}}]}}
    r["landscape"] = {
        "1d": {"alphas": grid, "loss": [0.05 + a * a * trace / 100 for a in grid]},
        "2d": {"alphas": grid, "betas": grid,
               "loss": [[0.05 + (a * a + b * b) * trace / 100 for b in grid] for a in grid]}}
    if r["checkpoint"]["method"] == "spaced-online":
        r["landscape"]["path"] = {"partner": {"method": "online", "seed": r["checkpoint"]["seed"]},
                                  "t": [0, 0.5, 1], "loss": [0.05, 0.4, 0.06],
                                  "accuracy": [0.99, 0.9, 0.98], "bn": "recompute",
                                  "barrier": {"loss": 0.345, "loss_t": 0.5,
                                              "accuracy": 0.085, "accuracy_t": 0.5}}
    r["robustness"]["adversarial"] += [
        {"attack": "FGSM", "epsilon": e, "stepsize": e, "steps": 1,
         "accuracy": max(0.0, acc - 40 * e)} for e in fx.EPSILONS] + [
        {"attack": "PGD", "epsilon": e, "stepsize": 2.5 * e / 10, "steps": 10, "restarts": 1,
         "accuracy": max(0.0, acc - 50 * e)} for e in fx.EPSILONS]
    err = {c: {"error_sum": 5 * (1 - acc) + 0.1 * (1 + k), "relative_error_sum": 0.1 * (1 + k)}
           for k, c in enumerate(BENCHMARK)}
    r["robustness"]["corruption_errors"] = {"corruptions": err, "clean_error": 1 - acc,
                                            "mce": 0.0, "relative_mce": 0.0}
    path.write_text(json.dumps(r))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    res = tmp_path_factory.mktemp("res")
    paths = fx.write_results(res)
    for i, p in enumerate(paths):
        _enrich(p, i)
    out = tmp_path_factory.mktemp("out")
    return res, out, build_report([res], out)


def test_tau_table_matches_the_study(built):
    res, out, w = built
    assert {"measures_tau", "sharpness", "mce"} <= set(w["tables"])
    table = pd.read_csv(out / "tables" / "measures_tau.csv").set_index("measure")
    study = run_study([res], StudySettings())
    for t in study["taus"]:
        want = math.nan if t["gap"]["tau"] is None else t["gap"]["tau"]   # constant: undefined
        assert table.loc[t["measure"], "tau_gap"] == pytest.approx(want, nan_ok=True)
        assert table.loc[t["measure"], "verdict"] == t["verdict"]
    assert table.loc["hessian_trace", "tau_gap"] == pytest.approx(1.0)
    assert table.loc["hessian_trace", "verdict"] == "tracks"
    assert table.loc["pacbayes_inv_sigma_sq", "tau_gap"] == pytest.approx(1.0)
    assert "layer_trace[stem]" in table.index
    assert table.loc["pacbayes_mag_inv_sigma_sq", "verdict"] == "constant"   # σ′ = 0.2 for all
    md = w["markdown"].read_text()
    assert "## Which measures track generalization? (Kendall τ)" in md
    assert any("hessian_trace (τ = +1.00)" in s for s in w["summaries"])


def test_measure_figures_are_written_and_labelled(built):
    _, _, w = built
    for stem in ("measures_tau", "landscape_2d_digits_resnet8", "landscape_1d_digits_resnet8",
                 "linear_paths_digits_resnet8"):
        assert stem in w["figures"] and all(f.stat().st_size > 0 for f in w["figures"][stem])
    results = load_results([built[0]])
    assert Sty.unlabelled_axes(M.contour_figure(results)) == []
    assert Sty.unlabelled_axes(M.path_figure(results)) == []


def test_attack_figure_has_a_panel_per_attack(built):
    res, _, _ = built
    results = load_results([res])
    fig = RF.bim_figure(results)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["Adversarial robustness (BIM)", "Adversarial robustness (FGSM)",
                      "Adversarial robustness (PGD)"]
    df = RF.bim_frame(results)
    assert set(df["attack"]) == {"BIM", "FGSM", "PGD"}


def test_mce_is_normalised_by_the_baseline(built):
    res, out, _ = built
    df = pd.read_csv(out / "tables" / "mce.csv")
    base = df[df["method"] == "baseline"]
    # the baseline's mean errors normalise it to ≈ 1 (exactly 1 for the seed-mean)
    assert base["mce_vs_baseline"].mean() == pytest.approx(1.0, abs=0.02)
    online = df[(df["method"] == "online") & (df["seed"] == 0)].iloc[0]
    assert online["mce_vs_baseline"] < 1.0              # online is more accurate: lower error


def test_reports_without_these_suites_are_unchanged(tmp_path):
    res = tmp_path / "res"
    fx.write_results(res)
    w = build_report([res], tmp_path / "out")
    assert not {"measures_tau", "sharpness", "mce"} & set(w["tables"])
