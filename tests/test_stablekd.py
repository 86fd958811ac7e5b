"""StableKD (decomposition, recomposition, per-stage lr), its Table 4 ablation kd-mse and
train_fraction. Tiny digits subsets, resnet8 (k = 4); each test would catch a wrong reading."""
import pytest
import torch

from flatkd import load_checkpoint
from flatkd.datasets.fraction import stratified_indices
from flatkd.errors import FlatkdError
from flatkd.models import blocks as blockmod
from flatkd.training import Trainer, resolve
from flatkd.training.methods import Update
from flatkd.training.methods.stablekd import layout, recompose

SMALL = {"train_subset": 64, "test_subset": 32, "batch_size": 16, "epochs": 3}   # 4 steps/epoch


def trainer(tmp_path, method, name="run", **over):
    cfg = resolve(method, "resnet8", "digits", overrides={**SMALL, **over})
    return Trainer(cfg, tmp_path / name, progress=False)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A same-width ResNet-8 teacher (1 baseline epoch on the 64-image subset)."""
    return str(trainer(tmp_path_factory.mktemp("t"), "baseline", epochs=1, seed=7).run())


@pytest.fixture(scope="module")
def wide_teacher(tmp_path_factory):
    """A ResNet-8 ×2 teacher (offline trains it first; its network ``teacher``)."""
    return str(trainer(tmp_path_factory.mktemp("w"), "offline", epochs=1, seed=7,
                       teacher_width=2.0).run())


def first_batch(t, epoch=1):
    """An update for epoch ``epoch``'s first batch, materialised (x, y)."""
    from flatkd.training.batches import epoch_specs
    spec = epoch_specs(len(t.train_set), t.cfg.batch_size, t.cfg.seed, epoch,
                       (epoch - 1) * t.bpe + 1)[0]
    _, x, y = next(t._materialize([spec], t._main_stream))
    return Update("student", "stablekd", spec), x, y


def test_recomposition_gives_the_papers_groupings():
    five = layout(5, 3)
    assert five == [[(1,), (2,), (3,), (4,), (5,)], [(1, 2), (3, 4), (5,)],
                    [(1, 2, 3, 4), (5,)], [(1, 2, 3, 4, 5)]]
    assert layout(4, 2) == [[(1,), (2,), (3,), (4,)], [(1, 2), (3, 4)], [(1, 2, 3, 4)]]
    assert recompose([(1, 2, 3, 4, 5)]) == [(1, 2, 3, 4, 5)]            # n beyond one group: KD


def test_stage_epochs_default_split_and_bad_values(tmp_path, teacher):
    from flatkd.training.methods.stablekd import StableKD
    cfg = resolve("stablekd", "resnet8", "digits", overrides={"epochs": 10})
    assert StableKD.stage_epochs(cfg) == [3, 3, 4]                      # ⌊e/3⌋, ⌊e/3⌋, rest
    for over, match in [({"epochs": 2}, r"stages of \[0, 0, 2\].*epochs ≥ 3"),
                        ({"stablekd.stage_epochs": [1, 1]}, "must list 3 stages"),
                        ({"stablekd.stage_epochs": [1, 1, 2]}, "summing to epochs=3")]:
        with pytest.raises(FlatkdError, match=match):
            trainer(tmp_path, "stablekd", teacher_ckpt=teacher, **over)
    with pytest.raises(FlatkdError, match="--teacher-ckpt"):
        trainer(tmp_path, "stablekd")
    with pytest.raises(FlatkdError, match="at most 4 blocks; valid: 1 … 4"):
        trainer(tmp_path, "stablekd", teacher_ckpt=teacher, **{"stablekd.blocks": 5})


