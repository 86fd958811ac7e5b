"""``flatkd sweep``: expansion, stable names, bad files, skip/resume decisions, launch commands and
the SLURM job array (submitit's debug executor; no cluster). Training and evaluation run in this
process here (the launcher's child processes are replaced by ``flatkd.cli.main``); the end-to-end
test with real processes, a kill and a resume is in ``test_sweep_e2e.py``."""
import json
import os
import pickle
from pathlib import Path

import pytest
import yaml

from flatkd import sweep as sw
from flatkd.cli import main
from flatkd.errors import FlatkdError
from flatkd.sweep import launch, slurm
from flatkd.sweep.spec import preset_names

#: a sweep small enough to train and evaluate in-process in seconds
TINY = {
    "methods": ["online", "spaced-online"],
    "archs": ["resnet8"],
    "datasets": ["digits"],
    "intervals": [0.5, 1],
    "seeds": [0],
    "train": {"epochs": 2, "train_subset": 32, "test_subset": 16},
    "eval": {"suite": "robustness",
             "set": {"robustness.corruptions": ["brightness"], "robustness.severities": [1],
                     "robustness.epsilons": [], "robustness.workers": 1}},
}

#: what the tests that train and evaluate run: two runs
RUN = {**TINY, "methods": ["spaced-online"],        # constant lr: more epochs may resume
       "train": {**TINY["train"], "optim.schedule": "constant"}}


