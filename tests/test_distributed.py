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


@pytest.mark.slow
def test_torchrun_killed_mid_epoch_resumes_bit_identical(tmp_path):
    sets = ["--set", "train_subset=96", "--set", "test_subset=32", "--set", "batch_size=16",
            "--set", "checkpoint_every=4"]
    train = ["-m", "flatkd", "train", "--method", "spaced-online", "--arch", "resnet8",
             "--dataset", "digits", "--epochs", "3", "--interval", "0.5", "--quiet", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(out, *extra, wait=True):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
               "--master_port", str(free_port()), *train, "--out", str(out), *extra]
        if wait:
            return subprocess.run(cmd, capture_output=True, text=True, env=env)
        return subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env, start_new_session=True)

    run = tmp_path / "killed"
    proc = torchrun(run, wait=False)
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)                             # the agent and both ranks
    proc.wait()
    killed = flatkd.load_checkpoint(ckpt)
    assert killed.step < 18, "the run finished before it could be killed"
    resumed = torchrun(run, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full = torchrun(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-2000:]
    a, b = flatkd.load_checkpoint(ckpt), flatkd.load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert a.step == b.step == 18 and a.raw["state"]["replay_steps"] == b.raw["state"]["replay_steps"]
    assert a.provenance["world_size"] == 2
    for name in ("student", "teacher", "projector"):
        for k, v in b.raw["models"][name].items():
            assert torch.equal(a.raw["models"][name][k], v), (name, k)
    assert [r["student_test_acc"] for r in a.metrics] == [r["student_test_acc"] for r in b.metrics]


def test_only_rank_0_reports_and_cpu_runs_keep_their_device(monkeypatch):
    """The CLI prints only in rank 0 of a launch; ``place`` moves only distributed CUDA runs."""
    from flatkd.training.distributed import DistContext, main_process
    monkeypatch.delenv("RANK", raising=False)
    assert main_process()
    monkeypatch.setenv("RANK", "1")
    assert not main_process()
    monkeypatch.setenv("RANK", "0")
    assert main_process()
    cpu = torch.device("cpu")
    assert DistContext(1, 2, 1).place(cpu) == cpu and DistContext().place(cpu) == cpu
