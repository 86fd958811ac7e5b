"""Every bad input ends in one line on stderr naming what is wrong, exit code 2, nothing written."""
import math
import os
import stat

import pytest
import torch

from flatkd import checkpoint
from flatkd.checkpoint import content_sha256
from flatkd.cli import main
from flatkd.io import write_text

DIGITS = ["--arch", "resnet8", "--dataset", "digits"]
SMALL = ["--set", "train_subset=32", "--set", "test_subset=16", "--set", "batch_size=16", "--epochs", "1"]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def assert_clean(code, err, expect):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("flatkd: error: "), err
    assert "Traceback" not in err and "flatkd: error: flatkd" not in err   # no double prefix
    assert expect in err, err


# ---------------------------------------------------------------- broken checkpoints
def _mutate(raw, how):
    if how == "architectures":
        raw["architectures"] = ["resnet8"]
    elif how == "config":
        raw["config"] = "lr: 0.1"
    elif how == "arch_kwargs":
        raw["architectures"]["student"] = {**raw["architectures"]["student"], "depth": 3}
    elif how == "arch_width":
        raw["architectures"]["student"] = {**raw["architectures"]["student"], "width": 0}
    elif how == "version0":
        raw["version"] = 0
    elif how == "version-1":
        raw["version"] = -1
    elif how == "num_classes":
        raw["num_classes"] = "10"
    elif how == "nonfinite":
        w = raw["models"]["student"]["fc.weight"]
        w[0, 0] = math.nan
    # as a writer that made these mistakes would have recorded it: the content hash matches
    raw["integrity"] = {"content_sha256": content_sha256(raw)}
    return raw


def _flip_inside_a_tensor(src, dst, n=2000):
    """``src`` with ``n`` bytes inverted inside its largest tensor record (same size)."""
    import zipfile
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start, start + min(n, info.file_size)):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))


def _broken(how, digits_checkpoint, bad):
    """Write the broken checkpoint ``how`` to ``bad``."""
    if how == "empty":
        bad.write_bytes(b"")
    elif how == "yaml":
        bad.write_text("method: online\narch: resnet8\n")
    elif how == "flipped":
        _flip_inside_a_tensor(digits_checkpoint, bad)
    elif how == "altered":          # a valid archive whose tensor changed after the hash was taken
        raw = torch.load(digits_checkpoint, weights_only=True)
        raw["models"]["student"]["fc.bias"][0] += 1.0
        torch.save(raw, bad)
    else:
        torch.save(_mutate(torch.load(digits_checkpoint, weights_only=True), how), bad)


