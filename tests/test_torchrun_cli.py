"""``flatkd train|eval --nproc-per-node N`` and bare torchrun: a refused input is reported once,
by rank 0, with flatkd's exit code; the launch itself trains like torchrun does."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import flatkd
from flatkd.torchrun import _outcome, strip_option

TINY = ["--arch", "resnet8", "--dataset", "digits", "--epochs", "1", "--quiet",
        "--set", "train_subset=64", "--set", "test_subset=32", "--set", "batch_size=16"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _flatkd(*argv):
    return subprocess.run([sys.executable, "-m", "flatkd", *argv], capture_output=True,
                          text=True, env=ENV, timeout=300)


def test_strip_option_removes_both_spellings():
    argv = ["train", "--nproc-per-node", "2", "--out", "r", "--nproc-per-node=3", "--quiet"]
    assert strip_option(argv, "--nproc-per-node") == ["train", "--out", "r", "--quiet"]


def test_outcome_maps_the_failed_ranks_to_one_exit_code(capsys):
    def fail(code, message=""):
        return SimpleNamespace(exitcode=code, message=message)
    # rank 0 refused (it printed the line itself): exit 2, nothing more
    assert _outcome({0: fail(2, "bad"), 1: fail(-15)}) == 2
    assert capsys.readouterr().err == ""
    # another rank refused first, rank 0 was stopped by torchrun: that rank's line, once
    assert _outcome({0: fail(-15), 1: fail(2, "train: unknown thing 'x'")}) == 2
    assert capsys.readouterr().err == "flatkd: error: train: unknown thing 'x'\n"
    assert _outcome({0: fail(130), 1: fail(-15)}) == 130
    assert _outcome({1: fail(1), 0: fail(-15)}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "process 0" in err and "exit code -15" in err


@pytest.mark.parametrize("argv", [
    ["train", "--method", "spaced-online", *TINY, "--set", "kd.alpha=[0.1,"],   # in the ranks
    ["train", "--method", "online", *TINY, "--teacher-ckpt", "/missing.pt"],
    ["eval", "--ckpt", "/missing/checkpoint.pt", "--suite", "flatness"],
    ["train", "--method", "spaced-onlin", *TINY],                  # argparse, before the launch
], ids=["bad-yaml", "ignored-teacher", "missing-ckpt", "unknown-method"])
def test_a_refused_input_under_nproc_is_one_line_exit_2_nothing_written(tmp_path, argv):
    out = tmp_path / "out"
    proc = _flatkd(*argv, "--nproc-per-node", "2", "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flatkd: error: "), proc.stderr[-2000:]
    assert not out.exists()


def test_bare_torchrun_prints_flatkd_s_line_once_and_leaves_it_in_the_error_files(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "flatkd", "train", "--method", "spaced-online", *TINY, "--set", "kd.alpha=[0.1,",
         "--out", str(tmp_path / "out")], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("flatkd: error:")]
    assert len(ours) == 1 and "kd.alpha" in ours[0]
    # torchrun's summary quotes the root cause from the worker's error file, not its placeholder
    assert "traceback : --set kd.alpha=[0.1,: the value is not valid YAML" in proc.stderr


def test_nproc_2_trains_in_two_processes_and_reports_once(tmp_path):
    out = tmp_path / "run"
    proc = _flatkd("train", "--method", "online", *TINY, "--out", str(out),
                   "--nproc-per-node", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("checkpoint:") == 1 and proc.stderr == ""
    ck = flatkd.load_checkpoint(out / "checkpoint.pt")
    assert ck.provenance["world_size"] == 2 and ck.step == 4
    result = tmp_path / "r.json"
    proc = _flatkd("eval", "--ckpt", str(out / "checkpoint.pt"), "--suite", "robustness",
                   "--set", "robustness.corruptions=gaussian_noise", "--set",
                   "robustness.severities=1", "--set", "robustness.epsilons=[]", "--quiet",
                   "--nproc-per-node", "2", "--out", str(result))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == f"result: {result}\n" and proc.stderr == ""
    assert "robustness" in json.loads(result.read_text())
