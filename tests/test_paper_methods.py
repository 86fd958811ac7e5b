"""Offline KD, constant-ahead teacher, critical period, teacher–student pairs and the paper
presets (issue 9). Tiny digits subsets, resnet8; each test would catch a wrong schedule."""
from importlib import resources

import pytest
import torch

from flatkd import checkpoint, load_checkpoint, models
from flatkd.errors import CheckpointError, FlatkdError
from flatkd.training import Trainer, resolve

SMALL = {"train_subset": 64, "test_subset": 32, "batch_size": 16, "epochs": 2}   # 4 steps/epoch


def trainer(tmp_path, method, name="run", on_update=None, interval=None, **over):
    cfg = resolve(method, "resnet8", "digits", interval=interval, overrides={**SMALL, **over})
    return Trainer(cfg, tmp_path / name, progress=False, on_update=on_update)


def state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    """A baseline ResNet-8 trained 1 epoch on the 64-image subset (the offline teacher)."""
    t = trainer(tmp_path_factory.mktemp("teacher"), "baseline", epochs=1, seed=7)
    return t.run()


# ---------------------------------------------------------------- offline KD
def test_offline_teacher_weights_and_bn_buffers_are_bit_unchanged(tmp_path, teacher_ckpt):
    from flatkd import load_checkpoint
    pretrained = state(load_checkpoint(teacher_ckpt).build_model("student"))
    seen = []
    t = trainer(tmp_path, "offline", teacher_ckpt=str(teacher_ckpt),
                on_update=lambda tr, u, x, y: seen.append((u.optimizer, u.role)))
    assert equal_states(state(t.method.nets.modules["teacher"]), pretrained)
    assert any(k.endswith("running_mean") for k in pretrained)         # BN buffers are compared
    assert set(t.optimizers) == {"student"}
    t.run()
    assert equal_states(state(t.method.nets.modules["teacher"]), pretrained)
    assert seen == [("student", "offline")] * 8 and t.opt_steps == {"student": 8}
    assert t._derived()["options"]["teacher"]["teacher_ckpt"] == str(teacher_ckpt)


def test_offline_without_checkpoint_trains_teacher_first_then_freezes_it(tmp_path):
    order, teacher_specs, student_specs, frozen = [], [], [], {}

    def hook(tr, u, x, y):
        order.append(u.optimizer)
        (teacher_specs if u.optimizer == "teacher" else student_specs).append(u.spec)
        if u.optimizer == "student" and not frozen:
            frozen.update(state(tr.method.nets.modules["teacher"]))

    t = trainer(tmp_path, "offline", on_update=hook)
    t.run()
    assert order == ["teacher"] * 8 + ["student"] * 8        # all teacher epochs come first
    assert [s.step for s in teacher_specs] == list(range(1, 9))   # its lr schedule from step 1
    assert [s.epoch for s in teacher_specs] == [1] * 4 + [2] * 4
    # the student trains on fresh shuffles and augmentation draws, not the teacher's batches
    assert [s.indices for s in teacher_specs] != [s.indices for s in student_specs]
    assert not {s.seed for s in teacher_specs} & {s.seed for s in student_specs}
    assert equal_states(state(t.method.nets.modules["teacher"]), frozen)
    assert t.opt_steps == {"teacher": 8, "student": 8}


@pytest.mark.parametrize("edit,match", [
    ({"dataset": "cifar10"}, "trained on cifar10.*--dataset cifar10"),
    ({"num_classes": 100}, "predicts 100 classes"),
])
def test_offline_refuses_foreign_teacher_checkpoints(tmp_path, teacher_ckpt, edit, match):
    raw = torch.load(teacher_ckpt, weights_only=True)
    raw.update(edit)
    bad = tmp_path / "bad.pt"
    checkpoint.save(bad, raw)                     # well-formed, only its content is foreign
    with pytest.raises(FlatkdError, match=match):
        trainer(tmp_path, "offline", teacher_ckpt=str(bad))


def test_offline_teacher_checkpoint_bad_input(tmp_path, teacher_ckpt):
    with pytest.raises(CheckpointError, match="not found"):
        trainer(tmp_path, "offline", "a", teacher_ckpt=str(tmp_path / "missing.pt"))
    with pytest.raises(FlatkdError, match="holds a resnet8.*teacher_arch=resnet8"):
        trainer(tmp_path, "offline", "b", teacher_ckpt=str(teacher_ckpt), teacher_arch="resnet18")
    with pytest.raises(FlatkdError, match="teacher_width=1"):
        trainer(tmp_path, "offline", "c", teacher_ckpt=str(teacher_ckpt), teacher_width=2)
    with pytest.raises(FlatkdError, match="one of: student"):
        trainer(tmp_path, "offline", "d", teacher_ckpt=str(teacher_ckpt), teacher_ckpt_model="teacher")


