"""Training loop, spaced replay and methods (issue 2 / SPEC §3). Tiny digits subsets, resnet8."""
import math

import pytest
import torch
import torch.nn.functional as F

from flatkd import models
from flatkd.errors import FlatkdError, TrainingDiverged
from flatkd.training import Trainer, resolve
from flatkd.training.batches import BatchSpec, batches_per_epoch, epoch_specs
from flatkd.training.loop import interval_steps
from flatkd.training.methods.selfkd import feature_exits, self_distillation_loss
from flatkd.training.losses import feature_loss, soft_loss

SMALL = {"train_subset": 96, "test_subset": 64, "batch_size": 16, "epochs": 3}   # 6 steps/epoch


def trainer(tmp_path, method, name="run", progress=False, on_update=None, interval=None, **over):
    cfg = resolve(method, "resnet8", "digits", interval=interval, overrides={**SMALL, **over})
    return Trainer(cfg, tmp_path / name, progress=progress, on_update=on_update)


def weights(t: Trainer) -> dict:
    return {f"{n}.{k}": v.detach().clone() for n, m in t.method.nets.modules.items()
            for k, v in m.state_dict().items()}


# ---------------------------------------------------------------- interval arithmetic
def test_interval_steps_paper_numbers():
    assert batches_per_epoch(50_000, 128) == 391            # CIFAR, no drop_last
    assert interval_steps(1.5, 391) == 586
    assert interval_steps(4.0, 391) == 1564
    assert interval_steps(0.5, 45) == 22
    assert interval_steps(0.0, 391) == 0


def test_epoch_specs_cover_data_once_and_are_deterministic():
    a = epoch_specs(100, 16, seed=3, epoch=2, first_step=8)
    assert [s.step for s in a] == list(range(8, 15))
    assert sorted(i for s in a for i in s.indices) == list(range(100))
    assert len(a[-1].indices) == 100 - 6 * 16                # last batch is short
    assert a == epoch_specs(100, 16, seed=3, epoch=2, first_step=8)
    assert [s.indices for s in a] != [s.indices for s in epoch_specs(100, 16, 3, 3, 8)]
    seeds = [s.seed for s in a]
    assert len(set(seeds)) == len(seeds) and all(s % (1 << 20) == 0 for s in seeds)


@pytest.mark.parametrize("leftover,student_steps", [("drop", 16), ("distil", 18)])
def test_intervals_cross_epochs_and_leftover(tmp_path, leftover, student_steps):
    # 6 steps/epoch, s = 0.75 epoch → 4 steps: replays after steps 4, 8, 12, 16; 17–18 left over
    t = trainer(tmp_path, "spaced-online", interval=0.75, **{"spaced.leftover": leftover})
    assert (t.bpe, t.interval_steps) == (6, 4)
    t.run()
    expected = [4, 8, 12, 16] + ([18] if leftover == "distil" else [])
    assert t.method.replay_steps == expected                 # step 8 lies in epoch 2: crosses
    assert t.opt_steps == {"teacher": 18, "student": student_steps}
    assert t.metrics[-1]["student_steps"] == student_steps


def test_interval_covering_run_with_drop_is_refused(tmp_path):
    with pytest.raises(FlatkdError, match="leftover=distil"):
        trainer(tmp_path, "spaced-online", interval=3.0)


@pytest.mark.parametrize("init", ["independent", "same"])
def test_spaced_with_zero_interval_is_online_kd_bit_for_bit(tmp_path, init):
    online = trainer(tmp_path, "online", "a", epochs=2, **{"kd.teacher_init": init})
    online.run()
    spaced = trainer(tmp_path, "spaced-online", "b", epochs=2, interval=0.0,
                     **{"kd.teacher_init": init})
    spaced.run()
    wa, wb = weights(online), weights(spaced)
    assert wa.keys() == wb.keys() and len(wa) > 0
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert online.opt_steps == spaced.opt_steps == {"teacher": 12, "student": 12}
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()


