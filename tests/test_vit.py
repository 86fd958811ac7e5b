"""DeiT-Tiny / PiT-Tiny through timm, the ViT recipe preset, the randaugment-erasing policy
with exact replay, self KD on transformers (issue 9). Tiny digits subsets at 32 px."""
import random

import numpy as np
import pytest
import torch

from flatkd import datasets, load_checkpoint, models
from flatkd.errors import FlatkdError
from flatkd.training import Trainer, resolve
from flatkd.training.batches import epoch_specs, materialize

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
TINY = {"train_subset": 32, "test_subset": 16, "batch_size": 16, "epochs": 1,
        "optim.warmup_epochs": 0, "eval_batch_size": 16}


def build(arch, **kw):
    torch.manual_seed(0)
    return models.create(arch, 10, MEAN, STD, **kw)


# ---------------------------------------------------------------- architectures
@pytest.mark.parametrize("arch,dim", [("deit_tiny", 192), ("pit_tiny", 256)])
def test_transformers_at_32_px_keep_a_real_token_grid(arch, dim):
    net = build(arch, img_size=32).eval()
    logits, feat = net.forward_features(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and feat.shape == (2, dim) and net.feature_dim == dim
    conv = net.net.patch_embed.proj if arch == "deit_tiny" else net.net.patch_embed.conv
    assert (conv.kernel_size, conv.stride) == (((4, 4), (4, 4)) if arch == "deit_tiny" else ((4, 4), (2, 2)))
    if arch == "deit_tiny":
        assert net.net.patch_embed.grid_size == (8, 8)       # timm's patch 16 would give 2×2
    assert len(net.block_dims) == 12
    assert not any(n.startswith("net.pos_embed") and p.shape[1] == 5 for n, p in net.named_parameters())


@pytest.mark.crosslib
def test_224_mode_upsamples_inside_the_model():
    net = build("deit_tiny", img_size=224).eval()
    assert net.net.patch_embed.grid_size == (14, 14)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        up = torch.nn.functional.interpolate(net.normalize(x), size=(224, 224), mode="bilinear",
                                             align_corners=False)
        assert torch.equal(net(x), net.net(up))


@pytest.mark.parametrize("arch", ["deit_tiny", "pit_tiny"])
def test_multi_exit_transformer_has_an_exit_after_every_block_but_the_last(arch):
    net = build(arch, img_size=32, multi_exit=True).eval()
    assert isinstance(net, models.MultiExitViT) and net.num_exits == 12      # 11 shallow exits
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits, feats = net.forward_exits(x)
        assert torch.equal(logits[0], net(x))            # the deepest exit is the backbone's head
    assert len(logits) == len(feats) == 12 and all(z.shape == (2, 10) for z in logits)
    for i in range(1, 12):
        assert net.adapt(i, feats[i]).shape == feats[0].shape


def test_transformer_width_other_than_one_is_refused():
    with pytest.raises(FlatkdError, match="ResNets only"):
        models.create("deit_tiny", 10, MEAN, STD, width=2, img_size=32)


# ---------------------------------------------------------------- the recipe preset
def test_vit_recipe_is_the_default_for_transformers_only():
    cfg = resolve("online", "deit_tiny", "digits")
    o = cfg.optim
    assert (o.name, o.lr, o.min_lr, o.schedule, o.warmup_epochs, o.weight_decay) == \
        ("adamw", 5e-4, 5e-6, "cosine", 20, 0.05)
    assert (cfg.epochs, cfg.batch_size, cfg.vit.drop_path) == (300, 128, 0.1)
    assert (cfg.kd.temperature, cfg.kd.alpha, cfg.kd.feature_weight) == (1.0, 0.5, 0.0)
    assert cfg.augment.policy == "randaugment-erasing"
    assert cfg.preset == "digits.yaml + recipes/vit.yaml"
    res = resolve("online", "resnet8", "digits")
    assert (res.optim.name, res.augment.policy, res.preset) == ("sgd", None, "digits.yaml")
    assert resolve("online", "deit_tiny", "digits", overrides={"optim.lr": 1e-3}).optim.lr == 1e-3


def test_shortened_recipe_keeps_the_warmup_fraction_unless_the_key_is_set(capsys):
    """The recipe's 20 of 300 warm-up epochs become 20/300 of a shorter run, with one warning
    line and the scaling recorded; a warm-up given with --set is kept as given."""
    for epochs in (1, 30, 150):
        cfg = resolve("baseline", "deit_tiny", "digits", epochs=epochs)
        assert cfg.optim.warmup_epochs == pytest.approx(20 * epochs / 300, rel=1e-12)
        assert cfg.scaled.startswith(f"optim.warmup_epochs 20 of 300 epochs → ")
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("flatkd: warning: optim.warmup_epochs")
    kept = resolve("baseline", "deit_tiny", "digits", epochs=30, overrides={"optim.warmup_epochs": 5})
    assert (kept.optim.warmup_epochs, kept.scaled) == (5, None)
    full = resolve("baseline", "deit_tiny", "digits")
    assert (full.optim.warmup_epochs, full.scaled) == (20, None)
    assert capsys.readouterr().err == ""
    with pytest.raises(FlatkdError, match="optim.warmup_epochs must lie in"):
        resolve("baseline", "deit_tiny", "digits", epochs=1, overrides={"optim.warmup_epochs": 20})
    # the paper presets' warm-up (18 of 60 epochs) follows the same rule under --epochs
    from importlib import resources
    paper = resources.files("flatkd.presets").joinpath("paper", "stablekd-cifar100-resnet18-kd.yaml")
    short = resolve("offline", None, None, config_file=str(paper), epochs=10)
    assert short.optim.warmup_epochs == pytest.approx(3.0)


# ---------------------------------------------------------------- augmentation
def test_randaugment_erasing_replays_pixel_equal_and_leaves_global_rngs_alone():
    ds = datasets.get("digits", "train")
    aug = datasets.train_augment("digits", "randaugment-erasing")
    specs = epoch_specs(len(ds), 16, seed=3, epoch=1, first_step=1)[:3]
    a = [x for _, x, _ in materialize(ds, aug, specs)]
    b = [x for _, x, _ in materialize(ds, aug, specs)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())
    aug(ds[0][0], torch.Generator().manual_seed(1))
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.random.get_rng_state(), states[2])
    plain = torch.stack([ds[i][0] for i in specs[0].indices])
    assert not torch.equal(a[0], plain)
    xs = torch.cat(a)
    assert len({tuple(x.flatten().tolist()) for x in xs}) == len(xs)      # distinct images
    assert "RandAugment(rand-m9-mstd0.5-inc1)" in aug.describe()


