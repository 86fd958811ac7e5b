"""Multi-process training on torch.distributed (gloo, 2 processes spawned by the test itself)."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import flatkd
from flatkd.training import Trainer, resolve
from flatkd.training.batches import BatchSpec
from flatkd.training.distributed import shard

WORLD = 2
SMALL = {"train_subset": 64, "test_subset": 30, "batch_size": 16}     # 4 steps per epoch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyMLP(nn.Module):
    """A BatchNorm-free network: 2-process and 1-process training must then agree."""

    def __init__(self, num_classes, mean, std, width=1.0):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.ReLU(),
                                 nn.Linear(32, num_classes))

    def forward(self, x):
        return self.net(x)


def register_mlp():
    from flatkd.models import ARCHS
    if "mlp-test" not in ARCHS:
        ARCHS.register("mlp-test")(TinyMLP)


def _record_run(rank, port, out, method, arch, interval, overrides):
    """Worker: train with WORLD ranks, save every update's (role, step, x, y) and the weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    register_mlp()
    seen = []
    cfg = resolve(method, arch, "digits", interval=interval, overrides=overrides)
    t = Trainer(cfg, out / "run", progress=False,
                on_update=lambda t, u, x, y: seen.append((u.role, u.spec.step, x.clone(), y.clone())))
    t.run()
    weights = {n: {k: v.clone() for k, v in m.state_dict().items()}
               for n, m in t.method.nets.modules.items()}
    torch.save({"seen": seen, "weights": weights, "metrics": t.metrics,
                "replay_steps": t.method.replay_steps}, out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


class _Stop(Exception):
    """Raised from an update hook: the run stops there, as if the processes were killed."""


def _stopped_then_resumed(rank, port, out, overrides, stop_after):
    """Worker: spaced-online stopped on every rank after update ``stop_after`` (the last
    checkpoint before it is what a kill leaves), then resumed from that checkpoint."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = resolve("spaced-online", "resnet8", "digits", interval=0.5, overrides=overrides)
    if stop_after:
        done = [0]

        def stop(t, u, x, y):
            done[0] += 1
            if done[0] == stop_after:
                raise _Stop
        try:
            Trainer(cfg, out, progress=False, on_update=stop).run()
        except _Stop:
            pass
    Trainer(cfg, out, resume=bool(stop_after), progress=False).run()
    torch.distributed.destroy_process_group()


def run_two_ranks(tmp_path, method, arch, interval, overrides):
    mp.spawn(_record_run, args=(free_port(), tmp_path, method, arch, interval, overrides),
             nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def run_one_rank(tmp_path, method, arch, interval, overrides):
    register_mlp()
    seen = []
    cfg = resolve(method, arch, "digits", interval=interval, overrides=overrides)
    t = Trainer(cfg, tmp_path / "single", progress=False,
                on_update=lambda t, u, x, y: seen.append((u.role, u.spec.step, x.clone(), y.clone())))
    t.run()
    return t, seen


def test_shard_splits_pads_and_keeps_every_sample_seed():
    spec = BatchSpec(step=7, epoch=2, indices=(5, 1, 9, 4, 0), seed=3 << 20)
    a, b = shard(spec, 0, 2), shard(spec, 1, 2)
    assert a.indices == (5, 1, 9) and b.indices == (4, 0, 5)          # padded by wrapping
    assert (a.seed, b.seed) == (spec.seed, spec.seed + 3)            # sample j keeps seed + j
    assert a.step == b.step == 7 and shard(spec, 0, 1) is spec


def test_two_ranks_see_the_global_batches_and_replay_their_own_shards(tmp_path):
    over = {**SMALL, "epochs": 1}
    ranks = run_two_ranks(tmp_path, "spaced-online", "resnet8", 0.5, over)   # 2-step intervals
    single, seen = run_one_rank(tmp_path, "spaced-online", "resnet8", 0.5, over)
    assert ranks[0]["replay_steps"] == ranks[1]["replay_steps"] == single.method.replay_steps
    roles = [(r, s) for r, s, _, _ in seen]
    for rank in ranks:
        assert [(r, s) for r, s, _, _ in rank["seen"]] == roles      # same schedule, no deadlock
    for i, (role, step, x, y) in enumerate(seen):                   # (a) union = global batch
        xs = torch.cat([rank["seen"][i][2] for rank in ranks])
        ys = torch.cat([rank["seen"][i][3] for rank in ranks])
        assert torch.equal(xs, x) and torch.equal(ys, y), (role, step)
    for rank in ranks:                                              # replay = own teacher shard
        teacher = {s: x for r, s, x, _ in rank["seen"] if r == "teacher"}
        replays = [(s, x) for r, s, x, _ in rank["seen"] if r == "replay"]
        assert len(replays) == 4
        assert all(torch.equal(x, teacher[s]) for s, x in replays)
    for name in ("student", "teacher"):                             # ranks stay in lock-step
        for k, v in ranks[0]["weights"][name].items():
            assert torch.equal(v, ranks[1]["weights"][name][k]), (name, k)


def test_two_ranks_match_one_process_on_a_batchnorm_free_network(tmp_path):
    over = {**SMALL, "epochs": 2, "optim.lr": 0.1}
    ranks = run_two_ranks(tmp_path, "baseline", "mlp-test", None, over)
    single, _ = run_one_rank(tmp_path, "baseline", "mlp-test", None, over)
    ref = single.method.nets.modules["student"].state_dict()
    from flatkd.models import create
    from flatkd.training.methods.seeding import seeded
    init = seeded(0, lambda: create(**single.method.nets.architectures["student"])).state_dict()
    assert single.opt_steps == {"student": 8}
    for k, v in ranks[0]["weights"]["student"].items():
        assert torch.allclose(v, ref[k], atol=2e-6, rtol=1e-5), k
        assert not torch.allclose(v, init[k]), k                     # training moved them
    assert [r["student_test_acc"] for r in ranks[0]["metrics"]] == \
        [r["student_test_acc"] for r in single.metrics]               # all-reduced accuracy
    assert ranks[0]["metrics"][-1]["train_loss"] == pytest.approx(single.metrics[-1]["train_loss"],
                                                                  rel=1e-5)


def test_sync_bn_is_refused_on_cpu(tmp_path):
    cfg = resolve("baseline", "resnet8", "digits", overrides={**SMALL, "sync_bn": True})
    with pytest.raises(flatkd.FlatkdError, match="sync_bn=true needs CUDA"):
        Trainer(cfg, tmp_path / "run", progress=False)


def _torchrun_train(out, sets, epochs, *extra, wait=True):
    """``flatkd train`` of spaced-online under torchrun with WORLD ranks (one thread each)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--master_port", str(free_port()), "-m", "flatkd", "train", "--method",
           "spaced-online", "--arch", "resnet8", "--dataset", "digits", "--epochs", str(epochs),
           "--interval", "0.5", "--quiet", *sets, "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env)
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env, start_new_session=True)