# ---------------------------------------------------------------- exact replay
def test_replay_is_pixel_exact_and_buffer_holds_no_images(tmp_path):
    seen = {"teacher": {}, "replay": []}
    buffers = []

    def hook(t, u, x, y):
        if u.role == "teacher":
            seen["teacher"][u.spec.step] = (x.clone(), y.clone())
        elif u.role == "replay":
            seen["replay"].append((u.spec.step, x.clone(), y.clone()))
        buffers.append(list(t.method.buffer))

    t = trainer(tmp_path, "spaced-online", interval=0.5, on_update=hook, epochs=2)   # 3-step interval
    assert t.augment.padding == 4                            # augmentation is on
    t.run()
    assert [s for s, _, _ in seen["replay"]] == list(range(1, 13))   # same batches, same order
    for step, x, y in seen["replay"]:
        tx, ty = seen["teacher"][step]
        assert torch.equal(x, tx) and torch.equal(y, ty)
    base = torch.stack([t.train_set[i][0] for i in t.method.replay_steps[:1] and range(16)])
    assert not torch.equal(seen["teacher"][1][0], base)      # pixels differ from un-augmented
    for buf in buffers:                                      # specs only: ints, no tensors
        assert all(isinstance(s, BatchSpec) for s in buf)
        assert all(isinstance(v, int) for s in buf for v in (s.step, s.seed, *s.indices))


def test_teacher_frozen_during_replay_student_frozen_during_advance(tmp_path):
    log = []

    def snap(t):
        return {n: [p.detach().clone() for p in m.parameters()]
                for n, m in t.method.nets.modules.items()}

    def hook(t, u, x, y):
        log.append((u.role, snap(t)))

    t = trainer(tmp_path, "spaced-online", interval=0.5, on_update=hook, epochs=1)
    t.run()
    log.append(("end", snap(t)))
    checked = {"replay": 0, "teacher": 0}
    for (role, before), (_, after) in zip(log, log[1:]):
        frozen = ["teacher"] if role == "replay" else ["student", "projector"]
        moved = "student" if role == "replay" else "teacher"
        for name in frozen:
            assert all(torch.equal(a, b) for a, b in zip(before[name], after[name])), (role, name)
        assert any(not torch.equal(a, b) for a, b in zip(before[moved], after[moved]))
        checked[role] += 1
    assert checked["replay"] >= 5 and checked["teacher"] >= 5


@pytest.mark.parametrize("method", ["online", "spaced-online"])
def test_teacher_init_policy_is_shared_by_online_and_spaced(tmp_path, method):
    def params(t, name):
        return list(t.method.nets.modules[name].parameters())

    same = trainer(tmp_path, method, "same", **{"kd.teacher_init": "same"})
    assert all(torch.equal(a, b) for a, b in zip(params(same, "student"), params(same, "teacher")))
    ind = trainer(tmp_path, method, "ind")                  # default: independent
    assert ind.cfg.kd.teacher_init == "independent"
    assert not torch.equal(params(ind, "student")[0], params(ind, "teacher")[0])
    assert all(torch.equal(a, b) for a, b in zip(params(same, "student"), params(ind, "student")))
    assert ind.method.options()["teacher_init"] == "independent"


def test_spaced_self_takes_extra_steps(tmp_path):
    t = trainer(tmp_path, "spaced-self", interval=1.0, epochs=2)    # 6-step interval
    t.run()
    assert t.method.replay_steps == [6, 12]
    assert t.opt_steps == {"student": 12 + 12}                # deep path + replays
    assert t.metrics[-1]["student_steps"] == 24


# ---------------------------------------------------------------- self-KD loss
def test_feature_exits_follow_the_official_code():
    assert feature_exits(4, "code") == [2, 3]        # ResNet-18: layer2, layer1 exits; layer3 skipped
    assert feature_exits(4, "all") == [1, 2, 3]
    assert feature_exits(3, "code") == [2]


def test_self_distillation_loss_components():
    torch.manual_seed(0)
    net = models.create("resnet8", 10, (0.5,) * 3, (0.25,) * 3, multi_exit=True)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    cfg = resolve("self", "resnet8", "digits")
    total, logs = self_distillation_loss(net, x, y, cfg, soft_loss("ce", False), [2],
                                         feature_loss(None, False))
    z, h = net.forward_exits(x)
    T = 3.0
    expected = F.cross_entropy(z[0], y)
    for i in (1, 2):
        p_t = torch.softmax(z[0] / T, 1)
        soft = -(p_t * torch.log_softmax(z[i] / T, 1)).sum(1).mean()
        expected = expected + 0.3 * soft + 0.7 * F.cross_entropy(z[i], y)
    expected = expected + 0.03 * ((net.adapt(2, h[2]) - h[0]) ** 2).mean()
    assert torch.allclose(total, expected, rtol=1e-5)
    assert "feat_2" in logs and "feat_1" not in logs
    total.backward()
    assert net.adaptation[net.num_exits - 1 - 2].weight.grad is not None     # exit 2 trained
    assert net.adaptation[net.num_exits - 1 - 1].weight.grad is None         # exit 1 has no term