# ---------------------------------------------------------------- constant-ahead teacher
@pytest.mark.parametrize("leftover,student_steps", [("drop", 6), ("distil", 8)])
def test_constant_ahead_teacher_is_always_k_steps_ahead(tmp_path, leftover, student_steps):
    k, checks = 2, []

    def hook(tr, u, x, y):
        if u.optimizer == "student":
            done = tr.opt_steps["student"] + 1          # counting the step being taken
            lead = tr.opt_steps["teacher"] - done
            last_teacher_step = tr.step + 1 if tr.opt_steps["teacher"] > tr.step else tr.step
            checks.append((done, lead, u.spec.step, last_teacher_step))

    t = trainer(tmp_path, "constant-ahead", interval=0.5, on_update=hook,
                **{"spaced.leftover": leftover})
    assert t.interval_steps == k
    t.run()
    assert t.opt_steps == {"teacher": 8, "student": student_steps}
    steady = checks[:8 - k]
    assert [c[0] for c in steady] == list(range(1, 7))
    assert all(lead == k for _, lead, _, _ in steady)           # teacher = student + k steps
    assert all(batch == done for done, _, batch, _ in steady)   # the student's t-th batch is B_t
    assert all(last - batch == k for _, _, batch, last in steady)  # … the teacher's B_{t+k}
    if leftover == "distil":                                     # the lead shrinks to 1
        assert [c[1] for c in checks[8 - k:]] == [1, 0]
    assert t.method.replay_steps == []


def test_constant_ahead_student_takes_online_kds_batches_and_budget_by_default(tmp_path):
    """The teacher's head start is inside the run: by default the student also takes the last
    k batches (against the final teacher), so its budget and batches are online KD's."""
    seen = {"online": [], "constant-ahead": []}

    def hook(name):
        return lambda tr, u, x, y: seen[name].append((u.spec.indices, u.spec.seed)) \
            if u.optimizer == "student" else None            # the samples and their augmentation

    paths = {}
    for name, interval in (("online", None), ("constant-ahead", 0.5)):
        t = trainer(tmp_path, name, name, interval=interval, on_update=hook(name))
        assert t.cfg.spaced.leftover == ("distil" if name == "constant-ahead" else "drop")
        paths[name] = t.run()
    steps = {n: load_checkpoint(p).raw["metrics"][-1]["student_steps"] for n, p in paths.items()}
    assert steps == {"online": 8, "constant-ahead": 8}
    assert seen["constant-ahead"] == seen["online"] and len(seen["online"]) == 8


def test_constant_ahead_at_zero_interval_is_online_kd_bit_for_bit(tmp_path):
    online = trainer(tmp_path, "online", "a")
    online.run()
    ahead = trainer(tmp_path, "constant-ahead", "b", interval=0.0)
    ahead.run()
    for name in ("student", "teacher", "projector"):
        assert equal_states(state(online.method.nets.modules[name]), state(ahead.method.nets.modules[name]))


# ---------------------------------------------------------------- critical period (Fig. 3)
def test_critical_period_window_bounds_the_replays(tmp_path):
    # 4 steps/epoch, s = 0.5 → 2 steps; epochs 1 online, 2–3 spaced, 4 online (Fig. 3a)
    seen = []
    t = trainer(tmp_path, "spaced-online", interval=0.5, epochs=4,
                on_update=lambda tr, u, x, y: seen.append((u.spec.epoch, u.role)),
                **{"spaced.start_epoch": 1, "spaced.window_epochs": 2})
    t.run()
    assert t.method.replay_steps == [6, 8, 10, 12]
    assert all(e0 * 4 < s <= (e0 + 2) * 4 for s in t.method.replay_steps for e0 in [1])
    roles = {e: sorted({r for ep, r in seen if ep == e}) for e in (1, 2, 3, 4)}
    assert roles[1] == roles[4] == ["student", "teacher"]         # online KD outside the window
    assert roles[2] == roles[3] == ["replay", "teacher"]
    assert t.opt_steps == {"teacher": 16, "student": 16}
    assert t._derived()["options"]["start_epoch"] == 1