def test_split_shares_the_network_and_composes_to_its_forward():
    from flatkd import models
    net = models.create("resnet18", 10, [0.5] * 3, [0.25] * 3).eval()
    x = torch.rand(2, 3, 16, 16)
    for k, sizes in [(5, [1, 1, 1, 1, 1]), (3, [2, 2, 1]), (1, [5])]:
        parts = blockmod.split(net, k)
        assert [len(b.units) for b in parts] == sizes
        h = x
        for b in parts:
            h = b.run(h)
        assert torch.equal(h, net(x))
    assert sum(p.numel() for b in blockmod.split(net, 5) for u in b.units
               for p in u.parameters()) == sum(p.numel() for p in net.parameters()) - \
        sum(p.numel() for p in net.fc.parameters())      # the classifier holds fc by reference


def test_student_block_i_receives_the_teachers_block_i_minus_1_output(tmp_path, teacher):
    t = trainer(tmp_path, "stablekd", teacher_ckpt=teacher)
    s, te = t.method.nets.modules["student"], t.method.nets.modules["teacher"]
    got, want = {}, {}
    s.normalize.register_forward_pre_hook(lambda m, a: got.__setitem__(1, a[0]))
    for i in (2, 3):
        s.stages[i - 1].register_forward_pre_hook(lambda m, a, i=i: got.__setitem__(i, a[0]))
        te.stages[i - 2].register_forward_hook(lambda m, a, o, i=i: want.__setitem__(i, o))
    s.pool.register_forward_pre_hook(lambda m, a: got.__setitem__(4, a[0]))
    te.stages[2].register_forward_hook(lambda m, a, o: want.__setitem__(4, o))
    u, x, y = first_batch(t)
    t.method.begin(u)
    t.method.loss(u.role, x, y)
    assert torch.equal(got[1], x)
    for i in (2, 3, 4):
        assert torch.equal(got[i], want[i]), i
    assert not t.method.nets.modules["projector"].maps            # equal widths: no projectors


def block_params(net):
    return [list(net.stem.parameters()) + list(net.stages[0].parameters()),
            list(net.stages[1].parameters()), list(net.stages[2].parameters()),
            list(net.fc.parameters())]


def test_each_groups_loss_reaches_only_its_own_blocks(tmp_path, wide_teacher):
    t = trainer(tmp_path, "stablekd", teacher_ckpt=wide_teacher, teacher_ckpt_model="teacher")
    s, te = t.method.nets.modules["student"], t.method.nets.modules["teacher"]
    proj = t.method.nets.modules["projector"].maps
    assert {n: (m[0].in_channels, m[0].out_channels) for n, m in proj.items()} == \
        {"p1": (32, 16), "p2": (64, 32), "p3": (128, 64)}        # teacher ×2 → student widths
    assert all(isinstance(m[2], torch.nn.ReLU) for m in proj.values())   # stage-like outputs
    seen = {}
    s.stages[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("in2", a[0]))
    s.stages[0].register_forward_hook(lambda m, a, o: seen.__setitem__("out1", o))
    te.stages[0].register_forward_hook(lambda m, a, o: seen.__setitem__("t1", o))
    u, x, y = first_batch(t)
    t.method.begin(u)
    terms, logs = t.method.group_losses(x, y, t.method.groups_of(u.spec))
    assert len(terms) == 4 and {"mse1", "mse2", "mse3", "ce", "kd"} <= set(logs)
    # block 2 consumes P_1(T_1); block 1 is trained to emit exactly that (so they chain)
    torch.testing.assert_close(seen["in2"], proj["p1"](seen["t1"]))
    assert logs["mse1"] == pytest.approx(torch.nn.functional.mse_loss(seen["out1"], seen["in2"]).item())
    owned = block_params(s)
    for i in (1, 2, 3):                       # P_i belongs to the group it feeds (block i + 1)
        owned[i] += list(proj[f"p{i}"].parameters())
    every = [p for group in owned for p in group]
    assert len(every) == len(list(s.parameters())) + len(list(proj.parameters()))
    for g, term in enumerate(terms):
        grads = torch.autograd.grad(term, every, allow_unused=True, retain_graph=True)
        mine = {id(p) for p in owned[g]}
        for p, grad in zip(every, grads):
            if id(p) in mine:
                continue
            assert grad is None or not grad.any(), (g, p.shape)
        assert all(grad is not None and grad.any() for p, grad in zip(every, grads)
                   if id(p) in mine and p.dim() > 1)          # every weight of the group learns


