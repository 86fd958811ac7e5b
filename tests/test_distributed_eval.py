"""Distributed evaluation: ``flatkd.evaluate`` under 2 gloo processes (spawned by the test, with
the environment torchrun sets) against one process on the same checkpoint and seed."""
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import torch
import torch.multiprocessing as mp

import flatkd
from flatkd.errors import FlatkdError
from flatkd.flatness.config import HessianConfig, PerturbationConfig
from flatkd.flatness.suite import run_flatness
from flatkd.io import write_json
from flatkd.training.distributed import DistContext, batch_range, main_first
from test_distributed import WORLD, free_port

SETTINGS = {"batch_size": 40,                  # 360 test images: 4 batches on rank 0, 5 on rank 1
            "robustness.corruptions": ["brightness", "impulse_noise"],
            "robustness.severities": [1, 3],           # 4 cache entries
            "robustness.epsilons": [2.0], "robustness.attacks": ["bim", "fgsm", "pgd"],
            "robustness.pgd_steps": 2, "robustness.workers": 1,
            "hessian.samples": 60,             # 2 batches: 40 samples on rank 0, 20 on rank 1
            "hessian.top_k": 2, "hessian.max_iter": 6, "hessian.slq_steps": 4,   # fixed 6 steps
            "hessian.trace_estimator": "hutchinson", "hessian.trace_hvps": 6,
            "perturbation.sigmas": [0.0, 0.02], "perturbation.repeats": 2}
SUITES = ("robustness", "flatness")


def _evaluate_on_two_ranks(rank, port, ckpt, out, cache):
    """Worker: evaluate both suites; save this rank's result dicts, its cache writes and the
    samples it attacked (BIM) and differentiated (Hessian)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from flatkd.flatness.hvp import HessianOperator
    from flatkd.robustness import bim, cache as cache_mod
    writes, seen = [], {"bim": 0, "hessian": 0}
    save, attack, grads = cache_mod.save, bim.linf_bim, HessianOperator._batch_grads
    cache_mod.save = lambda path, arr: (writes.append(path.name), save(path, arr))[1]

    def count(key, n):
        seen[key] += n

    bim.linf_bim = lambda model, x, y, **kw: (count("bim", len(y)), attack(model, x, y, **kw))[1]
    HessianOperator._batch_grads = lambda op, x, y, **kw: (count("hessian", len(y)),
                                                          grads(op, x, y, **kw))[1]
    for suite in SUITES:
        r = flatkd.evaluate(ckpt, suite, overrides={**SETTINGS, "cache_dir": str(cache)},
                            out=out / f"{suite}-rank{rank}.json", device="cpu")
        write_json(out / f"{suite}-dict{rank}.json", r)
    write_json(out / f"writes{rank}.json", {"writes": writes, "seen": seen})
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def runs(digits_checkpoint, tmp_path_factory):
    """(two-rank folder, one-process folder, cache entries written by the two-rank run)."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    cache = tmp_path_factory.mktemp("cache")                   # empty: the ranks generate
    mp.spawn(_evaluate_on_two_ranks, args=(free_port(), digits_checkpoint, two, cache),
             nprocs=WORLD, join=True)
    entries = {p.name: p.read_bytes() for p in (cache / "corruptions").iterdir()}
    shutil.rmtree(cache / "corruptions")       # same cache_dir setting: identical provenance
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for suite in SUITES:
            flatkd.evaluate(digits_checkpoint, suite, out=one / f"{suite}.json", device="cpu",
                            overrides={**SETTINGS, "cache_dir": str(cache)})
    finally:
        torch.set_num_threads(threads)
    return two, one, cache, entries


def test_batch_range_splits_whole_batches_over_the_ranks():
    n, b = 250, 40                                                  # 7 batches, the last of 10
    shares = [batch_range(n, b, DistContext(r, 3)) for r in range(3)]
    assert [(s.start, s.stop) for s in shares] == [(0, 80), (80, 160), (160, 250)]
    assert all(s.start % b == 0 for s in shares)
    assert [len(batch_range(30, b, DistContext(r, 2))) for r in range(2)] == [0, 30]  # rank 0 idle
    assert batch_range(n, b, DistContext()) == range(n)