@pytest.mark.parametrize("how,expect", [
    ("empty", "is empty (0 bytes), not a flatkd checkpoint"),
    ("yaml", "is not a flatkd checkpoint"),
    ("architectures", "'architectures' must be a mapping"),
    ("config", "'config' must be a mapping"),
    ("arch_kwargs", "the architecture recorded for 'student' is invalid"),
    ("arch_width", "width must be a finite number > 0"),
    ("version0", "checkpoint version 0; this flatkd reads versions 1 to 1"),
    ("version-1", "checkpoint version -1"),
    ("num_classes", "'num_classes' must be an integer"),
    ("nonfinite", "non-finite weights (fc.weight holds NaN or Inf); refusing to evaluate it"),
    ("flipped", "is corrupted: record 'data/"),
    ("altered", "is corrupted: its content does not match the hash recorded when it was written"),
])
def test_broken_checkpoint_is_refused_by_eval(how, expect, digits_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    _broken(how, digits_checkpoint, bad)
    out = tmp_path / "r.json"
    code, err = run_cli(["eval", "--ckpt", bad, "--suite", "flatness", "--out", out], capsys)
    assert_clean(code, err, expect)
    assert not out.exists()


@pytest.mark.parametrize("method", ["offline", "stablekd"])
@pytest.mark.parametrize("how", ["flipped", "altered"])
def test_corrupted_teacher_checkpoint_is_refused_before_training(method, how, digits_checkpoint,
                                                                 tmp_path, capsys):
    bad = tmp_path / "teacher.pt"
    _broken(how, digits_checkpoint, bad)
    out = tmp_path / "run"
    epochs = ["--epochs", "3"] if method == "stablekd" else []     # StableKD-4/2: 3 stages
    code, err = run_cli(["train", "--method", method, *DIGITS, *SMALL, *epochs, "--teacher-ckpt",
                         bad, "--out", out, "--quiet"], capsys)
    assert_clean(code, err, "is corrupted")
    assert not out.exists()


@pytest.mark.parametrize("method", ["offline", "stablekd", "dkd", "at", "shake", "kd-mse"])
def test_non_finite_teacher_is_refused_before_anything_is_written(method, digits_checkpoint,
                                                                  tmp_path, capsys):
    bad = tmp_path / "nan.pt"
    _broken("nonfinite", digits_checkpoint, bad)
    out = tmp_path / "run"
    epochs = ["--epochs", "3"] if method in ("stablekd", "kd-mse") else []
    code, err = run_cli(["train", "--method", method, *DIGITS, *SMALL, *epochs, "--teacher-ckpt",
                         bad, "--out", out, "--quiet"], capsys)
    assert_clean(code, err, "network 'student' has non-finite weights (fc.weight holds NaN or "
                            "Inf); refusing to distil from it")
    assert not out.exists()


@pytest.mark.parametrize("method", ["online", "baseline", "dml"])
def test_teacher_ckpt_is_refused_where_it_would_be_ignored(method, digits_checkpoint, tmp_path,
                                                           capsys):
    out = tmp_path / "run"
    code, err = run_cli(["train", "--method", method, *DIGITS, *SMALL, "--teacher-ckpt",
                         digits_checkpoint, "--out", out, "--quiet"], capsys)
    assert_clean(code, err, f"--teacher-ckpt: {method} does not distil from a pretrained "
                            "teacher, so it would be ignored; methods that take one: at, dkd,")
    assert not out.exists()


# ---------------------------------------------------------------- training settings
@pytest.mark.parametrize("extra,expect", [
    (["--set", "optim.lr=inf"], "optim.lr must be a finite number > 0, got inf"),
    (["--set", "optim.lr=.nan"], "optim.lr must be a finite number > 0"),
    (["--set", "optim.lr=1e300"], "optim.lr=1e+300 overflows float32"),
    (["--method", "spaced-online", "--interval", "inf"], "interval must be a finite number of epochs"),
    (["--set", "num_workers=-1"], "num_workers must be ≥ 0"),
    (["--set", "teacher_width=0"], "teacher_width must be a finite number > 0"),
    (["--set", "optim.warmup_epochs=-1"], "optim.warmup_epochs must lie in [0, epochs]"),
    (["--set", "checkpoint_every=-2"], "checkpoint_every must be ≥ 0"),
    (["--set", "batch_size=5000"], "batch_size=5000 exceeds the 32 training samples"),
    (["--set", "kd.feature_loss=mse"], "valid choices: l2, l1, smoothl1, ce, dist"),
    (["--set", "kd.teacher_init=shared"], "valid choices: independent, same"),
    (["--method", "online", "--set", "augment.rotation=maybe"], "expects true/false"),
    (["--method", "pskd", "--set", "pskd.alpha_T=nan"], "pskd.alpha_T must lie in [0, 1], got nan"),
    (["--method", "pskd", "--set", "pskd.alpha_T=2"], "pskd.alpha_T must lie in [0, 1], got 2"),
    (["--method", "pskd", "--set", "pskd.alpha_T=-1"], "pskd.alpha_T must lie in [0, 1], got -1"),
    (["--set", "spaced.window_epochs=1"], "would be ignored by online; they apply to: spaced-ban"),
    (["--method", "constant-ahead", "--set", "spaced.window_epochs=1"],
     "(the critical period) would be ignored by constant-ahead"),
])
def test_bad_training_settings(extra, expect, tmp_path, capsys):
    method = [] if "--method" in extra else ["--method", "online"]
    argv = ["train", *method, *DIGITS, *SMALL, *extra, "--out", tmp_path / "run"]
    code, err = run_cli(argv, capsys)
    assert_clean(code, err, expect)
    assert not (tmp_path / "run").exists()


def test_overflowing_lr_never_saves_non_finite_weights(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--method", "baseline", *DIGITS, *SMALL, "--set", "optim.lr=1e30",
            "--set", "checkpoint_every=1", "--out", out, "--quiet"]
    code, err = run_cli(argv, capsys)
    assert_clean(code, err, "step")
    assert "became" in err
    ck = out / "checkpoint.pt"
    if ck.exists():                                   # whatever was saved is finite
        raw = torch.load(ck, weights_only=True)
        assert all(torch.isfinite(v).all() for m in raw["models"].values() for v in m.values()
                   if v.is_floating_point())
        assert "last good checkpoint" in err
    else:
        assert "no checkpoint was written" in err


# ---------------------------------------------------------------- output paths
@pytest.mark.parametrize("where,expect", [
    ("file", "exists and is a file"),
    ("inside_file", "which is a file"),
    ("unwritable", "is not writable"),
])
def test_train_output_path_is_checked_before_any_work(where, expect, tmp_path, capsys):
    target = {"file": tmp_path / "taken", "inside_file": tmp_path / "taken" / "run",
              "unwritable": "/proc/flatkd-test/run"}[where]
    (tmp_path / "taken").write_text("x")
    code, err = run_cli(["train", "--method", "online", *DIGITS, *SMALL, "--out", target], capsys)
    assert_clean(code, err, expect)
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize("where,expect", [
    ("dir", "exists and is a directory"),
    ("inside_file", "which is a file"),
    ("unwritable", "is not writable"),
])
def test_eval_output_path_is_checked_before_any_work(where, expect, digits_checkpoint, tmp_path,
                                                      capsys, monkeypatch):
    ran = []
    monkeypatch.setattr("flatkd.evaluator.SUITES.get", lambda name: ran.append(name))
    (tmp_path / "taken").write_text("x")
    target = {"dir": tmp_path, "inside_file": tmp_path / "taken" / "r.json",
              "unwritable": "/proc/flatkd-test/r.json"}[where]
    code, err = run_cli(["eval", "--ckpt", digits_checkpoint, "--suite", "flatness",
                         "--out", target], capsys)
    assert_clean(code, err, expect)
    assert ran == []                                  # no suite started


def test_eval_replaces_an_existing_result_file_atomically(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("an older result\n")
    argv = ["eval", "--ckpt", digits_checkpoint, "--suite", "robustness", "--set",
            "robustness.corruptions=[brightness]", "--set", "robustness.severities=[1]",
            "--set", "robustness.attacks=[]", "--out", out, "--quiet"]
    assert run_cli(argv, capsys)[0] == 0
    import json
    assert json.loads(out.read_text())["checkpoint"]["path"] == str(digits_checkpoint)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]           # no temp file left


def test_eval_model_names_any_network_of_the_checkpoint(digits_checkpoint, tmp_path, capsys):
    """--model is not limited to student/teacher (a TAKD checkpoint holds an assistant, BAN
    gen1, …): the checkpoint says which it holds."""
    code, err = run_cli(["eval", "--ckpt", digits_checkpoint, "--suite", "flatness", "--model",
                         "assistant", "--out", tmp_path / "r.json"], capsys)
    assert_clean(code, err, "has no model 'assistant'; valid choices: student, teacher")
    from flatkd import checkpoint
    raw = torch.load(digits_checkpoint, weights_only=True)       # a checkpoint with an assistant
    raw["architectures"]["assistant"] = raw["architectures"]["student"]
    raw["models"]["assistant"] = raw["models"]["student"]
    checkpoint.save(tmp_path / "takd.pt", {k: v for k, v in raw.items() if k != "integrity"})
    out = tmp_path / "a.json"
    assert run_cli(["eval", "--ckpt", tmp_path / "takd.pt", "--suite", "robustness", "--model",
                    "assistant", "--set", "robustness.corruptions=[brightness]", "--set",
                    "robustness.severities=[1]", "--set", "robustness.attacks=[]", "--out", out,
                    "--quiet"], capsys)[0] == 0
    import json
    assert json.loads(out.read_text())["checkpoint"]["model"] == "assistant"


# ---------------------------------------------------------------- resume
def test_resume_with_changed_settings_is_refused_naming_the_key(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--method", "online", *DIGITS, *SMALL, "--out", out, "--quiet",
            "--set", "optim.schedule=constant"]              # constant lr: epochs may grow
    assert run_cli(base, capsys)[0] == 0
    config_before = (out / "config.yaml").read_bytes()
    code, err = run_cli(base + ["--resume", "--set", "optim.lr=0.2"], capsys)
    assert_clean(code, err, "trained with optim.lr=0.05 but this run asks for 0.2")
    assert (out / "config.yaml").read_bytes() == config_before
    code, err = run_cli(base + ["--resume", "--set", "kd.teacher_init=same"], capsys)
    assert_clean(code, err, "kd.teacher_init")
    assert run_cli(base + ["--resume", "--epochs", "2", "--set", "num_workers=0"], capsys)[0] == 0
    cosine = ["train", "--method", "online", *DIGITS, *SMALL, "--out", tmp_path / "cos", "--quiet"]
    assert run_cli(cosine, capsys)[0] == 0                          # the digits preset: cosine
    code, err = run_cli(cosine + ["--resume", "--epochs", "2"], capsys)
    assert_clean(code, err, "epochs cannot change under the cosine lr schedule")


@pytest.mark.parametrize("edit,expect", [
    (lambda raw: raw.pop("state"), "holds no training-loop state (state.method, "
                                   "state.replay_steps, state.optimizer_steps missing"),
    (lambda raw: raw["state"].pop("optimizer_steps"), "state.optimizer_steps missing"),
    (lambda raw: raw["models"].pop("teacher"), "network 'teacher' needs an architecture mapping"),
    (lambda raw: raw["optim"].pop("teacher"), "the checkpoint's optim lack teacher"),
])
def test_resume_of_a_checkpoint_without_its_state_is_refused(tmp_path, capsys, edit, expect):
    out = tmp_path / "run"
    base = ["train", "--method", "online", *DIGITS, *SMALL, "--out", out, "--quiet"]
    assert run_cli(base, capsys)[0] == 0
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    edit(raw)
    checkpoint.save(out / "checkpoint.pt", {k: v for k, v in raw.items() if k != "integrity"})
    before = (out / "checkpoint.pt").read_bytes()
    code, err = run_cli(base + ["--resume"], capsys)
    assert_clean(code, err, expect)
    assert (out / "checkpoint.pt").read_bytes() == before


# ---------------------------------------------------------------- files
def test_orphaned_temp_files_are_removed_and_files_follow_the_umask(tmp_path):
    orphan = tmp_path / ".checkpoint.pt.abc123.tmp"
    orphan.write_bytes(b"half")
    other = tmp_path / ".other.pt.abc.tmp"
    other.write_bytes(b"keep")
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "checkpoint.pt", "ok")
    finally:
        os.umask(old)
    assert not orphan.exists() and other.exists()
    assert stat.S_IMODE((tmp_path / "checkpoint.pt").stat().st_mode) == 0o640