def _wait_for_checkpoint(ckpt, proc, min_step: int) -> None:
    """Until ``ckpt`` holds at least ``min_step`` steps (or the run ended, or 300 s)."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if ckpt.exists() and flatkd.load_checkpoint(ckpt).step >= min_step:
                return
        except flatkd.CheckpointError:          # being replaced right now
            pass
        time.sleep(0.05)


def _assert_same_run(a_path, b_path, steps, networks=("student", "teacher", "projector")):
    a, b = flatkd.load_checkpoint(a_path), flatkd.load_checkpoint(b_path)
    assert a.step == b.step == steps and a.raw["state"]["replay_steps"] == b.raw["state"]["replay_steps"]
    assert a.provenance["world_size"] == 2
    for name in networks:
        for k, v in b.raw["models"][name].items():
            assert torch.equal(a.raw["models"][name][k], v), (name, k)
    assert a.metrics == b.metrics                                  # losses and accuracies


@pytest.mark.slow
def test_torchrun_killed_mid_epoch_resumes_bit_identical(tmp_path):
    sets = ["--set", "train_subset=96", "--set", "test_subset=32", "--set", "batch_size=16",
            "--set", "checkpoint_every=4"]
    run = tmp_path / "killed"
    proc = _torchrun_train(run, sets, 3, wait=False)
    ckpt = run / "checkpoint.pt"
    _wait_for_checkpoint(ckpt, proc, 1)
    os.killpg(proc.pid, signal.SIGKILL)                             # the agent and both ranks
    proc.wait()
    assert flatkd.load_checkpoint(ckpt).step < 18, "the run finished before it could be killed"
    resumed = _torchrun_train(run, sets, 3, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full = _torchrun_train(tmp_path / "full", sets, 3)
    assert full.returncode == 0, full.stderr[-2000:]
    _assert_same_run(ckpt, tmp_path / "full" / "checkpoint.pt", 18)


@pytest.mark.slow
def test_torchrun_one_rank_killed_after_a_mid_epoch_checkpoint_resumes_bit_identical(tmp_path):
    """One rank SIGKILLed after the 2nd checkpoint (mid-epoch: it holds the epoch's partial loss
    sums), then --resume: every rank must restore the same state (rank 0 alone holding the sums
    made the ranks all-reduce lists of different lengths: a gloo collective mismatch)."""
    sets = ["--set", "train_subset=128", "--set", "test_subset=32", "--set", "checkpoint_every=2"]
    run = tmp_path / "killed"
    proc = _torchrun_train(run, sets, 2, wait=False)
    ckpt = run / "checkpoint.pt"
    _wait_for_checkpoint(ckpt, proc, 4)                           # the 2nd checkpoint: step 4 of 8
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                             text=True).stdout.split()
    assert workers, "no rank to kill: the run ended first"
    os.kill(int(workers[-1]), signal.SIGKILL)                       # one rank; the agent ends
    proc.wait()                                                     # the other
    killed = flatkd.load_checkpoint(ckpt)
    assert 4 <= killed.step < 16 and killed.raw["state"]["partial_counts"]
    resumed = _torchrun_train(run, sets, 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full = _torchrun_train(tmp_path / "full", sets, 2)
    assert full.returncode == 0, full.stderr[-2000:]
    _assert_same_run(ckpt, tmp_path / "full" / "checkpoint.pt", 16)


@pytest.mark.parametrize("stop_after", [3, 5])
def test_two_ranks_resumed_mid_epoch_restore_the_same_state(tmp_path, stop_after):
    """Resumed from a mid-epoch checkpoint (it holds the epoch's partial loss sums, summed over
    the ranks), every rank restores the same keys: rank 0 alone holding them made the ranks
    all-reduce lists of different lengths (gloo: collective mismatch). 4 steps per epoch, s = 2
    steps: updates t1 t2 r1 r2 | t3 | t4 r3 r4. Stopped at update 5 (t3), the run resumes from
    step 2's checkpoint (teacher and student loss keys) into the teacher-only step 3, whose
    checkpoint all-reduces the sums: the case that failed. Stopped at 3, it resumes from step 1
    (teacher keys only). Bit-equal to a run that was never stopped."""
    over = {**SMALL, "epochs": 2, "checkpoint_every": 1}
    for name, stop in (("full", 0), ("stopped", stop_after)):
        mp.spawn(_stopped_then_resumed, args=(free_port(), tmp_path / name, over, stop),
                 nprocs=WORLD, join=True)
    a = flatkd.load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    b = flatkd.load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert a.provenance["resumed"] and a.step == b.step == 8
    for name in ("student", "teacher"):
        for k, v in b.raw["models"][name].items():
            assert torch.equal(a.raw["models"][name][k], v), (name, k)
    assert a.metrics == b.metrics


def test_only_rank_0_reports_and_cpu_runs_keep_their_device(monkeypatch):
    """The CLI prints only in rank 0 of a launch; ``place`` moves only distributed CUDA runs."""
    from flatkd.errors import main_process
    from flatkd.training.distributed import DistContext
    monkeypatch.delenv("RANK", raising=False)
    assert main_process()
    monkeypatch.setenv("RANK", "1")
    assert not main_process()
    monkeypatch.setenv("RANK", "0")
    assert main_process()
    cpu = torch.device("cpu")
    assert DistContext(1, 2, 1).place(cpu) == cpu and DistContext().place(cpu) == cpu