def test_one_group_is_vanilla_offline_kd_on_the_same_batch(tmp_path, teacher):
    lam = 0.5
    t = trainer(tmp_path, "stablekd", "skd", teacher_ckpt=teacher, **{"stablekd.kl_weight": lam})
    kd = trainer(tmp_path, "offline", "kd", teacher_ckpt=teacher, **{
        "kd.alpha": lam / (1 + lam), "kd.temperature": 1.0, "kd.feature_weight": 0.0})
    u, x, y = first_batch(t, epoch=3)                  # stage 2 of StableKD-4/2: one group
    assert t.method.groups_of(u.spec) == [(1, 2, 3, 4)]
    t.method.begin(u)
    loss, logs = t.method.loss(u.role, x, y)
    kd.method.begin(Update("student", "offline", u.spec))
    ref, _ = kd.method.loss("offline", x, y)
    assert loss.item() > 0.5 and set(logs) == {"loss", "ce", "kd"}
    torch.testing.assert_close(loss, (1 + lam) * ref, rtol=1e-5, atol=1e-6)   # Eq. 8 vs Eq. 3
    t.method.begin(first_batch(t)[0])                 # an epoch-1 batch: stage 0, four groups
    assert t.method.loss(u.role, x, y)[0].item() != pytest.approx(loss.item())


def test_lr_cycle_restarts_at_each_stage_boundary(tmp_path, teacher):
    t = trainer(tmp_path, "stablekd", teacher_ckpt=teacher,
                **{"optim.schedule": "triangular2", "optim.lr": 0.4, "optim.min_lr": 0.0})
    assert t.stage_epochs == [1, 1, 1] and t.bpe == 4
    lrs = [t.lr_at(step) for step in range(1, 13)]
    assert lrs == pytest.approx([0.2, 0.4, 0.2, 0.0, 0.1, 0.2, 0.1, 0.0, 0.05, 0.1, 0.05, 0.0])
    c = trainer(tmp_path, "stablekd", "cos", teacher_ckpt=teacher, epochs=3, **{
        "optim.schedule": "cosine", "stablekd.recompositions": 1, "stablekd.stage_epochs": [1, 2]})
    assert c.stage_epochs == [1, 2]
    assert c.lr_at(1) == c.lr_at(5) == c.cfg.optim.lr > c.lr_at(4)          # restarted at step 5
    assert c.lr_at(12) < c.lr_at(8) < c.lr_at(5)                            # one 2-epoch cosine


def test_resume_across_a_stage_boundary_and_what_is_recorded(tmp_path, teacher):
    over = {"teacher_ckpt": teacher, "optim.schedule": "triangular2"}
    full = trainer(tmp_path, "stablekd", "full", **over)
    full.run()
    part = trainer(tmp_path, "stablekd", "part", **over)
    part._train_epoch(1)                             # stage 0 ends after epoch 1
    resumed = Trainer(part.cfg, tmp_path / "part", resume=True, progress=False)
    resumed.run()
    a, b = full.method.nets.modules, resumed.method.nets.modules
    for name in ("student", "projector"):
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    ck = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    opts = ck.raw["state"]["options"]
    assert opts["groups"] == [[[1], [2], [3], [4]], [[1, 2], [3, 4]], [[1, 2, 3, 4]]]
    assert opts["stage_epochs"] == [1, 1, 1] and opts["stage_first_epoch"] == [1, 2, 3]
    assert opts["stage_lr"]["peak"] == pytest.approx([0.05, 0.025, 0.0125])
    assert ck.raw["state"]["stage_epochs"] == [1, 1, 1]
    rows = [(m["stage"], m["groups"]) for m in ck.raw["metrics"]]
    assert rows == [(0, 4), (1, 2), (2, 1)]
    assert [m["lr"] for m in ck.raw["metrics"]] == pytest.approx([5e-6] * 3)   # each cycle's end
    assert (tmp_path / "full" / "metrics.csv").read_text().splitlines()[0].count("stage,groups")
    assert sorted(p.name for p in (tmp_path / "full").glob("stage-*.pt")) == \
        ["stage-1.pt", "stage-2.pt", "stage-3.pt"]
    student = ck.build_model("student")                 # the suites see a plain ResNet-8
    assert type(student).__name__ == "CifarResNet"
    assert sum(p.numel() for p in student.parameters()) == \
        sum(p.numel() for p in a["student"].parameters())