@pytest.mark.crosslib
def test_posterize_to_zero_bits_gives_the_black_image_old_pillow_gave():
    from PIL import Image
    from flatkd.datasets.timm_augment import posterize_compat
    img = Image.new("RGB", (32, 32), (200, 120, 40))
    assert np.asarray(posterize_compat(img, 0)).max() == 0
    assert np.array_equal(np.asarray(posterize_compat(img, 4)), np.asarray(img) & 0xF0)
    aug = datasets.train_augment("digits", "randaugment-erasing")
    ops = aug._timm()[0].ops
    assert any(op.aug_fn is posterize_compat for op in ops)
    ds = datasets.get("digits", "train")
    for i in range(300):                         # every op at every magnitude, no exception
        aug(ds[i][0], torch.Generator().manual_seed(i))


def test_random_erasing_uses_timm_noise_in_normalised_units():
    aug = datasets.train_augment("digits", "randaugment-erasing")
    ds = datasets.get("digits", "train")
    erased = 0
    for i in range(40):                          # p = 0.25: some of 40 images are erased
        x = aug(ds[i][0], torch.Generator().manual_seed(i))
        erased += bool((x < -0.01).any() or (x > 1.01).any())
    assert 3 <= erased <= 20


# ---------------------------------------------------------------- training smoke runs
def test_spaced_online_deit_student_pit_teacher_one_epoch(tmp_path):
    cfg = resolve("spaced-online", "deit_tiny", "digits", interval=0.5,
                  overrides={**TINY, "teacher_arch": "pit_tiny"})
    t = Trainer(cfg, tmp_path / "run", progress=False)
    assert t.augment_policy == "randaugment-erasing"
    path = t.run()
    assert t.opt_steps == {"teacher": 2, "student": 2} and t.method.replay_steps == [1, 2]
    ck = load_checkpoint(path)
    assert ck.raw["architectures"]["teacher"]["arch"] == "pit_tiny"
    assert ck.raw["architectures"]["student"]["img_size"] == 32
    for name in ("student", "teacher"):
        net = ck.build_model(name)
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_spaced_self_kd_on_deit_deploys_the_backbone(tmp_path):
    cfg = resolve("spaced-self", "deit_tiny", "digits", interval=0.5,
                  overrides={**TINY, "batch_size": 8, "train_subset": 16})
    t = Trainer(cfg, tmp_path / "run", progress=False)
    path = t.run()
    assert t.method.replay_steps == [1, 2] and t.opt_steps == {"student": 4}
    assert t.metrics[-1].get("exit_11_test_acc") is not None
    ck = load_checkpoint(path)
    assert isinstance(ck.build_model("student"), models.TimmViT)
    assert isinstance(ck.build_model("student", exits=True), models.MultiExitViT)
