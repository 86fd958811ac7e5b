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