def test_kd_mse_runs_end_to_end_with_mse_on_every_block(tmp_path, teacher):
    t = trainer(tmp_path, "kd-mse", teacher_ckpt=teacher)
    assert t.stage_epochs == [3]
    s, te = t.method.nets.modules["student"], t.method.nets.modules["teacher"]
    got, want = {}, {}
    s.stages[1].register_forward_pre_hook(lambda m, a: got.__setitem__(2, a[0]))
    s.stages[0].register_forward_hook(lambda m, a, o: want.__setitem__("own", o))
    te.stages[0].register_forward_hook(lambda m, a, o: want.__setitem__("teacher", o))
    u, x, y = first_batch(t)
    t.method.begin(u)
    loss, logs = t.method.loss(u.role, x, y)
    assert torch.equal(got[2], want["own"]) and not torch.equal(got[2], want["teacher"])
    assert {"mse1", "mse2", "mse3"} <= set(logs)
    assert loss.item() == pytest.approx(logs["ce"] + logs["kd"] + logs["mse1"] + logs["mse2"]
                                        + logs["mse3"], rel=1e-5)
    assert "recompositions" not in t.method.options()


def test_kd_mse_regresses_the_student_to_a_wider_teacher(tmp_path, wide_teacher):
    t = trainer(tmp_path, "kd-mse", teacher_ckpt=wide_teacher, teacher_ckpt_model="teacher")
    proj = t.method.nets.modules["projector"].maps
    assert {n: (m.in_channels, m.out_channels) for n, m in proj.items()} == \
        {"p1": (16, 32), "p2": (32, 64), "p3": (64, 128)}
    u, x, y = first_batch(t)
    t.method.begin(u)
    loss, logs = t.method.loss(u.role, x, y)
    loss.backward()
    assert all(p.grad is not None and p.grad.any() for p in proj.parameters())


def test_train_fraction_is_seeded_stratified_and_nested(tmp_path):
    targets = [c for c in range(3) for _ in range(10)] + [3] * 5
    half = stratified_indices(targets, 0.5, seed=1)
    assert [sum(targets[i] == c for i in half) for c in range(4)] == [5, 5, 5, 2]
    assert set(stratified_indices(targets, 0.2, seed=1)) <= set(half)
    assert half == stratified_indices(targets, 0.5, seed=1) != stratified_indices(targets, 0.5, seed=2)
    assert len(stratified_indices(targets, 0.01, seed=0)) == 4          # ≥ 1 per class
    cfg = resolve("baseline", "resnet8", "digits", overrides={"train_fraction": 0.2, "epochs": 1})
    t = Trainer(cfg, tmp_path / "f", progress=False)
    assert len(t.train_set) == 287 and len(set(t.train_set.targets)) == 10
    with pytest.raises(FlatkdError, match=r"train_fraction must lie in \(0, 1\]"):
        resolve("baseline", "resnet8", "digits", overrides={"train_fraction": 1.5})