def test_critical_period_partial_interval_at_window_end_follows_leftover(tmp_path):
    # s = 0.75 → 3 steps; the window (epoch 2, steps 5–8) holds one full interval + 1 step
    t = trainer(tmp_path, "spaced-online", interval=0.75, epochs=3,
                **{"spaced.start_epoch": 1, "spaced.window_epochs": 1, "spaced.leftover": "distil"})
    t.run()
    assert t.method.replay_steps == [7, 8]
    assert t.opt_steps == {"teacher": 12, "student": 12}


def test_critical_period_from_zero_without_window_is_spaced_online_bit_for_bit(tmp_path):
    plain = trainer(tmp_path, "spaced-online", "a", interval=0.5)
    plain.run()
    e0 = trainer(tmp_path, "spaced-online", "b", interval=0.5, **{"spaced.start_epoch": 0})
    e0.run()
    assert plain.method.replay_steps == e0.method.replay_steps == [2, 4, 6, 8]
    for name in ("student", "teacher", "projector"):
        assert equal_states(state(plain.method.nets.modules[name]), state(e0.method.nets.modules[name]))


def test_critical_period_bad_values(tmp_path):
    with pytest.raises(FlatkdError, match="start_epoch must lie in"):
        trainer(tmp_path, "spaced-online", **{"spaced.start_epoch": 2})
    with pytest.raises(FlatkdError, match="window_epochs must be"):
        trainer(tmp_path, "spaced-online", **{"spaced.window_epochs": 0})


# ---------------------------------------------------------------- teacher–student pairs
def test_teacher_width_scales_every_stage_of_the_teacher():
    cfg = resolve("online", "resnet8", "digits", overrides={"teacher_width": 2})
    from flatkd.training.methods import METHODS
    nets = METHODS.get("online").build(cfg, 10, (0.5,) * 3, (0.25,) * 3)
    assert nets.modules["student"].stage_channels == [16, 32, 64]
    assert nets.modules["teacher"].stage_channels == [32, 64, 128]
    assert nets.architectures["teacher"]["width"] == 2
    assert nets.modules["projector"][-1].out_features == 128


# ---------------------------------------------------------------- paper presets
def paper_presets() -> list[str]:
    return sorted(p.name for p in resources.files("flatkd.presets").joinpath("paper").iterdir()
                  if p.name.endswith(".yaml"))


def test_paper_presets_cover_every_table_and_resolve(tmp_path):
    names = paper_presets()
    for prefix in ("table1-", "table2-", "table3-", "table6-", "table7-", "table8-", "table9-",
                   "table10-", "table11-", "fig3"):
        assert any(n.startswith(prefix) for n in names), prefix
    root = resources.files("flatkd.presets").joinpath("paper")
    for name in names:
        with resources.as_file(root.joinpath(name)) as path:
            cfg = resolve("spaced-online", None, None, config_file=str(path))
        assert cfg.arch in models.names() and cfg.dataset, name
        assert (cfg.preset is not None and "vit" in cfg.preset) == (models.recipe(cfg.arch) == "vit")


def test_resolve_needs_arch_and_dataset_from_somewhere(tmp_path):
    with pytest.raises(FlatkdError, match="--arch, --dataset"):
        resolve("online", None, "digits")
    f = tmp_path / "c.yaml"
    f.write_text("arch: resnet8\ndataset: digits\nepochs: 2\n")
    cfg = resolve("online", None, None, config_file=str(f))
    assert (cfg.arch, cfg.dataset, cfg.epochs, cfg.preset) == ("resnet8", "digits", 2, "digits.yaml")


# ---------------------------------------------------------------- report layouts (Tables 10, 11, Fig. 3)
def _fake_run(root, method, seed, acc, interval=None, config=None, options=None, swing=0.0):
    """A result file + a weight-less checkpoint carrying the run's config and options; with
    ``swing``, three epochs whose middle one dips by ``swing`` (a run that has not converged)."""
    import json
    from report_fixtures import _result
    tag = json.dumps([method, interval, config, options], sort_keys=True)
    stem = f"{method}-{abs(hash(tag)) % 10**8}-s{seed}"
    res = _result("online", seed, root)
    res["checkpoint"] |= {"method": method, "interval": interval, "path": str(root / f"{stem}.pt"),
                          "sha256": stem}
    res["robustness"]["clean_accuracy"] = acc
    (root / f"{stem}.json").write_text(json.dumps(res))
    checkpoint.save(root / f"{stem}.pt", {
        "format": checkpoint.FORMAT, "version": checkpoint.VERSION, "method": method,
        "arch": "resnet8", "dataset": "digits", "num_classes": 10, "models": {},
        "architectures": {}, "optim": {}, "epoch": 1, "step": 12, "config": config or {},
        "metrics": [{"epoch": e, "step": 12 * e, "student_test_acc": acc - (swing if e == 2 else 0)}
                    for e in ((1, 2, 3) if swing else (1,))], "provenance": {},
        "state": {"replay_steps": [], "batches_per_epoch": 12, "options": options or {}}})


