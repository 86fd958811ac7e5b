"""build_report end to end on synthetic results (and two tiny real checkpoint files)."""
import json

import numpy as np
import pandas as pd
import pytest

import report_fixtures as fx
from flatkd import checkpoint
from flatkd.report import build_report


def _fake_checkpoint(path, method, metrics, replay_steps, bpe=12, step=120):
    checkpoint.save(path, {
        "format": checkpoint.FORMAT, "version": checkpoint.VERSION, "method": method,
        "arch": "resnet8", "dataset": "digits", "num_classes": 10, "models": {},
        "architectures": {}, "optim": {}, "epoch": len(metrics), "step": step, "config": {},
        "metrics": metrics, "provenance": {},
        "state": {"replay_steps": replay_steps, "batches_per_epoch": bpe}})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    res = tmp_path_factory.mktemp("res")
    paths = fx.write_results(res)
    # checkpoints for every run except self seeds 1 and 2 (those are "not found")
    fx.write_checkpoints([p for p in paths if p.name not in ("self_seed1.json", "self_seed2.json")])
    out = tmp_path_factory.mktemp("out")
    return out, build_report([res], out)


def test_report_writes_tables_figures_and_markdown(report):
    out, w = report
    assert w["n_results"] == 15
    assert set(w["tables"]) == {"runs", "accuracy", "flatness", "significance", "corruption_online",
                                "bim_online", "corruption_self", "bim_self"}
    assert set(w["figures"]) == {f"{s}_digits_resnet8" for s in (
        "fig4_perturbation", "hessian_density", "corruption_bars", "corruption_heatmap", "bim")} | {
        "training_curves"}
    for files in [*w["tables"].values(), *w["figures"].values()]:
        for f in files:
            assert f.is_file() and f.stat().st_size > 0 and f.is_relative_to(out)
    assert len(w["files"]) == 2 + 2 * len(w["tables"]) + 2 * len(w["figures"])   # + verdicts.json
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(p.name for p in w["files"])
    md = w["markdown"].read_text()
    for stem in w["figures"]:
        assert f"(figures/{stem}.png)" in md
    comp = pd.read_csv(out / "tables" / "significance.csv")
    assert (comp["p_value"] < 0.05).any() and "NOT significant" in md
    assert ("is significant" in md) == bool((comp["p_holm"] < 0.05).any())
    assert "2 run(s) left out" in md and "self_s1.pt" in md
    assert "SPEC" not in md and not any("SPEC" in f.read_text() for fs in w["tables"].values()
                                        for f in fs)
    assert "severity constants: cifar-c" in md and "at chance = mean accuracy ≤ 13.2 %" in md


def test_report_states_from_the_numbers_whether_the_gain_survives(report):
    out, w = report
    md = w["markdown"].read_text()
    acc = pd.read_csv(out / "tables" / "accuracy.csv")
    assert "## Does spaced KD's gain over its counterpart survive?" in md
    assert list(acc["verdict"]) == [v.sentence for v in w["verdicts"][:len(acc)]]
    rows = json.loads((out / "verdicts.json").read_text())
    assert [r["sentence"] for r in rows] == [v.sentence for v in w["verdicts"]]
    for v in acc["verdict"]:
        assert f"* {v}" in md
    assert "the paper's numbers are most likely *best over epochs*" in md
    # every selection row's verdict agrees with its own Holm-adjusted p-value
    for _, r in acc.iterrows():
        if r["p_value"] == r["p_value"]:
            assert ("NOT significant" in r["verdict"]) == (r["p_holm"] >= 0.05)