def test_report_section_tables_and_epochs_ratio(tmp_path):
    """Fake runs: result files + the run folders' config.yaml (no checkpoints). A report takes
    one result per (method, seed), so every cell (budget, fraction) has seeds of its own."""
    import json

    import yaml

    from flatkd.report import build_report
    from report_fixtures import _result
    acc = {("offline", 3): 0.80, ("offline", 6): 0.90, ("stablekd", 3): 0.92, ("stablekd", 6): 0.95,
           ("kd-mse", 6): 0.91}
    for (method, epochs), a in acc.items():
        for r in (0, 1):
            for frac in ((None, 0.5) if (method, epochs) != ("kd-mse", 6) else (None,)):
                seed = 10 * epochs + 100 * (frac is not None) + r
                run = tmp_path / f"{method}-{epochs}-{frac}-{seed}"
                run.mkdir()
                cfg = {"epochs": epochs, "train_fraction": frac, "teacher_ckpt": "t.pt", "seed": seed}
                opts = {"blocks": 4, "recompositions": 2} if method == "stablekd" else {}
                (run / "config.yaml").write_text(yaml.safe_dump({"config": cfg,
                                                                 "derived": {"options": opts}}))
                res = _result("online", 0, run)
                res.pop("flatness")                        # robustness only, as measured
                res["checkpoint"] |= {"method": method, "interval": None, "arch": "resnet8",
                                      "path": str(run / "checkpoint.pt"), "seed": seed,
                                      "sha256": run.name}
                res["robustness"]["clean_accuracy"] = a - 0.1 * (frac is not None) + 0.01 * r
                (run / "result.json").write_text(json.dumps(res))
                if (method, epochs, frac, r) == ("stablekd", 3, None, 1):    # swings: † in its cell
                    (run / "metrics.csv").write_text("epoch,student_test_acc\n1,0.90\n2,0.60\n"
                                                     "3,0.93\n")
    stray = tmp_path / "other-offline"                     # a different teacher: left out
    stray.mkdir()
    (stray / "config.yaml").write_text(yaml.safe_dump({"config": {"epochs": 3, "teacher_ckpt": "x.pt"}}))
    res = _result("online", 0, stray)
    res["checkpoint"] |= {"method": "offline", "interval": None, "path": str(stray / "checkpoint.pt"),
                          "seed": 999, "sha256": "stray"}
    (stray / "result.json").write_text(json.dumps(res))
    written = build_report([tmp_path], tmp_path / "report")
    md = written["markdown"].read_text()
    assert "## StableKD" in md
    assert "StableKD-4/2 reaches KD's 90.50 % (6 epochs) in 3 epochs: epochs ratio KD / StableKD-4/2 = 2.00" in md
    table = pd_read(written["tables"]["stablekd_epochs"][0])
    kd3 = table[(table.scheme == "KD") & (table.epochs == 3)].iloc[0]
    assert (kd3["mean_pct"], kd3["n"]) == (pytest.approx(80.5), 2)       # the stray run is out
    assert table.set_index(["scheme", "epochs"])["not_converged"].to_dict() == {
        ("KD", 3): 0, ("KD", 6): 0, ("StableKD-4/2", 3): 1, ("StableKD-4/2", 6): 0,
        ("KD + MSE", 6): 0}
    shown = (tmp_path / "report" / "tables" / "stablekd_epochs.md").read_text()
    assert shown.count("†") == 1 and "(2) † (1 not converged)" in shown
    frac = pd_read(written["tables"]["stablekd_fraction"][0])
    assert sorted(frac.train_fraction.unique()) == [0.5, 1.0] and "KD + MSE" not in set(frac.scheme)
    assert {"stablekd_epochs_digits_resnet8", "stablekd_fraction_digits_resnet8_e3"} <= set(written["figures"])


def pd_read(path):
    import pandas as pd
    return pd.read_csv(path)


def test_paper_presets_hold_the_papers_recipes():
    from importlib import resources
    root = resources.files("flatkd.presets").joinpath("paper")
    def cfg(name, method="stablekd"):
        with resources.as_file(root.joinpath(name)) as path:
            return resolve(method, None, None, config_file=str(path))
    s = cfg("stablekd-cifar100-resnet18.yaml")
    assert (s.optim.lr, s.optim.schedule, s.batch_size, s.optim.weight_decay) == (0.5, "triangular2", 128, 5e-4)
    kd = cfg("stablekd-cifar100-resnet18-kd.yaml", "offline")
    assert (kd.optim.lr, kd.optim.schedule, kd.optim.warmup_epochs, kd.kd.alpha) == (0.1, "cosine", 18, 0.5)
    im = cfg("stablekd-imagenet-resnet18.yaml")
    assert (im.optim.name, im.optim.lr, im.batch_size, im.optim.weight_decay,
            im.stablekd.recompositions) == ("adamw", 0.02, 256, 0.2, 3)


