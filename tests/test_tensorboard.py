"""TensorBoard events (log.tensorboard) read back with tensorboard's EventAccumulator, and the
W&B switch (log.wandb) against a stand-in module."""
import csv
import sys
import types

import numpy as np
import pytest
import yaml

from flatkd.errors import FlatkdError
from flatkd.training import Trainer, resolve
from flatkd.training import tb_log

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

SMALL = {"train_subset": 96, "test_subset": 64, "batch_size": 16, "epochs": 3}   # 6 steps/epoch


def trainer(path, method="spaced-online", interval=0.75, resume=False, on_update=None, **over):
    cfg = resolve(method, "resnet8", "digits", interval=interval,
                  overrides={**SMALL, "spaced.leftover": "distil", **over})
    return Trainer(cfg, path, resume=resume, progress=False, on_update=on_update)


def events(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})   # keep every point
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_events_hold_every_update_loss_lr_replays_and_the_metrics_rows(tmp_path):
    run = tmp_path / "run"
    t = trainer(run)                        # default: on, since tensorboard is installed
    t.run()
    ev = events(run)
    assert {"loss/teacher", "loss/replay", "terms/replay/ce", "terms/replay/kd", "lr",
            "replay/replays", "test/student_test_acc", "test/teacher_test_acc",
            "epoch/train_loss", "epoch/teacher_train_loss"} <= set(ev)
    # one loss point per optimizer update, at the data step of the batch it trained on
    loss_points = sum(len(v) for tag, v in ev.items() if tag.startswith("loss/"))
    assert loss_points == sum(t.opt_steps.values()) == 36
    assert [s for s, _ in ev["loss/teacher"]] == list(range(1, 19))
    assert [s for s, _ in ev["loss/replay"]] == list(range(1, 19))     # replays 1–16, leftover
    assert [s for s, _ in ev["lr"]] == list(range(1, 19))
    assert ev["replay/replays"] == [(s, k) for k, s in enumerate(t.method.replay_steps, 1)]
    rows = metrics(run)
    for net in ("student", "teacher"):
        tb = ev[f"test/{net}_test_acc"]
        assert [s for s, _ in tb] == [int(r["step"]) for r in rows]
        assert [v for _, v in tb] == [np.float32(r[f"{net}_test_acc"]) for r in rows]
    assert [v for _, v in ev["epoch/train_loss"]] == [np.float32(r["train_loss"]) for r in rows]
    derived = yaml.safe_load((run / "config.yaml").read_text())["derived"]
    assert derived["tensorboard"] is True and derived["wandb"] is False


class Crash(Exception):
    pass


def test_resume_after_a_crash_appends_without_repeating_a_step(tmp_path):
    """Checkpoint after epoch 1 (step 6, steps 5–6 buffered); the run dies in epoch 2 after the
    replay of steps 5–8. The resumed run replays 5–8 again: each step appears once."""
    run = tmp_path / "run"

    def die(t, u, x, y):
        if u.role == "teacher" and u.spec.step == 10:
            raise Crash

    with pytest.raises(Crash):
        trainer(run, on_update=die).run()
    assert [s for s, _ in events(run)["loss/replay"]] == [1, 2, 3, 4]   # only checkpointed points
    t = trainer(run, resume=True)
    t.run()
    ev = events(run)
    for tag, points in ev.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), tag              # no step twice, in order
    assert sum(len(v) for tag, v in ev.items() if tag.startswith("loss/")) == 36
    assert [s for s, _ in ev["loss/replay"]] == list(range(1, 19))
    assert [v for _, v in ev["test/student_test_acc"]] == \
        [np.float32(r["student_test_acc"]) for r in metrics(run)]
    assert len(list((run / "tb").iterdir())) == 2             # the same folder, appended


def test_off_writes_nothing_and_resume_may_switch_it(tmp_path):
    run = tmp_path / "run"
    constant = {"optim.schedule": "constant"}                # so the resumed run may grow
    trainer(run, epochs=1, **constant, **{"log.tensorboard": False}).run()
    assert not (run / "tb").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["derived"]["tensorboard"] is False
    trainer(run, epochs=2, resume=True, **constant, **{"log.tensorboard": True}).run()  # viewers may change
    assert [s for s, _ in events(run)["test/student_test_acc"]] == [12]


def test_missing_packages_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(tb_log, "_summary_writer", lambda: None)       # tensorboard missing
    assert trainer(tmp_path / "a", epochs=1).tensorboard is False       # auto: off
    with pytest.raises(FlatkdError, match=r"pip install 'flatkd\[tensorboard\]'"):
        trainer(tmp_path / "b", epochs=1, **{"log.tensorboard": True})
    monkeypatch.setitem(sys.modules, "wandb", None)                     # import wandb fails
    with pytest.raises(FlatkdError, match="log.wandb=true needs the wandb package"):
        trainer(tmp_path / "c", epochs=1, **{"log.wandb": True})
    assert resolve("online", "resnet8", "digits").log.wandb is False    # never on by default


def test_wandb_gets_the_same_points_against_data_step(tmp_path, monkeypatch):
    logged, inits = [], []

    class Run:
        def define_metric(self, *a, **kw):
            pass

        def log(self, values):
            logged.append(values)

        def finish(self):
            logged.append("finished")

    fake = types.SimpleNamespace(init=lambda **kw: inits.append(kw) or Run(),
                                 util=types.SimpleNamespace(generate_id=lambda: "abc123"))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = tmp_path / "run"
    t = trainer(run, epochs=1, **{"log.wandb": True, "log.tensorboard": False})
    t.run()
    assert logged[-1] == "finished" and inits[0]["id"] == "abc123"
    assert (run / tb_log.WANDB_ID_FILE).read_text().strip() == "abc123"
    points = logged[:-1]
    assert sum(1 for p in points for k in p if k.startswith("loss/")) == sum(t.opt_steps.values())
    assert [p["data_step"] for p in points if "loss/teacher" in p] == list(range(1, 7))
    assert any(p.get("test/student_test_acc") == t.metrics[0]["student_test_acc"] for p in points)