def test_csv_holds_the_numbers_and_steps_from_checkpoints(report):
    out, _ = report
    acc = pd.read_csv(out / "tables" / "accuracy.csv")
    on = acc[(acc["family"] == "online") & (acc["selection"] == "final")].iloc[0]
    assert on["w_ours_mean_pct"] == pytest.approx(100 * sum(fx.ACCURACY["spaced-online"]) / 3)
    assert on["wo_ours_steps"] == 72 and on["w_ours_steps"] == 72
    se = acc[(acc["family"] == "self") & (acc["selection"] == "best")].iloc[0]
    assert se["wo_ours_n"] == 1 and se["w_ours_n"] == 3      # two self checkpoints missing
    assert se["w_ours_steps"] == 144                          # spaced self-KD replays
    assert list(acc["selection"]) == ["final", "best", "final", "best", "ensemble_final",
                                      "ensemble_best"]
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == 15 and set(runs["seed"]) == {0, 1, 2}
    assert runs["accuracy_pct"].between(1, 100).all()         # the unit the Markdown shows


def test_csv_and_markdown_tables_show_accuracies_in_one_unit(report):
    """Every accuracy a CSV holds is the percent its Markdown table shows (fractions nowhere)."""
    out, _ = report
    for name in ("accuracy", "corruption_online", "bim_self", "significance"):
        df = pd.read_csv(out / "tables" / f"{name}.csv")
        md = (out / "tables" / f"{name}.md").read_text()
        if name == "significance":
            df = df[df["metric"] == "accuracy"]
            assert set(df["unit"]) == {"% (delta: pp)"}
            means = df["spaced_mean"]
        else:
            assert not any(c.endswith(("_mean", "_std")) for c in df.columns), df.columns
            means = df["w_ours_mean_pct"]
        assert means.max() > 1
        for value in means.dropna():
            assert 0 <= value <= 100 and f"{value:.2f}" in md
    assert "optimizer steps (w/o Ours, w/ Ours)" in (out / "tables" / "accuracy.md").read_text()


def test_report_from_flatness_only_results(tmp_path):
    paths = fx.write_results(tmp_path / "r", methods=("online", "spaced-online"), seeds=(0,))
    import json
    for p in paths:
        d = json.loads(p.read_text())
        del d["robustness"]
        p.write_text(json.dumps(d))
    w = build_report(paths, tmp_path / "out")
    assert set(w["figures"]) == {"fig4_perturbation_digits_resnet8",
                                 "hessian_density_digits_resnet8"}
    assert "accuracy" not in w["tables"]
    assert any("robustness suite not run" in s for s in w["skipped"])
    assert "too few for a significance test" in w["markdown"].read_text()


@pytest.mark.crosslib
def test_robustness_tables_carry_std_and_paired_tests(report):
    from scipy import stats
    out, _ = report
    ct = pd.read_csv(out / "tables" / "corruption_online.csv")
    row = ct[(ct["corruption"] == "frost") & (ct["severity"] == 3)].iloc[0]
    vals = {m: [[c["accuracy"] for c in fx._result(m, s, out)["robustness"]["corruptions"]
                 if (c["corruption"], c["severity"]) == ("frost", 3)][0] for s in fx.SEEDS]
            for m in ("online", "spaced-online")}
    assert row["wo_ours_mean_pct"] == pytest.approx(100 * np.mean(vals["online"]))
    assert row["w_ours_std_pct"] == pytest.approx(100 * np.std(vals["spaced-online"], ddof=1))
    assert row["p_value"] == pytest.approx(stats.ttest_rel(vals["spaced-online"],
                                                           vals["online"]).pvalue)
    md = (out / "report.md").read_text()
    assert "Table 13 layout" in md and "| p (paired t) |" in md
    assert "spaced-online vs online (digits/resnet8 s=1.5), BIM accuracy" in md
    bt = pd.read_csv(out / "tables" / "bim_self.csv")
    assert list(bt["epsilon_255"]) == [1, 2, 4, 8] and bt["p_value"][:3].notna().all()