def _slow_rank_zero(rank, port, out):
    """Worker: a group with a 1 s collective timeout (its store waits 60 s for the ranks to
    start); rank 0 works 3 s inside main_first."""
    store = torch.distributed.TCPStore("127.0.0.1", port, WORLD, rank == 0,
                                       timeout=timedelta(seconds=60))
    torch.distributed.init_process_group("gloo", store=store, rank=rank, world_size=WORLD,
                                         timeout=timedelta(seconds=1))
    with main_first(DistContext(rank, WORLD)):
        if rank == 0:
            time.sleep(3)
            (out / "entry").write_text("rank 0")
        else:
            (out / "read").write_text((out / "entry").read_text())
    torch.distributed.destroy_process_group()


def test_main_first_waits_longer_than_the_collective_timeout(tmp_path):
    mp.spawn(_slow_rank_zero, args=(free_port(), tmp_path), nprocs=WORLD, join=True)
    assert (tmp_path / "read").read_text() == "rank 0"


def test_robustness_json_is_byte_identical_to_one_process(runs):
    two, one, _, _ = runs
    single = (one / "robustness.json").read_bytes()
    assert (two / "robustness-rank0.json").read_bytes() == single
    assert not (two / "robustness-rank1.json").exists()            # rank 0 alone writes
    for rank in range(WORLD):                                      # every rank returns it
        assert (two / f"robustness-dict{rank}.json").read_bytes() == single
    seen = [json.loads((two / f"writes{r}.json").read_text())["seen"] for r in range(WORLD)]
    assert [s["bim"] for s in seen] == [160, 200]                  # 4 and 5 batches of 40
    rob = json.loads(single)["robustness"]
    assert [r["attack"] for r in rob["adversarial"]] == ["BIM", "FGSM", "PGD"]
    assert 0 < rob["clean_accuracy"] < 1


def test_cache_entries_are_written_once_by_rank_zero(runs):
    two, _, cache, entries = runs
    writes = [json.loads((two / f"writes{r}.json").read_text())["writes"] for r in range(WORLD)]
    assert sorted(writes[0]) == sorted(n for n in entries if n.endswith(".npy"))
    assert len(writes[0]) == 4 and writes[1] == []
    regenerated = {p.name: p.read_bytes() for p in (cache / "corruptions").iterdir()}
    assert regenerated == entries                                  # one process: same bytes


def test_hessian_split_over_two_ranks_matches_one_process(runs):
    two, one, _, _ = runs
    single = json.loads((one / "flatness.json").read_text())["flatness"]
    ranks = [json.loads((two / f"flatness-dict{r}.json").read_text())["flatness"]
             for r in range(WORLD)]
    assert ranks[0] == ranks[1]
    assert (two / "flatness-rank0.json").exists() and not (two / "flatness-rank1.json").exists()
    h, ref = ranks[0]["hessian"], single["hessian"]
    assert h["n_samples"] == ref["n_samples"] == 60
    assert h["lanczos_steps"] == ref["lanczos_steps"] == 6
    assert h["trace"]["mean"] == pytest.approx(ref["trace"]["mean"], rel=1e-5)
    assert h["top_eigenvalues"] == pytest.approx(ref["top_eigenvalues"], rel=1e-5)
    seen = [json.loads((two / f"writes{r}.json").read_text())["seen"] for r in range(WORLD)]
    assert [s["hessian"] for s in seen] == [40, 20]                # graphs cached: once each
    for row, want in zip(ranks[0]["perturbation"], single["perturbation"]):
        assert row == pytest.approx(want, rel=1e-5)


def test_pyhessian_backend_is_refused_under_torchrun(digits_checkpoint):
    model = flatkd.load_checkpoint(digits_checkpoint).build_model("student")
    with pytest.raises(FlatkdError, match="valid choices: native"):
        run_flatness(model, flatkd.datasets.get("digits", "train"),
                     HessianConfig(samples=8, backend="pyhessian"), PerturbationConfig(), seed=0,
                     device=torch.device("cpu"), batch_size=8, progress=False,
                     dist=DistContext(0, 2))


@pytest.mark.slow
def test_torchrun_cli_eval_writes_the_single_process_file(digits_checkpoint, tmp_path):
    sets = [a for k, v in SETTINGS.items() if not k.startswith(("hessian", "perturbation"))
            for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = ["-m", "flatkd", "eval", "--ckpt", str(digits_checkpoint), "--suite", "robustness",
           "--quiet", "--set", f"cache_dir={tmp_path / 'cache'}", *sets, "--out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                          str(WORLD), "--master_port", str(free_port()), *cmd,
                          str(tmp_path / "two.json")], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, *cmd, str(tmp_path / "one.json")], capture_output=True,
                         text=True, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