def test_report_layouts_of_tables_10_11_and_fig3(tmp_path):
    from flatkd.report import build_report
    from flatkd.report import paper_layouts as L
    from flatkd.evidence.histories import load_histories
    from flatkd.evidence.results import load_result, load_results
    ckpt_teacher = {"teacher": {"arch": "resnet8", "width": 2, "teacher_ckpt": "t.pt"}}
    tables, fig3 = tmp_path / "tables", tmp_path / "fig3"
    tables.mkdir(), fig3.mkdir()
    for seed in (0, 1, 2):
        _fake_run(tables, "online", seed, 0.90 + 0.01 * seed)
        _fake_run(tables, "offline", seed, 0.91 + 0.01 * seed, options=ckpt_teacher)
        _fake_run(tables, "spaced-online", seed, 0.93 + 0.01 * seed, 1.5, {"teacher_width": 2})
        for s, acc in ((0.5, 0.90), (1.5, 0.905)):
            _fake_run(tables, "constant-ahead", seed, acc + 0.001 * seed, s)
        _fake_run(fig3, "online", seed, 0.90)
        _fake_run(fig3, "spaced-online", seed, 0.95, 1.5)
        for e0 in (2, 4):
            _fake_run(fig3, "spaced-online", seed, 0.96 + 0.001 * e0, 1.5,
                      {"spaced": {"start_epoch": e0, "window_epochs": 2}})
            _fake_run(fig3, "spaced-online", seed, 0.97 + 0.001 * e0, 1.5,
                      {"spaced": {"start_epoch": e0}})
    results = load_results([tables])
    hist, _ = load_histories(results)

    off = L.offline_table(results, hist)
    final = off[off["selection"] == "final"].set_index("teacher")
    assert list(final.index) == ["resnet8×2"]                  # the offline teacher's record
    row = final.loc["resnet8×2"]
    assert row["offline_mean"] == pytest.approx(0.92) and row["spaced_mean"] == pytest.approx(0.94)
    assert row["delta"] == pytest.approx(0.02) and row["n_pairs"] == 3 and row["interval"] == 1.5

    ahead = L.constant_ahead_table(results, hist)
    ca = ahead[(ahead["selection"] == "final") & (ahead["method"] == "constant-ahead")]
    assert list(ca["interval"]) == [0.0, 0.5, 1.5]              # s = 0 is online KD
    assert ca["mean"].tolist() == pytest.approx([0.91, 0.901, 0.906])
    assert "s = 0 (online)" in L.constant_ahead_display(ahead).columns

    written = build_report([tables], tmp_path / "report")
    assert {"offline_vs_spaced", "constant_ahead"} <= set(written["tables"])
    text = written["markdown"].read_text()
    assert "paper Table 10 layout" in text and "paper Table 11 layout" in text

    # critical-period runs share (method, interval, seed): flatkd report cannot group them yet,
    # the layout reads each run's start epoch and window from its checkpoint
    runs = [load_result(p) for p in sorted(fig3.glob("*.json"))]
    crit = L.critical_period_table(runs, load_histories(runs)[0])
    c = crit[crit["selection"] == "final"]
    got = {(v, e): round(m, 4) for v, e, m in zip(c["variant"], c["start_epoch"], c["mean"])
           if v != "online"}
    assert got == {("window 2", 2): 0.962, ("window 2", 4): 0.964, ("to the end", 0): 0.95,
                   ("to the end", 2): 0.972, ("to the end", 4): 0.974}
    assert (c["variant"] == "online").sum() == 1
    assert L.critical_period_figure(crit).axes[0].get_xlabel().startswith("epoch spaced KD starts")