def _write(tmp_path, data, name="tiny.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _load(tmp_path, data, **kw):
    return sw.load(_write(tmp_path, data), out=tmp_path / "out", **kw)


class InProcess:
    """Stands in for the child processes: runs ``flatkd train|eval`` through ``cli.main`` in this
    process (in the child's working directory) and records every command."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv, log, cwd, env, pass_fds):
        assert argv[:3] == [argv[0], "-m", "flatkd"]
        args = argv[3:]
        self.calls.append(args)
        if self.fail_on and any(self.fail_on in a for a in args):
            return 1
        here = os.getcwd()
        os.chdir(cwd or here)
        try:
            return main(args)
        finally:
            os.chdir(here)

    def commands(self) -> list[str]:
        return [a[0] + (" --resume" if "--resume" in a else "") for a in self.calls]


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """Child processes replaced by this one, with one intra-op thread (tiny nets; on a loaded
    2-core machine two threads spin-wait for each other)."""
    import torch
    monkeypatch.setenv("FLATKD_CACHE", str(tmp_path / "cache"))
    fake = InProcess()
    monkeypatch.setattr(launch.Children, "call", fake)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield fake
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- expansion and names

def test_axes_expand_to_stably_named_runs(tmp_path):
    data = {**TINY, "methods": ["baseline", "online", "spaced-online", "spaced-self"],
            "intervals": {"spaced-online": [0.5, 1.0], "spaced-self": [1.5]},
            "seeds": [0, 1], "grid": {"kd.teacher_init": ["independent", "same"]}}
    s = _load(tmp_path, data)
    names = [r.name for r in s.runs]
    assert len(names) == len(set(names)) == 2 * 2 * (2 + 2 + 1)
    assert names[:5] == [
        "baseline_resnet8_digits_kd.teacher_init-independent_seed0",
        "online_resnet8_digits_kd.teacher_init-independent_seed0",
        "spaced-online_resnet8_digits_s0.5_kd.teacher_init-independent_seed0",
        "spaced-online_resnet8_digits_s1_kd.teacher_init-independent_seed0",
        "spaced-self_resnet8_digits_s1.5_kd.teacher_init-independent_seed0"]
    by = {r.name: r for r in s.runs}
    r = by["spaced-online_resnet8_digits_s1_kd.teacher_init-same_seed1"]
    assert (r.method, r.interval, r.seed, r.grid) == ("spaced-online", 1.0, 1,
                                                      {"kd.teacher_init": "same"})
    cfg = r.config()
    assert cfg.spaced.interval == 1.0 and cfg.kd.teacher_init == "same" and cfg.epochs == 2
    assert all(r.interval is None for r in s.runs if r.method in ("baseline", "online"))
    # adding a value to an axis renames nothing that exists
    more = _load(tmp_path, {**data, "seeds": [0, 1, 2], "intervals": {
        "spaced-online": [0.5, 1.0, 1.5], "spaced-self": [1.5]}})
    assert set(names) < {r.name for r in more.runs}


def test_blocks_unite_partial_sweeps_and_inherit_top_level_keys(tmp_path):
    data = {k: v for k, v in TINY.items() if k != "methods"}
    data["blocks"] = [{"methods": ["online"]},                  # intervals inherited, not used
                      {"methods": ["spaced-online"], "grid": {"spaced.leftover": ["distil"]}},
                      {"methods": ["online", "spaced-online"], "intervals": [1]}]
    s = _load(tmp_path, data)
    assert [r.name for r in s.runs] == [
        "online_resnet8_digits_seed0",
        "spaced-online_resnet8_digits_s0.5_spaced.leftover-distil_seed0",
        "spaced-online_resnet8_digits_s1_spaced.leftover-distil_seed0",
        "spaced-online_resnet8_digits_s1_seed0"]                  # online listed once


def test_set_overrides_keys_of_the_sweep_file(tmp_path):
    s = _load(tmp_path, TINY, overrides={"seeds": "0,1", "train.epochs": "3",
                                         "intervals": "[0.25]", "eval.suite": "flatness",
                                         "eval.set.hessian.samples": "8",
                                         "grid.kd.teacher_init": "same"})
    assert {r.seed for r in s.runs} == {0, 1} and {r.interval for r in s.runs} == {None, 0.25}
    assert all(r.config().epochs == 3 and r.grid == {"kd.teacher_init": "same"} for r in s.runs)
    assert s.eval.suite == "flatness" and s.eval.resolved().hessian.samples == 8


@pytest.mark.parametrize("name", preset_names())
def test_shipped_sweeps_are_valid(name, tmp_path):
    from flatkd import config as cfgmod
    from flatkd.training.config import TrainConfig
    text = Path(str(sw.spec.presets_dir().joinpath(f"{name}.yaml"))).read_text()
    if "start_epoch" in text and "spaced.start_epoch" not in cfgmod.valid_keys(TrainConfig()):
        pytest.skip("spaced.start_epoch is not a training key yet")
    s = sw.load(name, out=tmp_path / "out")
    assert s.name == name and len(s.runs) >= 10
    assert {r.method for r in s.runs} >= {"baseline", "online", "spaced-online"}
    if "intervals" in name:
        assert {r.interval for r in s.runs} >= {0.5, 1.0, 1.5, 2.0, 5.0}
        assert {r.seed for r in s.runs} == {0, 1, 2}
    if name.startswith("paper"):
        assert {r.arch for r in s.runs} == {"resnet18"} and {r.dataset for r in s.runs} == {"cifar100"}
        assert s.runs[-1].config().epochs == 80
    else:
        assert {r.arch for r in s.runs} == {"resnet8"} and {r.dataset for r in s.runs} == {"digits"}


def test_sweeps_are_package_data():
    import tomllib
    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert "presets/sweeps/*.yaml" in data["tool"]["setuptools"]["package-data"]["flatkd"]
    assert len(preset_names()) >= 4


# ---------------------------------------------------------------- bad sweep files

BAD = [
    ({"colour": "red"}, "unknown key 'colour'; valid keys: name, out, methods"),
    ({"methods": ["online", "magic"]}, "unknown method 'magic' in methods; valid choices: "),
    ({"archs": ["resnet9"]}, "unknown arch 'resnet9' in archs; valid choices:"),
    ({"datasets": ["mnist"]}, "unknown dataset 'mnist' in datasets; valid choices: cifar10"),
    ({"seeds": []}, "seeds is empty"),
    ({"methods": []}, "methods is empty"),
    ({"methods": None}, "methods is missing; valid choices: "),
    ({"seeds": [0, 0]}, "seeds lists 0 twice"),
    ({"seeds": [-1]}, "valid: integers ≥ 0"),
    ({"methods": ["online"]}, "apply to spaced methods only ("),
    ({"intervals": {"online": [1]}}, "'online' is not a spaced method; valid choices: "),
    ({"intervals": [-1]}, "finite numbers of epochs ≥ 0"),
    ({"intervals": [2]}, "covers the whole run (2 epochs)"),
    ({"train": {"seed": 3}}, "train sets 'seed'; use the seeds axis instead"),
    ({"train": {"lr": 0.1}}, "unknown training key 'lr' in train; valid keys:"),
    ({"train": {"kd.loss": "hinge"}}, "valid choices: kl, ce"),
    ({"train": {**TINY["train"], "batch_size": 64}}, "batch_size=64 exceeds the 32 training samples"),
    ({"grid": {"kd.alpha": []}}, "grid.kd.alpha is empty"),
    ({"grid": {"method": ["online"]}}, "use the methods axis instead"),
    ({"eval": {"suite": "speed"}}, "eval.suite: 'speed' is not valid; valid choices: flatness"),
    ({"eval": {"suite": "all", "models": ["ghost"]}}, "valid choices: student, teacher"),
    ({"eval": {"suite": "all", "config": "nope"}}, "neither a file nor a preset; presets: eval-quick"),
    ({"eval": {"suite": "robustness", "set": {"robustness.severities": [9]}}},
     "eval: robustness.severities: 9 is not valid"),
    ({"eval": {"suite": "all", "colour": 1}}, "unknown key 'colour' in eval; valid keys: suite"),
    ({"torchrun": {"nproc_per_node": 0}}, "torchrun.nproc_per_node: 0 is not valid"),
    ({"slurm": {"walltime": 10}}, "valid keys: launcher, cpus_per_task"),
    ({"slurm": {"slurm_walltime": 10}}, "Unknown argument 'walltime' for executor 'slurm'"),
    ({"slurm": {"timeout_min": "long"}}, "timeout_min"),
    ({"slurm": {"launcher": "mpi"}}, "slurm.launcher: 'mpi' is not valid; valid choices: local"),
    ({"slurm": {"slurm_partition": "gpu\n#SBATCH --account=other"}}, "holds a line break"),
    ({"slurm": {"gpus_per_node": -1}}, "slurm.gpus_per_node must be an integer ≥ 0, got -1"),
    ({"slurm": {"slurm_array_parallelism": -4}}, "slurm.slurm_array_parallelism must be an integer ≥ 1"),
    ({"blocks": []}, "blocks must be a non-empty list"),
    ({"blocks": [{"methods": ["online"], "eval": {}}]}, "unknown key 'eval' in blocks[0]"),
]


@pytest.mark.parametrize("change,expect", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_sweep_file_is_one_line_naming_the_choices(change, expect, tmp_path, capsys):
    data = {**TINY, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = _write(tmp_path, data)
    assert main(["sweep", "plan", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"flatkd: error: sweep file {path}")
    assert expect in err, err
    if "valid choices: " in expect and "method" in expect:
        assert "spaced-online" in err.split("valid choices: ")[1]
    assert not (tmp_path / "out").exists()


def test_missing_file_names_the_shipped_sweeps(tmp_path, capsys):
    assert main(["sweep", "run", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert "sweep file not found" in err and "digits-intervals" in err


@pytest.mark.parametrize("action", ["plan", "run"])
def test_sweep_help_states_defaults_and_examples(action, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", action, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "SPEC" not in text and "§" not in text and "(default: None)" not in text
    assert "examples:" in text and "shipped sweeps: digits-intervals" in text
    assert "(default: local)" in text
    if action == "run":
        assert "(default: 1)" in text and "(default: slurm)" in text


# ---------------------------------------------------------------- commands

def test_launch_commands(tmp_path):
    s = _load(tmp_path, {**TINY, "torchrun": {"nproc_per_node": 2}})
    run = s.run("spaced-online_resnet8_digits_s0.5_seed0")
    argv = launch.train_argv(s, run, "local", 1, resume=True)
    assert argv[1:4] == ["-m", "flatkd", "train"] and argv[-1] == "--resume"
    assert argv[argv.index("--interval") + 1] == "0.5" and argv[argv.index("--seed") + 1] == "0"
    assert argv[argv.index("--out") + 1] == str((tmp_path / "out" / "runs" / run.name).resolve())
    tr = launch.train_argv(s, run, "torchrun", launch.default_nproc(s, None), resume=False)
    assert tr[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       "-m", "flatkd"] and tr[7] == "train" and "--resume" not in tr
    ev = launch.eval_argv(s, run, "student", "torchrun", 2)
    assert ev[1:4] == ["-m", "flatkd", "eval"]                       # torchrun.eval is off
    assert ev[ev.index("--ckpt") + 1] == f"runs/{run.name}/checkpoint.pt"
    assert ev[ev.index("--out") + 1] == f"results/{run.name}.json"
    s2 = _load(tmp_path, {**TINY, "torchrun": {"nproc_per_node": 2, "eval": True}})
    assert "torch.distributed.run" in launch.eval_argv(s2, run, "student", "torchrun", 2)
    launch.write_configs(s, [run])
    written = yaml.safe_load(launch.train_config_path(s, run).read_text())
    assert written == {"epochs": 2, "train_subset": 32, "test_subset": 16}


def test_plan_lists_runs_and_commands(tmp_path, capsys):
    path = _write(tmp_path, TINY)
    assert main(["sweep", "plan", str(path), "--out", str(tmp_path / "out"), "--commands",
                 "--launcher", "torchrun", "--nproc-per-node", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 runs" in out and "state: 3 todo" in out
    assert "todo  spaced-online_resnet8_digits_s1_seed0" in out
    assert "--nproc_per_node=2 -m flatkd train --method spaced-online" in out
    assert not (tmp_path / "out").exists()                            # planning writes nothing


# ---------------------------------------------------------------- running, skipping, resuming

def _stamps(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(out.glob("runs/*/checkpoint.pt"))
            + sorted(out.glob("results/*.json"))}


def test_run_skips_finished_work_resumes_and_reevaluates(tmp_path, in_process):
    s = _load(tmp_path, RUN)
    res = sw.run_sweep(s, say=lambda line: None)
    assert [o.status for o in res["outcomes"]] == ["done"] * 2
    assert in_process.commands() == ["train", "eval"] * 2
    results = sorted((tmp_path / "out" / "results").glob("*.json"))
    assert [p.name for p in results] == [f"{r.name}.json" for r in sorted(s.runs, key=lambda r: r.name)]
    data = json.loads(results[0].read_text())
    assert data["checkpoint"]["path"].startswith("runs/")               # relative to the sweep folder
    stamps = _stamps(tmp_path / "out")
    assert len(stamps) == 4

    in_process.calls.clear()                                             # nothing left to do
    res = sw.run_sweep(_load(tmp_path, RUN), say=lambda line: None)
    assert in_process.calls == [] and res["outcomes"] == []
    assert _stamps(tmp_path / "out") == stamps

    in_process.calls.clear()                                             # evaluation changed
    ev = {**RUN["eval"], "set": {**RUN["eval"]["set"], "robustness.severities": [2]}}
    sw.run_sweep(_load(tmp_path, {**RUN, "eval": ev}), say=lambda line: None)
    assert in_process.commands() == ["eval"] * 2

    in_process.calls.clear()                                             # more epochs: resume
    longer = {**RUN, "eval": ev, "train": {**RUN["train"], "epochs": 3}}
    s3 = _load(tmp_path, longer)
    assert {st.label for st in launch.states(s3).values()} == {"resume"}
    sw.run_sweep(s3, say=lambda line: None)
    assert in_process.commands() == ["train --resume", "eval"] * 2
    assert {st.label for st in launch.states(s3).values()} == {"done"}
    from flatkd import load_checkpoint
    assert all(load_checkpoint(p).epoch == 3 for p in (tmp_path / "out").glob("runs/*/checkpoint.pt"))

    # a checkpoint of another experiment is refused before any work, naming the key
    in_process.calls.clear()
    other = {**longer, "train": {**longer["train"], "optim.lr": 0.5}}
    with pytest.raises(FlatkdError, match=r"trained with optim.lr=0.05 \(the sweep asks for 0.5\)"):
        sw.run_sweep(_load(tmp_path, other), say=lambda line: None)
    assert in_process.calls == []


def test_more_epochs_under_a_decaying_lr_are_refused_before_any_work(tmp_path, in_process):
    """The digits preset's cosine schedule depends on the epoch count: a finished run cannot
    continue to more epochs (the resume would refuse it), so the sweep says so up front."""
    data = {**TINY, "methods": ["spaced-online"], "intervals": [0.5],
            "train": {**TINY["train"], "epochs": 1}}
    sw.run_sweep(_load(tmp_path, data), say=lambda line: None)
    in_process.calls.clear()
    longer = _load(tmp_path, {**data, "train": {**data["train"], "epochs": 2}})
    with pytest.raises(FlatkdError, match=r"trained with epochs=1 under the cosine lr schedule "
                                          r"\(it depends on the epoch count\) \(the sweep asks for 2\)"):
        sw.run_sweep(longer, say=lambda line: None)
    assert in_process.calls == []


def test_a_failed_run_does_not_stop_the_others(tmp_path, in_process):
    in_process.fail_on = "s0.5"                 # the --out of that run names it
    s = _load(tmp_path, RUN)
    with pytest.raises(FlatkdError, match=r"1 of 2 runs did not finish: spaced-online_resnet8_"
                                          r"digits_s0.5_seed0: failed \(training exited with code 1\)"):
        sw.run_sweep(s, say=lambda line: None)
    labels = {k: v.label for k, v in launch.states(s).items()}
    assert labels == {"spaced-online_resnet8_digits_s0.5_seed0": "todo",
                      "spaced-online_resnet8_digits_s1_seed0": "done"}


def test_a_locked_run_is_left_alone(tmp_path, in_process):
    s = _load(tmp_path, {**RUN, "intervals": [0.5]})
    run = s.runs[0]
    held = launch.RunLock(s.out / "locks" / f"{run.name}.lock")
    assert held.acquire()
    try:
        out = launch.execute(s, run, children=launch.Children())
        assert out.status == "busy" and in_process.calls == []
    finally:
        held.release()
    assert launch.execute(s, run, children=launch.Children()).status == "done"


# ---------------------------------------------------------------- SLURM (submitit, no cluster)

SLURM = {"timeout_min": 30, "gpus_per_node": 1, "mem_gb": 8, "slurm_partition": "gpu",
         "slurm_array_parallelism": 2, "launcher": "local"}


def test_slurm_job_array_runs_in_the_debug_executor(tmp_path, in_process):
    s = _load(tmp_path, {**RUN, "slurm": SLURM})
    res = sw.run_sweep(s, launcher="slurm", cluster="debug", say=lambda line: None)
    assert len(res["jobs"]) == 2 and [o.status for o in res["outcomes"]] == ["done"] * 2
    assert in_process.commands() == ["train", "eval"] * 2
    assert len(list((tmp_path / "out" / "results").glob("*.json"))) == 2


def test_slurm_jobs_serialise_and_the_sbatch_script_has_the_sweep_parameters(tmp_path):
    import submitit
    from submitit.core.utils import DelayedSubmission
    s = _load(tmp_path, {**TINY, "slurm": SLURM})
    ex = slurm.executor(s, cluster="debug")
    assert ex.parameters["timeout_min"] == 30 and ex.parameters["name"] == "flatkd-tiny"
    # what a job carries: the sweep record (plain data) and a run name
    job = DelayedSubmission(slurm.run_job, s.record(), s.runs[1].name, "local", 1)
    job.dump(tmp_path / "job.pkl")
    back = DelayedSubmission.load(tmp_path / "job.pkl")
    assert back.function is slurm.run_job
    rebuilt = sw.parse.from_record(back.args[0])
    assert [r.name for r in rebuilt.runs] == [r.name for r in s.runs]
    assert rebuilt.out == s.out and rebuilt.run(back.args[1]).interval == 0.5
    pickle.loads(pickle.dumps(s.record()))
    text = slurm.sbatch_preview(s, 3)
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=30",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --mem=8GB", "#SBATCH --job-name=flatkd-tiny"):
        assert line in text, text
    assert submitit.__version__


def test_slurm_without_a_cluster_is_a_clear_error(tmp_path, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    s = _load(tmp_path, {**TINY, "slurm": SLURM})
    with pytest.raises(FlatkdError, match="no SLURM cluster here.*--cluster local"):
        sw.run_sweep(s, launcher="slurm", say=lambda line: None)


def test_intervals_that_print_alike_still_get_two_runs(tmp_path):
    s = _load(tmp_path, {**TINY, "methods": ["spaced-online"], "intervals": [0.5000001, 0.5000002]})
    assert [r.name for r in s.runs] == ["spaced-online_resnet8_digits_s0.5000001_seed0",
                                        "spaced-online_resnet8_digits_s0.5000002_seed0"]
    assert [r.interval for r in s.runs] == [0.5000001, 0.5000002]
    assert "intervals 0.5000001,0.5000002" in sw.plan_text(s)
    assert [r.name for r in _load(tmp_path, TINY).runs][-1].endswith("_s1_seed0")   # short: 1


def test_a_huge_grid_is_counted_and_refused_before_it_is_expanded(tmp_path):
    ten = list(range(10))
    grid = {k: ten for k in ("kd.temperature", "optim.momentum", "train_subset", "test_subset",
                             "kd.feature_weight", "optim.weight_decay", "batch_size", "epochs",
                             "num_workers")}
    data = {**TINY, "methods": ["spaced-online"], "intervals": [0.5], "seeds": ten,
            "grid": grid}                                                        # 10¹⁰ runs
    with pytest.raises(FlatkdError, match=r"expands to 10,000,000,000 runs or more, past the "
                                          r"limit of 10,000; .* --max-runs"):
        sw.load(_write(tmp_path, data))
    small = {**TINY, "methods": ["spaced-online"], "intervals": [0.5], "seeds": [0, 1, 2]}
    with pytest.raises(FlatkdError, match="expands to 3 runs or more, past the limit of 2"):
        sw.load(_write(tmp_path, small), max_runs=2)
    assert len(sw.load(_write(tmp_path, small), max_runs=3).runs) == 3


def test_a_sweep_name_of_dots_is_refused(tmp_path):
    with pytest.raises(FlatkdError, match=r"name '\.\.' may hold only .* \(and not only dots\)"):
        sw.load(_write(tmp_path, {**TINY, "name": ".."}))


def test_generated_configs_follow_the_umask(tmp_path):
    import stat
    s = _load(tmp_path, RUN)
    old = os.umask(0o077)
    try:
        launch.write_configs(s, s.runs)
    finally:
        os.umask(old)
    written = [launch.train_config_path(s, r) for r in s.runs] + [launch.eval_config_path(s)]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)


def test_slurm_without_a_cluster_writes_nothing(tmp_path):
    s = _load(tmp_path, RUN)
    with pytest.raises(FlatkdError, match="--launcher slurm: no SLURM cluster here"):
        sw.run_sweep(s, "slurm", cluster="slurm", say=lambda line: None)
    assert not s.out.exists()


def test_a_missing_teacher_checkpoint_is_found_when_the_sweep_is_read(tmp_path):
    data = {**TINY, "methods": ["offline"], "intervals": None,
            "train": {**TINY["train"], "teacher_ckpt": str(tmp_path / "gone.pt")}}
    with pytest.raises(FlatkdError, match=r"run offline_resnet8_digits_seed0: teacher_ckpt .*gone"
                                          r"\.pt not found"):
        sw.load(_write(tmp_path, data))
    online = {**data, "methods": ["online"]}
    with pytest.raises(FlatkdError, match="online does not distil from a pretrained teacher"):
        sw.load(_write(tmp_path, online))
