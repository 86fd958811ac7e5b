"""Smoke run of ``benchmarks/hessian_vs_pyhessian.py`` on a tiny setting: it runs end to end,
prints every goal line, and its exact trace agrees with an independent HVP estimate."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_prints_the_goal_lines_and_a_consistent_exact_trace():
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hessian_vs_pyhessian.py"), "--samples", "16",
         "--seeds", "1", "--epochs", "1", "--models", "mlp", "--check-hvps", "40", "--threads",
         "1", "--no-hutchpp"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    goals = [ln for ln in lines if ln.strip().startswith("GOAL")]
    assert len(goals) == 4 and all(re.search(r"-> (holds|FAILS)", ln) for ln in goals)
    assert "no stop rule can return earlier" in goals[0]
    assert all("is exact with 0 products" in ln and "-> holds;" in ln for ln in goals[2:])
    first = next(ln for ln in lines if "first step of the native runs" in ln)
    (step,) = map(int, re.findall(r"\[(\d+)\]", first))
    native = next(ln for ln in lines if ln.strip().startswith("native"))
    assert 5 <= step <= int(re.search(r"HVPs \[(\d+)\]", native).group(1))   # reached by the stop
    z = float(re.search(r"z = ([-+0-9.]+)\)", next(ln for ln in lines if "exact trace" in ln))
              .group(1))
    assert abs(z) < 4
