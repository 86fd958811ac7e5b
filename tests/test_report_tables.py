"""Report tables: loading/validation, Table 1/2 numbers, mean ± std, the paired test."""
import json
import math

import numpy as np
import pytest
from scipy import stats

import report_fixtures as fx
from flatkd.errors import FlatkdError
from flatkd.evidence import load_results
from flatkd.evidence import stats as S
from flatkd.report import tables as T
from flatkd.evidence import verdicts as V
from flatkd.evidence.results import find_result_files, group, load_result


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return load_results(fx.write_results(tmp_path_factory.mktemp("res")))


def _row(df, family, selection="final"):
    rows = df[(df["family"] == family) & (df["selection"] == selection)]
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.mark.crosslib
def test_accuracy_table_matches_hand_computation(results):
    df = T.accuracy_table(results)
    on = _row(df, "online")
    assert on["dataset"] == "digits" and on["network"] == "resnet8" and on["interval"] == 1.5
    for col, method in (("wo_kd", "baseline"), ("wo_ours", "online"), ("w_ours", "spaced-online")):
        v = np.array(fx.ACCURACY[method])
        assert on[f"{col}_mean"] == pytest.approx(v.mean(), abs=1e-12)
        assert on[f"{col}_std"] == pytest.approx(v.std(ddof=1), abs=1e-12)
        assert on[f"{col}_n"] == 3
    delta = np.mean(fx.ACCURACY["spaced-online"]) - np.mean(fx.ACCURACY["online"])
    assert on["delta"] == pytest.approx(delta, abs=1e-12)
    # paired t-test by hand: t = mean(d) / (sd(d)/sqrt(n)), two-sided p with n-1 dof
    d = np.array(fx.ACCURACY["spaced-online"]) - np.array(fx.ACCURACY["online"])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    assert on["t"] == pytest.approx(t, rel=1e-9)
    assert on["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), 2), rel=1e-9)
    assert on["p_value"] < 0.05 and bool(on["significant"])
    assert "is significant" in on["statement"]


@pytest.mark.crosslib
def test_self_family_joins_byot_arch_with_plain_baseline_and_says_not_significant(results):
    df = T.accuracy_table(results)
    se = _row(df, "self")
    assert se["network"] == "resnet8" and se["interval"] == 4.0
    assert se["wo_kd_mean"] == pytest.approx(np.mean(fx.ACCURACY["baseline"]))
    assert se["wo_ours_mean"] == pytest.approx(np.mean(fx.ACCURACY["self"]))
    p = stats.ttest_rel(fx.ACCURACY["spaced-self"], fx.ACCURACY["self"]).pvalue
    assert se["p_value"] == pytest.approx(p, rel=1e-9) and p > 0.05
    assert se["significant"] is not None and not se["significant"] and "NOT significant" in se["statement"]


def test_accuracy_display_is_percent_mean_pm_std(results):
    disp = T.accuracy_display(T.accuracy_table(results))
    first = disp.iloc[0]
    v = np.array(fx.ACCURACY["online"]) * 100
    assert first["w/o Ours"] == f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"
    assert first["Δ"].startswith("+") and first["s (epochs)"] == "1.5"
    assert disp.iloc[1]["s (epochs)"] == "4.0"
    md = T.to_markdown(disp)
    assert md.splitlines()[1].count("---") == disp.shape[1]
    assert len(md.strip().splitlines()) == 2 + len(disp)


@pytest.mark.crosslib
def test_paired_test_pairs_by_seed_and_handles_degenerate_cases():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0, 7: 9.0}, {0: 0.5, 1: 1.0, 2: 3.9}
    t = S.paired_test(a, b)
    assert t.n == 3
    assert t.p == pytest.approx(stats.ttest_rel([1.0, 2.0, 4.0], [0.5, 1.0, 3.9]).pvalue)
    one = S.paired_test({0: 1.0}, {0: 0.5})
    assert one.significant is None and "too few" in one.statement("a", "b")
    same = S.paired_test({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})  # differences identical
    assert same.significant is None and math.isnan(same.p)
    assert "undefined" in same.statement("a", "b")
    assert S.describe([3.0]) == S.Stat(3.0, None, 1)
    assert S.describe([None]) is None


