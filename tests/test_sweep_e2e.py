"""``flatkd sweep run <digits interval sweep> --launcher local`` end to end with real processes:
killed mid-sweep and re-run, it redoes no finished run and ends with the results of an
uninterrupted sweep; ``flatkd report`` draws accuracy vs interval from it. Slow: CI runs it in
its second step."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

#: the shipped digits interval sweep, shrunk: 256 training images (16 steps), 1 epoch, 2 intervals, 1 seed,
#: a checkpoint every step (so a kill lands mid-run), and a light evaluation
SHRINK = ["--set", "methods=[baseline,online,spaced-online]", "--set", "intervals=[0.25,0.5]",
          "--set", "seeds=0", "--set", "train.epochs=1", "--set", "train.train_subset=256",
          "--set", "train.test_subset=32", "--set", "train.checkpoint_every=1",
          "--set", "eval.set.robustness.corruptions=[brightness]",
          "--set", "eval.set.robustness.severities=[1]", "--set", "eval.set.robustness.epsilons=[]",
          "--set", "eval.set.robustness.workers=1"]
SWEEP = "flatkd/presets/sweeps/digits-intervals.yaml"
ROOT = Path(__file__).resolve().parents[1]
NAMES = ["baseline_resnet8_digits_seed0", "online_resnet8_digits_seed0",
         "spaced-online_resnet8_digits_s0.25_seed0", "spaced-online_resnet8_digits_s0.5_seed0"]


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flatkd", "sweep", "run", SWEEP, "--out", str(out), *SHRINK,
            *extra]


def _env(tmp_path) -> dict:
    return {**os.environ, "FLATKD_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _measured(result: Path) -> dict:
    """A result without what legitimately differs between two sweeps (the checkpoint hash: a
    resumed checkpoint records its resume in its provenance; and the provenance itself)."""
    data = json.loads(result.read_text())
    data["checkpoint"].pop("sha256")
    data.pop("provenance")
    return data


def _weights(ckpt: Path) -> dict:
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    return {"models": raw["models"], "metrics": raw["metrics"], "step": raw["step"]}


@pytest.mark.slow
def test_sweep_is_resumable_after_a_kill_and_the_report_draws_accuracy_vs_interval(tmp_path):
    env = _env(tmp_path)
    ref = tmp_path / "uninterrupted"
    done = subprocess.run(_cmd(ref, "--jobs", "2"), cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.stem for p in (ref / "results").glob("*.json")) == NAMES

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    first = out / "results" / f"{NAMES[0]}.json"
    second = out / "runs" / NAMES[1] / "checkpoint.pt"
    deadline = time.monotonic() + 600
    while not (first.exists() and second.exists()) and proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)          # the sweep and its flatkd train child
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()[-2000:]
    from flatkd import load_checkpoint
    interrupted_at = load_checkpoint(second).step
    total = load_checkpoint(ref / "runs" / NAMES[1] / "checkpoint.pt").step
    assert 0 < interrupted_at < total, "the kill did not land mid-run"
    finished = {p: p.stat().st_mtime_ns for p in [first, out / "runs" / NAMES[0] / "checkpoint.pt"]}

    again = subprocess.run(_cmd(out, "--report"), cwd=ROOT, env=env, capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "1 already finished" in again.stdout
    assert f"{NAMES[1]}: resume from epoch 0" in again.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())     # not redone
    for name in NAMES:
        assert _measured(out / "results" / f"{name}.json") == \
            _measured(ref / "results" / f"{name}.json"), name
        a, b = (_weights(d / "runs" / name / "checkpoint.pt") for d in (out, ref))
        assert a["metrics"] == b["metrics"] and a["step"] == b["step"]
        for net in a["models"]:
            for k, v in a["models"][net].items():
                assert torch.equal(v, b["models"][net][k]), (name, net, k)
    resumed = load_checkpoint(out / "runs" / NAMES[1] / "checkpoint.pt").provenance
    assert "resumed" in resumed

    # the report of the resumed sweep has the accuracy-vs-interval table and figure
    report = out / "report"
    table = (report / "tables" / "accuracy_vs_interval.csv").read_text()
    assert "spaced-online" in table and "0.25" in table and "0.5" in table
    assert (report / "figures" / "accuracy_vs_interval_digits_resnet8.png").stat().st_size > 0
    again = subprocess.run([sys.executable, "-m", "flatkd", "report", str(ref / "results"),
                            "--out", str(tmp_path / "ref-report")], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "ref-report" / "figures" / "accuracy_vs_interval_digits_resnet8.png").exists()

    # a third run finds everything finished and starts no process
    third = subprocess.run(_cmd(out), cwd=ROOT, env=env, capture_output=True, text=True)
    assert third.returncode == 0 and "0 to do" in third.stdout, third.stderr[-2000:]


@pytest.mark.slow
def test_slurm_job_array_through_submitits_local_executor(tmp_path):
    """The array tasks are pickled, started as separate processes by submitit and each trains and
    evaluates its run with real flatkd processes."""
    out = tmp_path / "slurm"
    cmd = [sys.executable, "-m", "flatkd", "sweep", "run", SWEEP, "--out", str(out), *SHRINK,
           "--set", "methods=[spaced-online]", "--set", "intervals=[0.5]",
           "--set", "slurm.timeout_min=20", "--launcher", "slurm", "--cluster", "local"]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "submitted 1 array task(s)" in done.stdout
    result = json.loads((out / "results" / "spaced-online_resnet8_digits_s0.5_seed0.json").read_text())
    assert result["checkpoint"]["interval"] == 0.5
    assert list((out / "slurm").rglob("*_result.pkl"))
