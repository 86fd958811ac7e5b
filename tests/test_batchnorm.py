"""BatchNorm recalibration before evaluation: the measured network is the trained function,
not its stale running statistics."""
import copy
import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import flatkd
from flatkd import batchnorm as BN
from flatkd import checkpoint
from flatkd import datasets
from flatkd.cli import main
from test_distributed import WORLD, free_port

FLAT = {"hessian.samples": 64, "hessian.top_k": 2, "hessian.slq_steps": 8,
        "perturbation.sigmas": [0.0, 0.01], "perturbation.repeats": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A baseline ResNet-8 trained 3 epochs on 256 digits images, and a copy of its checkpoint
    whose running statistics are corrupted (means shifted by 2, variances × 100)."""
    from flatkd.training import Trainer, resolve
    cfg = resolve("baseline", "resnet8", "digits", epochs=3,
                  overrides={"train_subset": 256, "batch_size": 16})
    path = Trainer(cfg, tmp_path_factory.mktemp("bn") / "run", progress=False).run()
    raw = torch.load(path, weights_only=True)
    for key, value in raw["models"]["student"].items():
        if key.endswith("running_mean"):
            value.add_(2.0)
        elif key.endswith("running_var"):
            value.mul_(100.0)
    bad = path.parent / "corrupted.pt"
    checkpoint.save(bad, raw)                     # a well-formed file with the bad statistics
    return path, bad


def test_corrupted_statistics_do_not_change_what_is_measured(trained):
    good, bad = trained
    clean = flatkd.evaluate(good, "flatness", overrides=FLAT)
    broken = flatkd.evaluate(bad, "flatness", overrides=FLAT)
    n_test = len(datasets.get("digits", "test"))
    acc = [r["bn"]["recalibrated"]["test_accuracy"] for r in (clean, broken)]
    assert abs(acc[0] - acc[1]) * n_test <= 1                      # ± 1 test image
    traces = [r["flatness"]["hessian"]["trace"]["mean"] for r in (clean, broken)]
    assert traces[1] == pytest.approx(traces[0], rel=0.02)
    assert broken["bn"]["as_saved"]["test_accuracy"] < acc[1] - 0.2   # the corruption was real
    as_saved = flatkd.evaluate(bad, "flatness", overrides={**FLAT, "bn": "as-saved"})
    assert as_saved["bn"] == {"mode": "as-saved"}
    assert as_saved["flatness"]["hessian"]["trace"]["mean"] != pytest.approx(traces[0], rel=0.02)
    assert clean["bn"]["samples"] == 1437 and clean["bn"]["layers"] == 9


def test_recalibration_equals_an_independent_cumulative_average(trained):
    """Every buffer equals the mean over batches of each batch's input mean / unbiased variance,
    computed here by a separate loop that feeds each layer's recorded inputs."""
    net = flatkd.load_checkpoint(trained[1]).build_model()
    ds = datasets.get("digits", "train")
    ref, layers = copy.deepcopy(net), BN.bn_layers(net)
    BN.recalibrate(net, ds, samples=200, batch_size=64, device=torch.device("cpu"))
    inputs = {m: [] for m in BN.bn_layers(ref)}
    hooks = [m.register_forward_pre_hook(lambda mod, i: inputs[mod].append(i[0].detach()))
             for m in inputs]
    for m in ref.modules():
        m.train(isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        for lo in range(0, 200, 64):
            ref(torch.stack([ds[i][0] for i in range(lo, min(lo + 64, 200))]))
    for h in hooks:
        h.remove()
    for mine, (m, xs) in zip(layers, inputs.items()):
        means = torch.stack([x.double().mean((0, 2, 3)) for x in xs])
        var = torch.stack([x.double().permute(1, 0, 2, 3).reshape(x.shape[1], -1).var(1)
                           for x in xs])
        assert torch.allclose(mine.running_mean.double(), means.mean(0), rtol=1e-6, atol=1e-6)
        assert torch.allclose(mine.running_var.double(), var.mean(0), rtol=1e-6, atol=1e-6)
        assert int(mine.num_batches_tracked) == 4
    assert not net.training and all(not m.training for m in net.modules())


def test_only_batchnorm_runs_in_train_mode_during_recalibration():
    """Dropout stays in eval mode: two recalibrations give the same bits."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.BatchNorm2d(4), nn.Flatten(),
                        nn.LazyLinear(10))
    ds = datasets.get("digits", "train")
    net(torch.zeros(1, 3, 32, 32))
    runs = []
    for _ in range(2):
        state = torch.random.get_rng_state()
        BN.recalibrate(net, ds, samples=64, batch_size=32, device=torch.device("cpu"))
        assert torch.equal(torch.random.get_rng_state(), state)     # global RNG untouched
        runs.append(net[2].running_var.clone())
    assert torch.equal(runs[0], runs[1])


def test_a_network_without_batchnorm_says_so():
    assert BN.bn_layers(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))) == []
    from flatkd.evaluator import EvalConfig, EvalContext, _batchnorm
    ctx = EvalContext(nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), None, EvalConfig(),
                      torch.device("cpu"), False)
    assert _batchnorm(ctx)["mode"] == "none"


def test_as_saved_leaves_the_network_as_the_checkpoint_holds_it(trained):
    _, bad = trained
    r = flatkd.evaluate(bad, "robustness", overrides={"bn": "as-saved",
                                                     "robustness.corruptions": ["brightness"],
                                                     "robustness.severities": [1],
                                                     "robustness.epsilons": [1.0]})
    net = flatkd.load_checkpoint(bad).build_model()
    test = datasets.get("digits", "test")
    acc, _ = BN.accuracy_and_loss(net, test, len(test), 256, torch.device("cpu"))
    assert r["robustness"]["clean_accuracy"] == acc


@pytest.mark.parametrize("value,expect", [("recalib", "did you mean 'recalibrate'"),
                                          ("none", "valid choices: recalibrate, as-saved")])
def test_bad_bn_mode_is_refused_before_any_work(trained, value, expect, capsys, tmp_path):
    assert main(["eval", "--ckpt", str(trained[0]), "--suite", "flatness", "--set", f"bn={value}",
                 "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err and not (tmp_path / "r.json").exists()


def _recalibrate_on_rank(rank, port, ckpt, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from flatkd.training import distributed
    ctx = distributed.setup("cpu")
    net = flatkd.load_checkpoint(ckpt).build_model()
    BN.recalibrate(net, datasets.get("digits", "train"), samples=300, batch_size=64,
                   device=torch.device("cpu"), dist=ctx)
    torch.save({k: v for k, v in net.state_dict().items() if "running" in k or "tracked" in k},
               out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_ranks_get_the_buffers_of_one_process(trained, tmp_path):
    mp.spawn(_recalibrate_on_rank, args=(free_port(), trained[1], tmp_path), nprocs=WORLD,
             join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = flatkd.load_checkpoint(trained[1]).build_model()
        BN.recalibrate(net, datasets.get("digits", "train"), samples=300, batch_size=64,
                       device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    one = {k: v for k, v in net.state_dict().items() if "running" in k or "tracked" in k}
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got.keys() == one.keys()
        assert all(torch.equal(got[k], one[k]) for k in one), rank


def test_result_records_the_statistics_before_and_after(trained, tmp_path):
    out = tmp_path / "r.json"
    assert main(["eval", "--ckpt", str(trained[1]), "--suite", "flatness", "--out", str(out),
                 "--quiet", *[f"--set={k}={json.dumps(v)}" for k, v in FLAT.items()]]) == 0
    bn = json.loads(out.read_text())["bn"]
    assert bn["mode"] == "recalibrate" and bn["batch_size"] == 256
    assert bn["recalibrated"]["train_loss"] < bn["as_saved"]["train_loss"]
    assert set(bn["as_saved"]) == {"test_accuracy", "train_loss", "train_accuracy"}


def test_report_says_which_results_measured_saved_statistics(trained, tmp_path):
    from flatkd.report import build_report
    good, bad = trained
    new = flatkd.evaluate(good, "robustness", out=tmp_path / "r" / "a.json",
                          overrides={"robustness.corruptions": ["brightness"],
                                     "robustness.severities": [1], "robustness.epsilons": [1.0]})
    assert new["bn"]["mode"] == "recalibrate"
    md = build_report([tmp_path / "r"], tmp_path / "out")["markdown"].read_text()
    assert "BatchNorm statistics as saved" not in md and "| recalibrate |" in md
    old = dict(new)
    old.pop("bn")                                # a result written before the bn section
    old["checkpoint"] = {**new["checkpoint"], "sha256": "old", "seed": 1}
    (tmp_path / "r" / "b.json").write_text(json.dumps(old))
    md = build_report([tmp_path / "r"], tmp_path / "out2")["markdown"].read_text()
    assert "BatchNorm statistics as saved in 1 of the results" in md
    assert "| as-saved, recalibrate |" in md


def test_metrics_record_recalibrated_accuracy_of_every_network(tmp_path):
    """The last epoch's row (every row with metrics.bn_recalibrated) holds each network's test
    accuracy after recalibration, equal to recalibrating the checkpoint's network by hand; the
    checkpoint keeps the buffers as trained."""
    from flatkd.training import Trainer, resolve
    over = {"train_subset": 96, "test_subset": 64, "batch_size": 16, "eval_batch_size": 32}
    cfg = resolve("online", "resnet8", "digits", epochs=2, overrides=over)
    path = Trainer(cfg, tmp_path / "a", progress=False).run()
    ck = flatkd.load_checkpoint(path)
    first, last = ck.metrics
    assert "student_test_acc_recalibrated" not in first
    test = torch.utils.data.Subset(datasets.get("digits", "test"), range(64))
    train = torch.utils.data.Subset(datasets.get("digits", "train"), range(96))
    for name in ("student", "teacher"):
        net = ck.build_model(name)
        assert BN.accuracy_and_loss(net, test, 64, 32, torch.device("cpu"))[0] == \
            last[f"{name}_test_acc"]                               # buffers as trained
        BN.recalibrate(net, train, samples=96, batch_size=32, device=torch.device("cpu"))
        acc, _ = BN.accuracy_and_loss(net, test, 64, 32, torch.device("cpu"))
        assert last[f"{name}_test_acc_recalibrated"] == acc
    every = resolve("online", "resnet8", "digits", epochs=2,
                    overrides={**over, "metrics.bn_recalibrated": True})
    rows = flatkd.load_checkpoint(Trainer(every, tmp_path / "b", progress=False).run()).metrics
    assert all("teacher_test_acc_recalibrated" in r for r in rows)
    assert rows[-1] == last                                        # training itself unchanged