def test_accuracy_vs_interval_only_with_two_intervals(report, tmp_path):
    _, w = report
    assert "accuracy_vs_interval" not in w["tables"]
    paths = fx.write_results(tmp_path / "r", methods=("online", "spaced-online"), seeds=(0, 1),
                             intervals={"spaced-online": (0.5,)})
    fx.write_checkpoints(paths)
    w2 = build_report(paths, tmp_path / "out")
    assert "accuracy_vs_interval" in w2["tables"]
    assert "accuracy_vs_interval_digits_resnet8" in w2["figures"]
    iv = pd.read_csv(w2["tables"]["accuracy_vs_interval"][0])
    assert set(iv["selection"]) == {"final", "best"}
    assert set(iv["interval"]) == {0.0, 0.5, 1.5}
    assert "Accuracy vs spaced interval" in w2["markdown"].read_text()


def test_checkpoint_recorded_relative_to_an_ancestor_folder_resolves(tmp_path):
    from flatkd.evidence import load_result
    import json
    res = tmp_path / "repo" / "checkpoints" / "results"
    p = fx.write_results(res, methods=("online",), seeds=(0,))[0]
    _fake_checkpoint(tmp_path / "repo" / "checkpoints" / "runs" / "online.pt", "online",
                     fx.metric_rows(3), [])
    d = json.loads(p.read_text())
    d["checkpoint"]["path"] = "checkpoints/runs/online.pt"   # relative to the repo root
    p.write_text(json.dumps(d))
    assert load_result(p).checkpoint_file() == tmp_path / "repo" / "checkpoints" / "runs" / "online.pt"
    d["checkpoint"]["path"] = "elsewhere/online.pt"
    p.write_text(json.dumps(d))
    assert load_result(p).checkpoint_file() is None


def test_a_run_that_swings_is_not_converged_and_gets_no_verdict(tmp_path):
    """A fixture run whose last epochs swing by 20 pp is marked *not converged* in the runs
    table and CSV, and no comparison that uses it gives a verdict; the settled runs do."""
    import json
    from flatkd import checkpoint
    from flatkd.evidence import convergence as C
    paths = fx.write_results(tmp_path / "res", methods=("baseline", "online", "spaced-online"))
    fx.write_checkpoints(paths)
    swung = next(p for p in paths if p.name == "online_seed1.json")
    ck = json.loads(swung.read_text())["checkpoint"]["path"]
    raw = checkpoint.read(ck)
    raw["metrics"][-2]["student_test_acc"] -= 0.20                 # 20 pp dip, then back
    checkpoint.save(ck, raw)
    w = build_report([tmp_path / "res"], tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "tables" / "runs.csv")
    row = runs[(runs["method"] == "online") & (runs["seed"] == 1)].iloc[0]
    assert row["converged"] == False and row["last_epochs_spread_pp"] > 19   # noqa: E712
    assert runs[runs["method"] == "spaced-online"]["converged"].all()
    assert "NOT: seed 1" in (tmp_path / "out" / "tables" / "runs.md").read_text()
    acc = [v.sentence for v in w["verdicts"] if v.what == "accuracy (final)"]
    assert acc and all("no verdict: runs not converged: online seed 1 (last 3 epochs span"
                       in v for v in acc)
    shown = (tmp_path / "out" / "tables" / "accuracy.md").read_text()
    assert "† (1 not converged)" in shown
    # the diagnostic itself, on the thresholds
    h = fx.history_rows("online", 0)
    from flatkd.evidence.histories import TrainingHistory
    from flatkd.evidence.results import load_result
    r = load_result(paths[0])
    settled = C.diagnose(r, TrainingHistory(h, [], 0))
    assert settled.converged and settled.spread <= C.MAX_SPREAD
    bumped = [dict(x) for x in h]
    bumped[-1]["student_test_acc"] += C.MAX_SPREAD + 0.001
    assert C.diagnose(r, TrainingHistory(bumped, [], 0)).converged is False
    stale = dict(r.data, bn={"mode": "recalibrate", "as_saved": {"test_accuracy": 0.80},
                            "recalibrated": {"test_accuracy": 0.95}})
    d = C.diagnose(type(r)(r.path, stale), TrainingHistory(h, [], 0))
    assert d.converged is False and d.bn_gap == pytest.approx(-0.15) and "BatchNorm" in d.why
    assert C.diagnose(r, None).converged is None