def test_weights_gone_non_finite_are_never_saved(tmp_path):
    from flatkd.errors import TrainingDiverged
    from flatkd.training import Trainer, resolve

    def poison(t, u, x, y):            # a BN buffer: the train-mode loss stays finite
        if u.spec.step == 2:
            t.method.nets.modules["student"].stem[1].running_var.fill_(math.inf)

    cfg = resolve("baseline", "resnet8", "digits", epochs=2,
                  overrides={"train_subset": 32, "test_subset": 16, "batch_size": 16})
    t = Trainer(cfg, tmp_path / "run", progress=False, on_update=poison)
    with pytest.raises(TrainingDiverged, match=r"student weight stem.1.running_var became non-finite "
                                               r"by step 2 \(epoch 1\); not saved: no checkpoint"):
        t.run()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ---------------------------------------------------------------- report inputs
def _result(**sections):
    return {"format": "flatkd.result", "version": 1,
            "checkpoint": {"method": "online", "arch": "resnet8", "dataset": "digits",
                           "interval": None}, **sections, "provenance": {}}


@pytest.mark.parametrize("sections,expect", [
    ({"flatness": "flat"}, "flatness must be an object, got str"),
    ({"flatness": {"hessian": {"trace": {"mean": "big"}}}}, "flatness.hessian.trace.mean must be int or float"),
    ({"flatness": {"hessian": {"top_eigenvalues": 3.0}}}, "flatness.hessian.top_eigenvalues must be a list"),
    ({"flatness": {"perturbation": [{"sigma": None}]}}, "flatness.perturbation[0].sigma must be int or float"),
    ({"robustness": {"corruptions": {"frost": 0.5}}}, "robustness.corruptions must be a list"),
    ({"robustness": {"corruptions": ["frost"]}}, "robustness.corruptions[0] must be an object"),
    ({"robustness": {"adversarial": [{"attack": "BIM", "epsilon": 0.1, "accuracy": True}]}},
     "robustness.adversarial[0].accuracy must be int or float"),
    ({"robustness": {"clean_accuracy": 97}}, "accuracy must be a fraction in [0, 1]"),
])
def test_report_refuses_results_with_wrongly_typed_sections(sections, expect, tmp_path, capsys):
    import json
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_result(**sections)))
    code, err = run_cli(["report", bad, "--out", tmp_path / "report"], capsys)
    assert_clean(code, err, expect)
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("command", [["report", "x.json"], ["demo"]])
def test_report_and_demo_output_that_is_a_file_is_refused(command, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    code, err = run_cli(command + ["--out", taken], capsys)
    assert_clean(code, err, "exists and is a file")
    assert taken.read_text() == "x"


# ---------------------------------------------------------------- --set values that are not YAML
@pytest.mark.parametrize("value,expect", [
    ("[0.1,", "the value is not valid YAML"),
    ("!!python/object/apply:os.system [echo]", "carries a YAML tag that is not plain data"),
    ("{a: 1", "the value is not valid YAML"),
])
@pytest.mark.parametrize("command", ["train", "eval", "sweep"])
def test_set_value_that_is_not_plain_yaml_is_refused(command, value, expect, digits_checkpoint,
                                                     tmp_path, capsys):
    argv = {"train": ["train", "--method", "online", *DIGITS, *SMALL, "--set", f"kd.alpha={value}",
                      "--out", tmp_path / "run"],
            "eval": ["eval", "--ckpt", digits_checkpoint, "--suite", "flatness", "--set",
                     f"hessian.samples={value}", "--out", tmp_path / "run" / "r.json"],
            "sweep": ["sweep", "plan", "digits-intervals", "--set", f"seeds={value}"]}[command]
    code, err = run_cli(argv, capsys)
    assert_clean(code, err, expect)
    assert not (tmp_path / "run").exists()


def test_a_closed_pipe_ends_the_output_quietly():
    """``flatkd sweep plan … | head``: the reader stops after one line; no BrokenPipe trace."""
    import subprocess
    import sys
    seeds = ",".join(map(str, range(300)))                 # ~5,000 lines, past a pipe's buffer
    p = subprocess.Popen([sys.executable, "-m", "flatkd", "sweep", "plan", "digits-intervals",
                          "--set", f"seeds={seeds}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().startswith(b"sweep digits-intervals: 5100 runs")
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0 and err == ""


# ---------------------------------------------------------------- refused before any suite runs
@pytest.mark.parametrize("case,expect", [
    ("no_labels", "is not a published corruption folder (no labels.npy)"),
    ("missing_partner", "checkpoint not found: /missing.pt"),
    ("nan_partner", "network 'student' has non-finite weights (fc.weight holds NaN or Inf); "
                    "refusing to measure a path to it"),
    ("huge_sigma", "perturbation.sigmas: 1e+30 is above 10"),
    ("huge_rho", "sharpness.rho must lie in (0, 1], got 1e+30"),
])
def test_inputs_of_later_suites_are_checked_before_the_first_runs(case, expect, digits_checkpoint,
                                                                  tmp_path, capsys, monkeypatch):
    import flatkd.flatness.suite as flat

    def never(*a, **k):
        raise AssertionError("the flatness suite ran before the bad input was refused")
    monkeypatch.setattr(flat, "run_flatness", never)
    (tmp_path / "pub").mkdir()
    nan = tmp_path / "nan.pt"
    _broken("nonfinite", digits_checkpoint, nan)
    sets = {"no_labels": ["--suite", "flatness,robustness", "--set", "robustness.source=published",
                          "--set", f"robustness.published_dir={tmp_path / 'pub'}"],
            "missing_partner": ["--suite", "all", "--set", "landscape.path_to=/missing.pt"],
            "nan_partner": ["--suite", "flatness,landscape", "--set", f"landscape.path_to={nan}"],
            "huge_sigma": ["--suite", "flatness", "--set", "perturbation.sigmas=0,1e30"],
            "huge_rho": ["--suite", "flatness,sharpness", "--set", "sharpness.rho=1e30"]}[case]
    out = tmp_path / "r.json"
    code, err = run_cli(["eval", "--ckpt", digits_checkpoint, *sets, "--out", out], capsys)
    assert_clean(code, err, expect)
    assert not out.exists()


def _published_folder(root, how):
    """A published corruption folder for the digits test split (360 images of 32 × 32), with
    one defect ``how``."""
    import numpy as np
    from flatkd import datasets
    labels = np.asarray(datasets.get("digits", "test").targets)
    d = root / "pub"
    d.mkdir()
    stored = np.tile(labels, 5)
    stored = {"float_labels": stored.astype(np.float64), "string_labels": stored.astype(str),
              "other_labels": np.roll(stored, 1)}.get(how, stored)
    np.save(d / "labels.npy", stored)
    size = 28 if how == "wrong_size" else 32
    images = np.zeros((5 * len(labels), size, size, 3), dtype=np.uint8)
    np.save(d / "brightness.npy", images.astype(np.float32) if how == "float_images" else images)
    if how == "garbage":
        (d / "brightness.npy").write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "truncated":
        (d / "brightness.npy").write_bytes((d / "brightness.npy").read_bytes()[:100_000])
    elif how == "object":
        np.save(d / "brightness.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return d


@pytest.mark.parametrize("how,expect", [
    ("garbage", "brightness.npy is not a readable .npy array"),
    ("truncated", "brightness.npy is not a readable .npy array"),
    ("object", "brightness.npy is not a readable .npy array"),
    ("float_images", "brightness.npy is float32 (1800, 32, 32, 3); expected uint8 [1800, 32, 32, 3]"),
    ("wrong_size", "brightness.npy is uint8 (1800, 28, 28, 3); expected uint8 [1800, 32, 32, 3]"),
    ("float_labels", "labels.npy is float64 (1800,); expected integer labels [1800]"),
    ("string_labels", "labels.npy is <U21 (1800,); expected integer labels [1800]"),
    ("other_labels", "the labels of severity 1 differ from the test split's"),
])
def test_published_files_that_cannot_be_the_benchmark_are_refused_before_any_suite(
        how, expect, digits_checkpoint, tmp_path, capsys, monkeypatch):
    import flatkd.flatness.suite as flat

    def never(*a, **k):
        raise AssertionError("the flatness suite ran before the bad input was refused")
    monkeypatch.setattr(flat, "run_flatness", never)
    folder = _published_folder(tmp_path, how)
    out = tmp_path / "r.json"
    code, err = run_cli(["eval", "--ckpt", digits_checkpoint, "--suite", "flatness,robustness",
                         "--set", "robustness.source=published", "--set",
                         f"robustness.published_dir={folder}", "--set",
                         "robustness.corruptions=brightness", "--out", out], capsys)
    assert_clean(code, err, expect)
    assert not out.exists()


@pytest.mark.parametrize("argv,expect", [
    (["--resamples", "0"], "resamples must be an integer in [1, 1,000,000], got 0"),
    (["--resamples", "-5"], "got -5"),
    (["--resamples", "1000000000"], "got 1000000000"),
    (["--seed", "-1"], "seed must be an integer ≥ 0, got -1"),
    (["--out", "DIR"], "study file DIR exists and is a directory"),
    (["--out", "/proc/flatkd-test/s.json"], "is not writable"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_study_refuses_bad_settings_before_reading_anything(argv, expect, tmp_path, capsys,
                                                            monkeypatch):
    import flatkd.study.study as st
    from flatkd.study.__main__ import main as study_main

    def never(*a, **k):
        raise AssertionError("the study read its results before refusing")
    monkeypatch.setattr(st, "load", never)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DIR").mkdir()
    args = ["results/", *argv] + ([] if "--out" in argv else ["--out", "s.json"])
    assert study_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flatkd.study: error: ") and expect in err, err
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("reader", ["report", "study"])
def test_a_truncated_result_in_a_folder_is_named_not_dropped(reader, tmp_path, capsys):
    """One good and one truncated result: refused naming the truncated file (it used to report
    "1 result files")."""
    import report_fixtures as fx
    good = fx.write_results(tmp_path / "res")[0]
    cut = good.with_name("cut.json")
    cut.write_text(good.read_text()[:300])
    if reader == "report":
        code, err = run_cli(["report", tmp_path / "res", "--out", tmp_path / "out"], capsys)
    else:
        from flatkd.study.__main__ import main as study_main
        code = study_main([str(tmp_path / "res"), "--out", str(tmp_path / "s.json")])
        err = capsys.readouterr().err.replace("flatkd.study: error: ", "flatkd: error: ")
    assert_clean(code, err, f"{cut} under {tmp_path / 'res'} is not valid JSON")
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("how,expect", [
    ("no_epsilon", "robustness.adversarial[0] lacks 'epsilon'"),
    ("sharpness_list", "sharpness must be an object, got list"),
    ("landscape_str", "landscape must be an object, got str"),
    ("seed_str", "checkpoint.seed must be an integer or null, got '0'"),
    ("deep", "nested too deeply"),
])
def test_report_refuses_a_malformed_result_in_one_line(how, expect, tmp_path, capsys):
    import json
    import report_fixtures as fx
    path = fx.write_results(tmp_path / "res", methods=("online",), seeds=(0,))[0]
    data = json.loads(path.read_text())
    if how == "no_epsilon":
        data["robustness"]["adversarial"] = [{"attack": "bim", "accuracy": 0.5}]
    elif how == "sharpness_list":
        data["sharpness"] = [1, 2]
    elif how == "landscape_str":
        data["landscape"] = "flat"
    elif how == "seed_str":
        data["checkpoint"]["seed"] = "0"
    text = json.dumps(data) if how != "deep" else "[" * 100_000 + "]" * 100_000
    path.write_text(text)
    code, err = run_cli(["report", path, "--out", tmp_path / "out"], capsys)
    assert_clean(code, err, expect)
    assert not (tmp_path / "out").exists()