@pytest.mark.crosslib
def test_flatness_and_comparison_tables(results):
    flat = T.flatness_table(results)
    row = flat[flat["method"] == "spaced-online"].iloc[0]
    v = np.array(fx.TRACE["spaced-online"])
    assert row["trace_mean"] == pytest.approx(v.mean())
    assert row["trace_std"] == pytest.approx(v.std(ddof=1))
    assert row["top_eig_mean"] == pytest.approx(0.21 * v.mean())
    assert row["trace_stderr"] == pytest.approx(0.01 * v.mean())
    comp = T.comparison_table(results)
    tr = comp[(comp["metric"] == "hessian_trace") & (comp["spaced"].str.startswith("spaced-online"))]
    assert len(tr) == 1
    assert tr.iloc[0]["delta"] == pytest.approx(v.mean() - np.mean(fx.TRACE["online"]))
    assert tr.iloc[0]["p_value"] == pytest.approx(
        stats.ttest_rel(fx.TRACE["spaced-online"], fx.TRACE["online"]).pvalue)
    assert set(comp["metric"]) == {"accuracy", "hessian_trace", "top_eigenvalue"}


def test_missing_sections_are_absent_not_faked(tmp_path):
    paths = fx.write_results(tmp_path, methods=("online", "spaced-online"))
    for p in paths:
        d = json.loads(p.read_text())
        del d["robustness"]
        p.write_text(json.dumps(d))
    rs = load_results(paths)
    df = T.accuracy_table(rs)
    assert df["selection"].tolist() == ["final"]   # no checkpoints: no best/ensemble rows
    assert df["w_ours_n"].tolist() == [0] and math.isnan(df["w_ours_mean"].iloc[0])
    assert df["statement"].iloc[0] == (
        "cannot compare spaced-online (s=1.5) with online: no test accuracy on one side")
    assert T.accuracy_display(df)["w/ Ours"].iloc[0] == "—"
    assert len(T.flatness_table(rs)) == 2


def test_validation_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(FlatkdError, match="bad.json.*not a flatkd result"):
        load_result(bad)
    p = fx.write_results(tmp_path / "r", methods=("online",), seeds=(0,))[0]
    d = json.loads(p.read_text())
    d["robustness"]["clean_accuracy"] = 96.1  # percent instead of a fraction
    p.write_text(json.dumps(d))
    with pytest.raises(FlatkdError, match="fraction"):
        load_result(p)
    with pytest.raises(FlatkdError, match="not found"):
        load_result(tmp_path / "nope.json")


def test_directory_search_skips_other_json_and_rejects_duplicates(tmp_path):
    fx.write_results(tmp_path / "a", methods=("online",))
    (tmp_path / "a" / "config.json").write_text("{\"lr\": 0.01}")
    (tmp_path / "a" / "broken.json").write_text("{")          # a truncated file: named, not dropped
    with pytest.raises(FlatkdError, match=r"broken\.json under .* is not valid JSON"):
        find_result_files(tmp_path)
    (tmp_path / "a" / "broken.json").unlink()
    assert len(find_result_files(tmp_path)) == 3
    assert [k.label for k in group(load_results([tmp_path]))] == ["online"]
    copy, = fx.write_results(tmp_path / "b", methods=("online",), seeds=(0,))
    assert len(load_results([tmp_path])) == 3               # the same network twice: merged
    other = json.loads(copy.read_text())
    other["checkpoint"]["sha256"] = "another network"
    copy.write_text(json.dumps(other))
    with pytest.raises(FlatkdError, match="two different networks.*seed 0"):
        load_results([tmp_path])
    with pytest.raises(FlatkdError, match="no flatkd result"):
        load_results([])


def test_missing_method_is_named(tmp_path):
    rs = load_results(fx.write_results(tmp_path, methods=("baseline", "online"), seeds=(0,)))
    df = T.accuracy_table(rs)
    assert len(df) == 1 and df["interval"].iloc[0] is None
    assert df["statement"].iloc[0] == "no spaced-online results to compare"


# ------------------------------------------------------------ final vs best, exit ensemble

