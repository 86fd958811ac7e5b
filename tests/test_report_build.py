"""build_report end to end on synthetic results (and two tiny real checkpoint files)."""
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
    fx.write_results(res)
    # checkpoints for seed 0 of online and spaced-online only; the rest are "not found"
    _fake_checkpoint(res / "online_s0.pt", "online", fx.metric_rows(10), [], step=120)
    rows = [r | {"student_steps": 11 * r["epoch"]} for r in fx.metric_rows(10)]
    _fake_checkpoint(res / "spaced-online_s0.pt", "spaced-online", rows,
                     [18, 36, 54, 72, 90, 108], step=120)
    out = tmp_path_factory.mktemp("out")
    return out, build_report([res], out)


def test_report_writes_tables_figures_and_markdown(report):
    out, w = report
    assert w["n_results"] == 15
    assert set(w["tables"]) == {"runs", "accuracy", "flatness", "significance", "corruption_online",
                                "bim_online", "corruption_self", "bim_self"}
    assert len(w["figures"]) == 6 and "training_curves" in w["figures"]
    for files in [*w["tables"].values(), *w["figures"].values()]:
        for f in files:
            assert f.is_file() and f.stat().st_size > 0 and f.is_relative_to(out)
    assert len(w["files"]) == 1 + 2 * len(w["tables"]) + 2 * len(w["figures"])
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(p.name for p in w["files"])
    md = w["markdown"].read_text()
    for stem in w["figures"]:
        assert f"(figures/{stem}.png)" in md
    assert "is significant" in md and "NOT significant" in md
    assert "13 run(s) left out" in md and "… and 8 more" in md


def test_csv_holds_the_numbers_and_steps_from_checkpoints(report):
    out, _ = report
    acc = pd.read_csv(out / "tables" / "accuracy.csv")
    on = acc[acc["family"] == "online"].iloc[0]
    assert on["w_ours_mean"] == pytest.approx(sum(fx.ACCURACY["spaced-online"]) / 3)
    assert on["wo_ours_steps"] == 120 and on["w_ours_steps"] == 110  # student_steps wins
    assert pd.isna(acc[acc["family"] == "self"].iloc[0]["w_ours_steps"])
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == 15 and set(runs["seed"]) == {0, 1, 2}
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


def test_robustness_tables_average_seeds_before_the_paper_layout(report):
    out, _ = report
    ct = pd.read_csv(out / "tables" / "corruption_online.csv", header=[0, 1], index_col=[0, 1])
    col = "digits/resnet8 s=1.5"
    row = ct.loc[("frost", 3)]
    res = {m: [fx._result(m, s, out)["robustness"]["corruptions"] for s in fx.SEEDS]
           for m in ("online", "spaced-online")}
    mean = {m: 100 * sum(c["accuracy"] for cs in v for c in cs
                         if (c["corruption"], c["severity"]) == ("frost", 3)) / 3
            for m, v in res.items()}
    assert row[(col, "w/o Ours")] == pytest.approx(mean["online"])
    assert row[(col, "w/ Ours")] == pytest.approx(mean["spaced-online"])
    assert row[(col, "Δ")] == pytest.approx(mean["spaced-online"] - mean["online"])
    md = (out / "report.md").read_text()
    assert "3/3 seeds (digits/resnet8 s=1.5)" in md and "Table 13 layout" in md


def test_checkpoint_recorded_relative_to_an_ancestor_folder_resolves(tmp_path):
    from flatkd.report import load_result
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