# ---------------------------------------------------------------- divergence
def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
    def poison(t, u, x, y):
        if u.spec.step == 8 and u.role == "student":
            with torch.no_grad():
                next(t.method.nets.modules["student"].parameters()).fill_(math.nan)

    t = trainer(tmp_path, "baseline", on_update=poison)
    with pytest.raises(TrainingDiverged, match="step 8"):
        t.run()
    from flatkd import load_checkpoint
    ck = load_checkpoint(t.ckpt_path)
    assert ck.epoch == 1 and ck.step == 6
    assert all(torch.isfinite(v).all() for v in ck.raw["models"]["student"].values()
               if v.is_floating_point())


# ---------------------------------------------------------------- real on-disk formats
def test_online_kd_trains_on_cifar100_files_with_rotation(tmp_path, tiny_cifar100):
    root, _ = tiny_cifar100
    cfg = resolve("online", "resnet8", "cifar100", epochs=1,
                  overrides={"data_root": str(root), "batch_size": 8})
    t = Trainer(cfg, tmp_path / "c100", progress=False)
    assert t.augment.rotation == 15 and t.augment.hflip           # official CIFAR online-KD pipeline
    assert t.num_classes == 100 and t.bpe == 3
    t.run()
    assert t.opt_steps == {"teacher": 3, "student": 3}
    model = models.create(**t.method.nets.architectures["student"])
    assert model.normalize.mean.flatten().tolist() == pytest.approx([0.4914, 0.4822, 0.4465])


def test_spaced_self_trains_on_tinyimagenet_folder(tmp_path, tiny_tinyimagenet):
    root, info = tiny_tinyimagenet
    cfg = resolve("spaced-self", "resnet8", "tinyimagenet", epochs=2, interval=1.0,
                  overrides={"data_root": str(root), "batch_size": 4})
    t = Trainer(cfg, tmp_path / "tin", progress=False)
    assert t.augment.rotation == 0 and t.train_set[0][0].shape == (3, 64, 64)
    t.run()
    assert t.method.replay_steps == [2, 4] and t.opt_steps == {"student": 8}
    assert 0.0 <= t.metrics[-1]["student_test_acc"] <= 1.0


# ---------------------------------------------------------------- official-pipeline options
def test_feature_losses_match_the_official_torch_calls():
    torch.manual_seed(0)
    f_s, f_t = torch.randn(4, 6), torch.rand(4, 6)
    expected = {"l2": torch.nn.MSELoss()(f_s, f_t), "l1": torch.nn.L1Loss()(f_s, f_t),
                "smoothl1": torch.nn.SmoothL1Loss()(f_s, f_t), "dist": torch.dist(f_s, f_t),
                "ce": -(f_t * torch.log_softmax(f_s, 1)).sum(1).mean()}
    for name, value in expected.items():
        assert torch.allclose(feature_loss(name, False)(f_s, f_t), value), name
    assert feature_loss(None, True) is feature_loss("dist", False)         # faithful → torch.dist
    assert feature_loss(None, False) is feature_loss("l2", True)           # explicit name wins
    with pytest.raises(FlatkdError, match="valid choices: ce, dist, l1, l2, smoothl1"):
        feature_loss("mse2", False)


def test_feature_loss_option_reaches_the_student_loss_and_is_recorded(tmp_path):
    t = trainer(tmp_path, "online", **{"kd.feature_loss": "l1"})
    assert t.method.options()["feature_loss"] == "l1"
    torch.manual_seed(1)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    t_logits, t_feat = torch.randn(4, 10), torch.rand(4, 64)
    _, logs = t.method.student_loss(x, y, t_logits, t_feat)
    s_feat = t.method.nets.modules["student"].forward_features(x)[1]
    want = F.l1_loss(t.method.nets.modules["projector"](s_feat), t_feat)
    assert logs["feat"] == pytest.approx(want.item(), rel=1e-5)