@pytest.fixture(scope="module")
def with_history(tmp_path_factory):
    """Fixture results with checkpoints: (results, histories)."""
    from flatkd.evidence.histories import load_histories
    paths = fx.write_results(tmp_path_factory.mktemp("hist"))
    fx.write_checkpoints(paths)
    rs = load_results(paths)
    hist, reasons = load_histories(rs)
    assert reasons == []
    return rs, hist


def _best(method):
    return np.array(fx.ACCURACY[method]) + np.array(fx.BEST_BUMP[method])


@pytest.mark.crosslib
def test_best_over_epochs_is_the_max_of_the_per_epoch_rows(with_history):
    rs, hist = with_history
    df = T.accuracy_table(rs, hist)
    assert list(df["selection"]) == ["final", "best", "final", "best", "ensemble_final",
                                     "ensemble_best"]
    on = _row(df, "online", "best")
    for col, method in (("wo_kd", "baseline"), ("wo_ours", "online"), ("w_ours", "spaced-online")):
        v = _best(method)
        assert on[f"{col}_mean"] == pytest.approx(v.mean(), abs=1e-12)
        assert on[f"{col}_std"] == pytest.approx(v.std(ddof=1), abs=1e-12)
    assert on["p_value"] == pytest.approx(
        stats.ttest_rel(_best("spaced-online"), _best("online")).pvalue, rel=1e-9)
    # final stays the evaluated checkpoint's clean accuracy
    assert _row(df, "online")["w_ours_mean"] == pytest.approx(np.mean(fx.ACCURACY["spaced-online"]))
    # steps: mean of the last rows' student_steps (spaced self-KD takes replay steps)
    se = _row(df, "self")
    assert se["wo_ours_steps"] == 72 and se["w_ours_steps"] == 144


@pytest.mark.crosslib
def test_exit_ensemble_rows_for_self_kd_only(with_history):
    rs, hist = with_history
    df = T.accuracy_table(rs, hist)
    assert set(df[df["family"] == "online"]["selection"]) == {"final", "best"}
    ens = _row(df, "self", "ensemble_final")
    plain = np.array(fx.ACCURACY["self"]) + fx.ENSEMBLE_OFFSET["self"]
    spaced = np.array(fx.ACCURACY["spaced-self"]) + fx.ENSEMBLE_OFFSET["spaced-self"]
    assert ens["wo_ours_mean"] == pytest.approx(plain.mean())
    assert ens["w_ours_std"] == pytest.approx(spaced.std(ddof=1))
    assert ens["wo_kd_n"] == 0 and math.isnan(ens["wo_kd_mean"])   # baseline has no exits
    assert ens["p_value"] == pytest.approx(stats.ttest_rel(spaced, plain).pvalue, rel=1e-9)
    best = _row(df, "self", "ensemble_best")
    assert best["w_ours_mean"] == pytest.approx((_best("spaced-self")
                                                 + fx.ENSEMBLE_OFFSET["spaced-self"]).mean())
    disp = T.accuracy_display(df)
    assert list(disp["accuracy"]) == ["final", "best over epochs"] * 2 + [
        "exit ensemble, final", "exit ensemble, best over epochs"]


def test_older_checkpoints_without_ensemble_columns_give_no_ensemble_rows(tmp_path):
    from flatkd.evidence.histories import load_histories
    paths = fx.write_results(tmp_path, methods=("self", "spaced-self"))
    fx.write_checkpoints(paths, ensemble=False)
    rs = load_results(paths)
    df = T.accuracy_table(rs, load_histories(rs)[0])
    assert list(df["selection"]) == ["final", "best"]