def test_tables_10_11_and_fig3_mark_runs_that_have_not_converged(tmp_path, monkeypatch):
    """A run whose epochs swing by 20 pp makes its Table 10 Δ, its Table 11 cell and its Fig. 3
    row carry '†', and every figure that draws it names it in a footnote."""
    from flatkd.evidence.histories import load_histories
    from flatkd.evidence.results import load_result, load_results
    from flatkd.evidence.verdicts import stale_runs
    from flatkd.report import build_report, style
    from flatkd.report import paper_layouts as L
    ckpt_teacher = {"teacher": {"arch": "resnet8", "width": 2, "teacher_ckpt": "t.pt"}}
    tables, fig3 = tmp_path / "tables", tmp_path / "fig3"
    tables.mkdir(), fig3.mkdir()
    for seed in (0, 1, 2):
        bad = 0.2 if seed == 1 else 0.0
        _fake_run(tables, "online", seed, 0.90 + 0.01 * seed)
        _fake_run(tables, "offline", seed, 0.91, options=ckpt_teacher, swing=bad)
        _fake_run(tables, "spaced-online", seed, 0.93, 1.5, {"teacher_width": 2})
        _fake_run(tables, "constant-ahead", seed, 0.90, 0.5, swing=bad)
        _fake_run(fig3, "online", seed, 0.90)
        _fake_run(fig3, "spaced-online", seed, 0.96, 1.5, {"spaced": {"start_epoch": 2}},
                  swing=bad)
    results = load_results([tables])
    hist, _ = load_histories(results)
    off = L.offline_table(results, hist)
    assert off["not_converged"].tolist() == [1, 1]                  # final and best rows
    assert L.offline_display(off)["Δ (pp)"].str.endswith("† (1 not converged)").all()
    ahead = L.constant_ahead_table(results, hist)
    flagged = ahead[ahead["not_converged"] > 0]
    assert set(zip(flagged["method"], flagged["interval"])) == {("constant-ahead", 0.5)}
    shown = L.constant_ahead_display(ahead).set_index(["accuracy", "Method"])["s = 0.5"]
    assert {k: "†" in v for k, v in shown.items() if isinstance(v, str)} == {
        ("final", "constant-ahead"): True, ("best over epochs", "constant-ahead"): True}

    runs = [load_result(p) for p in sorted(fig3.glob("*.json"))]
    crit_hist = load_histories(runs)[0]
    crit = L.critical_period_table(runs, crit_hist)
    assert crit.set_index("variant")["not_converged"].to_dict() == {"to the end": 1, "online": 0}
    assert L.critical_period_display(crit)["accuracy (%)"].str.contains("†").sum() == 2
    fig = L.critical_period_figure(crit, stale=stale_runs(runs, crit_hist))
    assert "† not converged" in " ".join(t.get_text() for t in fig.texts)

    notes = {}
    saved = style.save_figure

    def keep_notes(fig, out_dir, stem, **kw):
        notes[stem] = " ".join(" ".join(t.get_text() for t in fig.texts).split())
        return saved(fig, out_dir, stem, **kw)
    monkeypatch.setattr(style, "save_figure", keep_notes)
    build_report([tables], tmp_path / "report")
    assert "† not converged" in notes["training_curves"]
    assert "offline seed 1" in notes["training_curves"]
    assert "constant-ahead (s=0.5) seed 1" in notes["training_curves"]


def test_cli_teacher_ckpt_flag_and_arch_dataset_from_config(tmp_path, teacher_ckpt, capsys):
    """``--teacher-ckpt PATH`` is ``--set teacher_ckpt=PATH``; ``--arch``/``--dataset`` come from
    the ``--config`` file when not given; a missing teacher file is one line, exit 2, nothing
    written."""
    from flatkd.checkpoint import load_checkpoint
    from flatkd.cli import main
    cfg = tmp_path / "setting.yaml"
    cfg.write_text("arch: resnet8\ndataset: digits\n"
                   + "".join(f"{k}: {v}\n" for k, v in {**SMALL, "epochs": 1}.items()))
    out = tmp_path / "run"
    assert main(["train", "--method", "offline", "--config", str(cfg), "--teacher-ckpt",
                 str(teacher_ckpt), "--out", str(out), "--quiet"]) == 0
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck.raw["arch"] == "resnet8" and ck.raw["config"]["teacher_ckpt"] == str(teacher_ckpt)
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["train", "--method", "offline", "--config", str(cfg), "--teacher-ckpt",
                 str(tmp_path / "missing.pt"), "--out", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err and not bad.exists()
    assert main(["train", "--method", "online", "--dataset", "digits", "--out", str(bad)]) == 2
    assert "--arch" in capsys.readouterr().err and not bad.exists()