def test_byot_exit_convs_are_kaiming_fan_out():
    torch.manual_seed(0)
    net = models.create("resnet18", 10, (0.5,) * 3, (0.25,) * 3, multi_exit=True)
    convs = [m for m in net.bottleneck.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) > 4
    for conv in convs:
        w = conv.weight
        fan_out = w.shape[0] * w[0, 0].numel()
        assert w.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.15), w.shape


@pytest.mark.parametrize("mode,moves", [("full", True), ("backbone", False)])
def test_spaced_self_deep_step_updates_exit_bn_only_in_full_mode(tmp_path, mode, moves):
    t = trainer(tmp_path, "spaced-self", interval=1.0, **{"selfkd.deep_forward": mode})
    net = t.method.nets.modules["student"]
    bn = net.attention[0].bn
    before = bn.running_mean.clone()
    head = net.classifiers[0].weight.clone()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss, _ = t.method.loss("deep", x, y)
    loss.backward()
    assert (not torch.equal(before, bn.running_mean)) is moves
    assert net.classifiers[0].weight.grad is None and torch.equal(head, net.classifiers[0].weight)
    assert loss.isfinite()


def test_self_kd_records_every_exit_and_the_ensemble(tmp_path):
    t = trainer(tmp_path, "self", epochs=1)
    t.run()
    row = t.metrics[-1]
    assert {"exit_1_test_acc", "exit_2_test_acc", "ensemble_test_acc"} <= row.keys()
    net = t.method.nets.modules["student"].eval()
    xs = torch.stack([t.test_set[i][0] for i in range(len(t.test_set))])
    ys = torch.tensor([t.test_set[i][1] for i in range(len(t.test_set))])
    with torch.no_grad():
        z = net.forward_exits(xs)[0]
    assert row["exit_2_test_acc"] == (z[2].argmax(1) == ys).float().mean().item()
    assert row["ensemble_test_acc"] == (torch.stack(z).mean(0).argmax(1) == ys).float().mean().item()
    assert row["student_test_acc"] == (z[0].argmax(1) == ys).float().mean().item()


def test_spaced_self_on_cifar_uses_byot_augmentation_and_replays_it_exactly(tmp_path, tiny_cifar10):
    root, _ = tiny_cifar10
    seen = {}

    def hook(t, u, x, y):
        seen.setdefault(u.spec.step, []).append((u.role, x.clone()))

    cfg = resolve("spaced-self", "resnet8", "cifar10", epochs=1, interval=0.5,
                  overrides={"data_root": str(root), "batch_size": 4})
    t = Trainer(cfg, tmp_path / "ss", progress=False, on_update=hook)
    assert t.augment_policy == "autoaugment-cutout"
    assert "AutoAugment" in t._derived()["augmentation"]
    t.run()
    replayed = [s for s, ups in seen.items() if [r for r, _ in ups] == ["deep", "self"]]
    assert len(replayed) >= 2
    for step in replayed:
        (_, deep), (_, replay) = seen[step]
        assert torch.equal(deep, replay)                     # same pixels, AutoAugment included
    online = resolve("online", "resnet8", "cifar10", overrides={"data_root": str(root), "batch_size": 4})
    assert Trainer(online, tmp_path / "o", progress=False).augment_policy == "crop-flip"


def test_imagefolder_trains_with_random_resized_crops_of_the_originals(tmp_path, tiny_imagefolder):
    root, _ = tiny_imagefolder
    cfg = resolve("baseline", "resnet8", "imagefolder", epochs=1,
                  overrides={"data_root": str(root), "batch_size": 2})
    t = Trainer(cfg, tmp_path / "if", progress=False)
    assert t.augment_policy == "imagenet" and t.augment.needs_original
    assert t.test_set[0][0].shape == (3, 224, 224)           # Resize(256) + CenterCrop(224)
    t.run()
    assert t.opt_steps == {"student": 2}
    bad = resolve("baseline", "resnet8", "digits", overrides={"augment.policy": "randaug"})
    with pytest.raises(FlatkdError, match="valid choices: autoaugment-cutout, crop-flip, imagenet, randaugment-erasing"):
        Trainer(bad, tmp_path / "bad", progress=False)
