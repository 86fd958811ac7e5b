"""``flatkd demo`` end to end (the README's main job). Slow: CI runs it in its second step."""
import json
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_demo_writes_report_and_reuses_finished_steps(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "flatkd", "demo", "--out", str(out), "--quiet"]
    start = time.perf_counter()
    first = subprocess.run(cmd, capture_output=True, text=True)
    first_s = time.perf_counter() - start
    assert first.returncode == 0, first.stderr[-2000:]
    report = out / "report"
    assert len(list(report.rglob("*.png"))) >= 3
    assert list(report.rglob("*.md")) and list(report.rglob("*.csv"))
    results = sorted((out / "results").glob("*.json"))
    assert len(results) == 5
    for path in results:
        r = json.loads(path.read_text())
        assert {"flatness", "robustness"} <= set(r)
    stamps = {p: p.stat().st_mtime_ns for p in results + sorted(out.glob("runs/*/checkpoint.pt"))}
    start = time.perf_counter()
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert time.perf_counter() - start < first_s / 3
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())     # nothing redone


# ---------------------------------------------------------------- progress and reuse (fast)
@pytest.fixture
def tiny_demo(tmp_path, monkeypatch):
    """The demo with two tiny trainings and stand-ins for evaluation and the report; returns
    (run, calls, out): ``run(capsys)`` runs it into ``out`` and returns (stdout, overall bar)."""
    from tqdm.auto import tqdm

    import flatkd.report
    import flatkd.report.reference
    from flatkd import demo
    from flatkd.provenance import sha256_of

    calls = {"evaluate": [], "report": 0}
    real = demo.train_config

    def tiny(method, interval):
        cfg = real(method, interval)
        cfg.epochs, cfg.train_subset, cfg.test_subset = 2, 48, 32     # 3 steps/epoch
        return cfg

    def evaluate(ckpt, suites, *, config_file, out, progress):
        calls["evaluate"].append(ckpt.parent.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"checkpoint": {"sha256": sha256_of(ckpt)}}))

    def report(results, out_dir, progress=False):
        calls["report"] += 1
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.md").write_text("# flatkd report\n")
        return {"markdown": out_dir / "report.md"}

    def beside(own, reference):
        calls["reference"] = ([p.name for p in own], reference)
        return ["## Verdicts: from the shipped reference set, not from these runs"]

    bars = []

    class Bar(tqdm):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            bars.append(self)

    monkeypatch.setattr(demo, "RUNS", {"baseline": None, "spaced-online": 0.5})
    monkeypatch.setattr(demo, "train_config", tiny)
    monkeypatch.setattr(demo, "evaluate", evaluate)
    monkeypatch.setattr(demo, "tqdm", Bar)
    monkeypatch.setattr(flatkd.report, "build_report", report)
    monkeypatch.setattr(flatkd.report.reference, "beside_reference", beside)

    def run(capsys):
        bars.clear()
        demo.run_demo(tmp_path / "demo", progress=True)
        return capsys.readouterr().out, bars[0]

    return run, calls, tmp_path / "demo"


def test_demo_overall_bar_counts_updates_and_a_rerun_says_reused(tiny_demo, capsys):
    from flatkd import demo

    run, calls, out = tiny_demo
    first, bar = run(capsys)
    # baseline 6 updates, spaced-online 6 teacher + 6 replayed student updates; 2 evaluations
    assert bar.total == bar.n == 6 + 12 + 2 * demo.EVAL_WORK + demo.REPORT_WORK
    assert "[1/5] train baseline (resnet8 on digits, 6 updates)" in first
    assert "[3/5] train spaced-online (resnet8 on digits, 12 updates)" in first
    assert "[4/5] evaluate spaced-online: flatness + robustness" in first
    assert "reused" not in first and calls["evaluate"] == ["baseline", "spaced-online"]
    # one seed gives no verdict: the report ends with the runs beside the shipped reference set
    from flatkd.report.reference import reference_results_dir
    assert calls["reference"] == (["baseline.json", "spaced-online.json"], reference_results_dir())
    assert (out / "report" / "report.md").read_text().endswith(
        "## Verdicts: from the shipped reference set, not from these runs")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")
              if p.is_file() and "report" not in p.relative_to(out).parts}     # rebuilt each run

    second, bar = run(capsys)
    assert second.count("reused") == 4 and "[5/5] build the report" in second
    assert "[1/5] train baseline: reused" in second
    assert "[4/5] evaluate spaced-online: reused" in second
    assert "flatness + robustness" not in second and "updates" not in second
    assert calls["evaluate"] == ["baseline", "spaced-online"] and calls["report"] == 2
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())     # nothing redone
    assert bar.total == bar.n == demo.REPORT_WORK

    (out / "results" / "baseline.json").unlink()                         # one result missing
    third, bar = run(capsys)
    assert "[2/5] evaluate baseline: flatness + robustness" in third and third.count("reused") == 3
    assert bar.total == bar.n == demo.EVAL_WORK + demo.REPORT_WORK


def test_single_seed_runs_take_their_verdicts_from_the_reference_set(tmp_path):
    """Seed-0 results of the shipped reference set stand in for a demo's runs: each is shown
    beside the reference mean over its seeds, and the verdicts are the reference set's (its
    5-seed spaced-online vs online accuracy and the step-matched control of spaced self-KD)."""
    from flatkd.report.reference import beside_reference, reference_results_dir
    ref = reference_results_dir()
    assert ref is not None and ref.name == "results"
    own = [ref / f"{m}-seed0.json" for m in ("baseline", "online", "spaced-online")]
    text = "\n".join(beside_reference(own, ref))
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
            if line.startswith("| ") and "seed 0" in line}
    assert set(rows) == {"baseline (seed 0)", "online (seed 0)", "spaced-online (s=1.5) (seed 0)"}
    acc = json.loads(own[0].read_text())["robustness"]["clean_accuracy"]
    assert f"| {100 * acc:.2f} | " in rows["baseline (seed 0)"] and "(5 seeds)" in rows["baseline (seed 0)"]
    assert "* spaced-online (s=1.5) vs online, accuracy (final): " in text
    assert "5 vs 5 seeds, 360 test images" in text
    assert "Step-matched controls of the reference set" in text and "self (2,160 steps)" in text
    none = "\n".join(beside_reference(own, None))
    assert "too few for any verdict" in none and "* " not in none