def test_verdict_says_whether_the_gain_survives(results):
    df = T.accuracy_table(results)
    on, se = _row(df, "online"), _row(df, "self")
    a = np.array(fx.ACCURACY["spaced-online"]) * 100
    assert on["verdict"].startswith(
        f"spaced-online (s=1.5) vs online, accuracy (final): {a.mean():.2f} ± {a.std(ddof=1):.2f}%")
    assert on["verdict"].endswith("the gain survives") and f"p = {on['p_value']:.3g}" in on["verdict"]
    assert f"Holm-adjusted over 2 comparisons p = {on['p_holm']:.3g} < 0.05" in on["verdict"]
    assert "(3 vs 3 seeds, 360 test images)" in on["verdict"]
    assert f"detects |Δ| ≥ {100 * on['detectable']:.2f} pp at 80 % power" in on["verdict"]
    assert "NOT significant" in se["verdict"] and se["verdict"].endswith("the gain does not survive")
    st = S.Stat
    worse = V.Verdict("s", "o", "x", st(0.5, 0.01, 3), st(0.6, 0.01, 3),
                      S.paired_test({0: .5, 1: .49, 2: .51}, {0: .6, 1: .61, 2: .6}))
    assert worse.sentence.endswith("spaced KD is worse here") and worse.outcome == "worse"
    flat = V.Verdict("s", "o", "trace", st(1.0, 0.1, 3), st(2.0, 0.1, 3),
                     S.paired_test({0: 1, 1: 1.1, 2: .9}, {0: 2, 1: 2.2, 2: 1.9}),
                     scale=1.0, unit="", higher_is_better=False)
    assert flat.sentence.endswith("the flatness gain survives") and flat.outcome == "gain"
    one = V.Verdict("s", "o", "x", st(0.5, None, 1), st(0.4, None, 1),
                    S.paired_test({0: .5}, {0: .4}))
    assert "too few for a significance test" in one.sentence
    comp = T.comparison_table(results)
    tr = comp[(comp["metric"] == "hessian_trace") & (comp["spaced"].str.startswith("spaced-online"))]
    tr = tr.iloc[0]            # p < 0.05 alone, not after Holm over the table's 6 comparisons
    assert tr["p_value"] < 0.05 and tr["p_holm"] > 0.05 and not tr["significant"]
    from statsmodels.stats.multitest import multipletests
    assert list(comp["p_holm"]) == pytest.approx(list(multipletests(comp["p_value"],
                                                                    method="holm")[1]))
    assert tr["verdict"].endswith("the flatness gain does not survive")


def test_history_falls_back_to_the_run_folders_metrics_csv(tmp_path):
    """A run whose checkpoint was deleted keeps its history in ``metrics.csv`` (the loop's
    writer): equal rows, step count and best accuracy; only the replay boundaries are lost."""
    import csv
    import io as _io
    from flatkd.evidence.histories import load_histories, training_history
    paths = fx.write_results(tmp_path / "r", methods=("online", "spaced-online"))
    ckpts = fx.write_checkpoints(paths)
    rs = load_results(paths)
    before, _ = load_histories(rs)
    for ck, r in zip(ckpts, rs):        # the fixture's checkpoints share one folder: one at a time
        b = before[r.path]
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in b.rows for k in row)))
        w.writeheader()
        w.writerows(b.rows)
        (ck.parent / "metrics.csv").write_text(buf.getvalue())
        ck.unlink()
        a, reason = training_history(r)
        assert reason == ""
        assert a.rows == [{k: v for k, v in row.items() if v is not None} for row in b.rows]
        assert a.step == b.step and a.num_classes == 10 and a.boundaries == []
        assert a.column("student_test_acc") == b.column("student_test_acc")
        assert r.method != "spaced-online" or b.boundaries      # the checkpoint had them
        (ck.parent / "metrics.csv").unlink()
        assert "not found" in training_history(r)[1]


def test_best_recalibrated_selection_needs_every_epoch_recalibrated():
    from flatkd.evidence.histories import TrainingHistory
    from flatkd.evidence.selections import SELECTIONS
    sel = SELECTIONS["best_recalibrated"]
    every = [{"student_test_acc": a, "student_test_acc_recalibrated": b}
             for a, b in ((0.5, 0.9), (0.95, 0.93), (0.7, 0.96))]
    assert sel.extract(None, TrainingHistory(every, [], 0)) == 0.96     # not the as-saved 0.95
    assert SELECTIONS["best"].extract(None, TrainingHistory(every, [], 0)) == 0.95
    last_only = [{"student_test_acc": 0.5}, {"student_test_acc": 0.8,
                                             "student_test_acc_recalibrated": 0.9}]
    assert sel.extract(None, TrainingHistory(last_only, [], 0)) is None
    assert sel.extract(None, None) is None