def test_dkd_decomposes_classical_kd_and_at_maps_are_normalised():
    from flatkd.training.losses import kd_kl
    from flatkd.training.methods.frozen import at_loss, attention_map, dkd_loss
    g = torch.Generator().manual_seed(0)
    s, t, y, T = torch.randn(1, 5, generator=g), torch.randn(1, 5, generator=g), torch.tensor([2]), 2.0
    tckd, nckd = dkd_loss(s, t, y, alpha=1.0, beta=1.0, T=T)
    p_gt = torch.softmax(t / T, 1)[0, 2]
    torch.testing.assert_close(tckd + (1 - p_gt) * nckd, kd_kl(s, t, T))   # DKD paper Eq. 4
    assert dkd_loss(s, t, y, 2.0, 8.0, T)[1] == pytest.approx(8 * nckd.item(), rel=1e-6)
    assert all(v.abs() < 1e-6 for v in dkd_loss(t, t, y, 1.0, 8.0, T))
    f = torch.ones(1, 3, 2, 2)
    assert attention_map(f).tolist() == [[0.5] * 4]
    torch.testing.assert_close(attention_map(3 * f[:, :1]), attention_map(f))      # width-agnostic
    h = torch.zeros(1, 1, 2, 2)
    h[0, 0, 0, 0] = 1.0                       # a = [1, 0, 0, 0] vs [.5]*4: mean sq diff = 0.25
    assert at_loss([h], [f], beta=1000.0).item() == pytest.approx(500 * 0.25)
    with pytest.raises(FlatkdError, match="dkd.beta must be a finite number ≥ 0"):
        resolve("dkd", "resnet8", "digits", overrides={"dkd.beta": -1})


def test_dkd_and_at_train_the_student_only(tmp_path, wide_teacher):
    from flatkd import load_checkpoint as load
    for method in ("dkd", "at"):
        t = trainer(tmp_path, method, method, epochs=1, teacher_ckpt=wide_teacher,
                    teacher_ckpt_model="teacher")
        before = {k: v.clone() for k, v in t.method.nets.modules["teacher"].state_dict().items()}
        t.run()
        after = t.method.nets.modules["teacher"].state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert set(t.optimizers) == {"student"} and t.opt_steps == {"student": 4}
        assert load(t.ckpt_path).raw["state"]["options"]["teacher"]["width"] == 2.0


def test_stage_index_of_an_epoch():
    """The one mapping epoch → stage used by the loop's lr schedule and by the methods."""
    from flatkd.training.methods.base import stage_index
    assert [stage_index([2, 1, 3], e) for e in range(1, 8)] == [0, 0, 1, 2, 2, 2, 2]
    assert stage_index([0, 2], 1) == 1 and stage_index([4], 9) == 0


def test_dkd_distils_from_a_vit_teacher_and_at_refuses_one_before_any_work(tmp_path):
    """DKD needs only the teacher's logits (any architecture); AT needs ResNet stages on both
    sides and says so when the run is built, before a folder is written."""
    cfg = resolve("baseline", "deit_tiny", "digits", overrides={**SMALL, "epochs": 1, "seed": 3})
    vit = str(Trainer(cfg, tmp_path / "vit", progress=False).run())
    t = trainer(tmp_path, "dkd", "dkd", epochs=1, teacher_ckpt=vit)
    t.run()
    assert t.opt_steps == {"student": 4}
    assert load_checkpoint(t.ckpt_path).raw["state"]["options"]["teacher"]["arch"] == "deit_tiny"
    with pytest.raises(FlatkdError, match=r"the teacher \(deit_tiny\) has none"):
        trainer(tmp_path, "at", "at", epochs=1, teacher_ckpt=vit)
    assert not (tmp_path / "at").exists()