# ------------------------------------------------------------ step-matched controls

def _controls(tmp_path, epochs, trace_offsets=(-4.0, 1.0, -2.5)):
    """self KD results trained for ``epochs`` (checkpoints beside them), each seed's Hessian
    trace = spaced-self's + the offset."""
    paths = fx.write_results(tmp_path / f"ctrl{epochs}", methods=("self",))
    for p, off, seed in zip(paths, trace_offsets, fx.SEEDS):
        d = json.loads(p.read_text())
        d["checkpoint"]["sha256"] = f"control-{epochs}-{seed}"
        d["flatness"]["hessian"]["trace"]["mean"] = fx.TRACE["spaced-self"][seed] + off
        p.write_text(json.dumps(d))
    fx.write_checkpoints(paths, epochs=epochs)
    return load_results(paths)


def test_step_matched_control_pairs_spaced_self_with_self_trained_as_many_steps(tmp_path,
                                                                              with_history):
    """spaced-self takes 144 steps to self's 72 (6 epochs): its verdicts say so, and self
    trained 12 epochs (144 steps) is the control it is tested against, by seed; a control of
    another length is named as not matching instead."""
    from flatkd.evidence.histories import load_histories
    rs, hist = with_history
    ctrl = _controls(tmp_path, 12)
    ctrl_hist, reasons = load_histories(ctrl)
    assert reasons == []
    df = T.step_matched_table(rs, ctrl, {**hist, **ctrl_hist})
    assert set(df["spaced"]) == {"spaced-self (s=4.0)"} and df.attrs["unmatched"] == []
    assert set(df["counterpart"]) == {"self (144 steps)"}
    assert list(df["spaced_steps"]) == [144] * 3 and list(df["base_steps"]) == [144] * 3
    tr = df[df["metric"] == "hessian_trace"].iloc[0]
    a = np.array(fx.TRACE["spaced-self"])
    b = a + np.array([-4.0, 1.0, -2.5])
    assert tr["delta"] == pytest.approx(a.mean() - b.mean())
    assert tr["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert tr["p_holm"] >= tr["p_value"]
    control = [v for v in df.attrs["verdicts"] if v.what.startswith("Hessian trace")][0]
    assert not control.unequal_budgets and "unequal budgets" not in control.sentence
    # the plain comparison names the unequal budgets beside its verdict
    comp = T.comparison_table(rs, histories=hist)
    plain = [v for v in comp.attrs["verdicts"] if v.spaced.startswith("spaced-self")]
    assert plain and all("spaced-self (s=4.0) took 144 student optimizer steps, self 72"
                         in v.sentence for v in plain)
    online = [v for v in comp.attrs["verdicts"] if v.spaced.startswith("spaced-online")]
    assert online and not any(v.unequal_budgets for v in online)
    # a control of another length is not a step-matched control
    other = _controls(tmp_path, 9)
    other_hist, _ = load_histories(other)
    df9 = T.step_matched_table(rs, other, {**hist, **other_hist})
    assert len(df9) == 0
    assert df9.attrs["unmatched"] == ["spaced-self (s=4.0) (144 steps) vs self (72): the "
                                      "control runs of self took 108"]


def test_report_writes_the_step_matched_section_and_its_verdicts(tmp_path, with_history):
    from flatkd.report import build_report
    rs, _ = with_history
    _controls(tmp_path, 12)
    written = build_report([rs[0].path.parent], tmp_path / "out",
                           controls=[tmp_path / "ctrl12"])
    assert "step_matched" in written["tables"]
    rows = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    mine = [r for r in rows if r["counterpart"] == "self (144 steps)"]
    assert len(mine) == 3 and all(r["spaced_steps"] == r["counterpart_steps"] == 144 for r in mine)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Step-matched controls" in text
    # without controls the section says which comparison lacks one
    build_report([rs[0].path.parent], tmp_path / "bare")
    bare = (tmp_path / "bare" / "report.md").read_text()
    assert "no step-matched control: spaced-self (s=4.0) (144 steps) vs self (72): no control " \
           "runs of self were given" in bare
