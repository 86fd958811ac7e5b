"""Training-augmentation policies: registry and defaults, exact replay, and agreement with the
torchvision transforms they stand for (AutoAugment CIFAR-10 + Cutout; RandomResizedCrop)."""
import hashlib

import pytest
import torch

import flatkd.datasets as D
from flatkd.datasets.augment import (Augment, for_dataset, generator_for, item_seed,
                                    one_intra_op_thread)
from flatkd.datasets.autoaugment import PAD_FILL, AutoAugmentCutout, Cutout, to_uint8
from flatkd.datasets.resized_crop import ResizedCropAugment
from flatkd.datasets.torchvision_compat import TorchvisionAutoAugment
from flatkd.errors import FlatkdError


def _cifar_like(seed=0, size=32):
    """A float image on the 1/255 grid, as CIFAR items are."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, size, size), generator=g).float() / 255


# ---------------------------------------------------------------- registry and defaults
def test_registry_names_and_unknown_policy_names_the_choices():
    assert D.policy_names() == ["autoaugment-cutout", "crop-flip", "imagenet", "randaugment-erasing"]
    with pytest.raises(FlatkdError, match="unknown augmentation policy 'autoaugment'; valid "
                                          "choices: autoaugment-cutout, crop-flip, imagenet"):
        D.train_augment("cifar10", policy="autoaugment")
    with pytest.raises(FlatkdError, match="valid choices: autoaugment-cutout"):
        D.get("digits", "train", augment=True, policy="cutout")


@pytest.mark.parametrize("dataset,family,expected", [
    ("cifar10", "self", "autoaugment-cutout"), ("cifar100", "self", "autoaugment-cutout"),
    ("cifar10", "online", "crop-flip"), ("cifar100", "baseline", "crop-flip"),
    ("imagefolder", "self", "imagenet"), ("imagefolder", "online", "imagenet"),
    ("digits", "self", "crop-flip"), ("tinyimagenet", "self", "crop-flip"),
    ("tinyimagenet", "other", "crop-flip"),
])
def test_default_policy_per_dataset_and_method_family(dataset, family, expected):
    assert D.default_policy(dataset, family) == expected
    aug = D.train_augment(dataset, family=family)          # policy=None → the default
    assert aug == D.train_augment(dataset, expected)


def test_crop_flip_is_todays_augment_bit_for_bit():
    for name in ("digits", "cifar10", "cifar100", "tinyimagenet"):
        for rotation in (False, True):
            aug = D.train_augment(name, "crop-flip", rotation)
            assert aug == for_dataset(name, rotation) and isinstance(aug, Augment)
            assert aug.describe() == for_dataset(name, rotation).describe()
    x = _cifar_like(1)
    aug = D.train_augment("cifar10", rotation=True, family="online")
    for s in range(20):  # pinned pixels: today's draws and ops, unchanged
        assert torch.equal(aug(x, generator_for(s)), for_dataset("cifar10", True)(x, generator_for(s)))
    assert D.train_augment("digits", rotation=False).describe() == \
        "RandomCrop(input size, padding=4, fill=0)"


def test_policies_follow_the_spec_flip_and_size():
    assert D.train_augment("digits", "autoaugment-cutout").hflip is False
    assert D.train_augment("digits", "imagenet").hflip is False
    assert D.train_augment("imagefolder", image_size=96).size == 96
    assert D.train_augment(D.spec("imagefolder", image_size=64), "imagenet").size == 64
    assert D.train_augment("cifar10", "autoaugment-cutout", True).rotation == 15
    assert not D.train_augment("cifar10", "autoaugment-cutout").needs_original
    assert D.train_augment("imagefolder").needs_original


# ---------------------------------------------------------------- autoaugment-cutout
def test_autoaugment_cutout_exact_replay_and_seeds_differ():
    aug = D.train_augment("cifar10", family="self")
    x = _cifar_like()
    a = aug(x, generator_for(7))
    assert torch.equal(a, aug(x, generator_for(7)))
    assert torch.equal(a, AutoAugmentCutout()(x, generator_for(7)))   # a fresh instance too
    outs = {aug(x, generator_for(s)).numpy().tobytes() for s in range(20)}
    assert len(outs) == 20
    for s in range(40):
        y = aug(x, generator_for(s))
        assert y.shape == x.shape and y.dtype == torch.float32
        assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
        assert torch.equal(y * 255, (y * 255).round())               # on the 8-bit grid


def test_autoaugment_cutout_uses_only_its_generator_and_restores_threads():
    aug = D.train_augment("cifar100", family="self")
    x = _cifar_like(2)
    torch.manual_seed(0)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    a = aug(x, generator_for(3))
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads
    torch.manual_seed(123)
    assert torch.equal(aug(x, generator_for(3)), a)


@pytest.mark.crosslib
def test_policy_draws_mirror_torchvision_autoaugment_forward():
    """Same seed in the global RNG (torchvision) and in the generator (flatkd) → same pixels:
    fails if torchvision changes its table, magnitudes, op kernels or the order of its draws.
    Bit-equal on every CPU: both sides run torchvision's own op kernels
    (``AutoAugment._apply_image_or_video_transform``) on the same uint8 image, one thread."""
    from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

    reference = AutoAugment(AutoAugmentPolicy.CIFAR10, fill=[128, 128, 128])
    aug = AutoAugmentCutout()
    seen = set()
    for s in range(300):
        torch.manual_seed(s)
        with one_intra_op_thread():              # per-image ops: fast on a loaded machine
            img = to_uint8(_cifar_like(s))
            expected = reference(img)
            drawn = aug.draw_policy(32, 32, torch.Generator().manual_seed(s))
            out = img
            for op, magnitude in drawn["ops"]:
                out = aug.policy.apply(out, op, magnitude)
        assert torch.equal(out, expected), (s, drawn)
        seen.add(drawn["subpolicy"])
    assert seen == set(range(25))


def test_drawn_ops_follow_the_policy_table():
    aug = AutoAugmentCutout()
    table = aug.policy.sub_policies
    counts = [[0, 0, 0] for _ in table]               # per sub-policy: drawn, op 0, op 1 applied
    signs = set()
    for s in range(4000):
        p = aug.params(32, 32, generator_for(item_seed(0, 1, s)))
        sub = table[p["subpolicy"]]
        assert [sub[k][0] for k in p["applied"]] == [op for op, _ in p["ops"]]
        for k, (op, magnitude) in zip(p["applied"], p["ops"]):
            expected, signed = aug.policy.magnitude(op, sub[k][2], 32, 32)
            assert abs(magnitude) == (expected if expected is not None else 0.0)
            if signed and expected:
                signs.add(magnitude > 0)
            counts[p["subpolicy"]][1 + k] += 1
        counts[p["subpolicy"]][0] += 1
    assert signs == {True, False}
    for (n, first, second), sub in zip(counts, table):   # applied with the table's probability
        assert n > 100
        assert abs(first / n - sub[0][1]) < 0.13 and abs(second / n - sub[1][1]) < 0.13
    assert counts[14][2] == 0                            # (Solarize 0.5, Invert 0.0)
    # the translate magnitude of bin 9 on 32 px: 150/331 · 32 px; posterize bin 7: 5 bits
    assert aug.policy.magnitude("TranslateY", 9, 32, 32) == (pytest.approx(150 / 331 * 32), True)
    assert aug.policy.magnitude("Posterize", 7, 32, 32) == (5.0, False)
    assert aug.policy.magnitude("Equalize", None, 32, 32) == (None, False)


def test_cifar10_policy_table_is_pinned():
    table = TorchvisionAutoAugment().sub_policies
    assert len(table) == 25 and all(len(sub) == 2 for sub in table)
    assert table[0] == (("Invert", 0.1, None), ("Contrast", 0.2, 6))
    assert table[24] == (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None))
    digest = hashlib.sha256(repr(table).encode()).hexdigest()[:16]
    assert digest == "68cb3a909b71737d", "torchvision's AutoAugment CIFAR-10 table changed"


def test_torchvision_private_names_used_by_the_compat_module_exist():
    from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

    tv = AutoAugment(AutoAugmentPolicy.CIFAR10, fill=[128] * 3)
    assert isinstance(tv._policies, list) and callable(tv._apply_image_or_video_transform)
    assert set(tv._AUGMENTATION_SPACE) >= {op for sub in tv._policies for op, _, _ in sub}
    assert tv._fill is not None


def test_pipeline_order_pad_fill_policy_then_cutout():
    aug = AutoAugmentCutout()
    x = _cifar_like(4)
    base = {"top": 0, "left": 0, "flip": False, "angle": 0.0, "subpolicy": 0,
            "cutout": (31, 31)}
    plain = aug.apply(x, {**base, "ops": ()})
    assert torch.allclose(plain[:, :4, :], torch.full((3, 4, 32), PAD_FILL))   # pad = 128/255
    assert torch.equal(plain[:, 4:23, 4:23], x[:, :19, :19])                   # crop offset (0, 0)
    assert torch.equal(plain[:, 23:, 23:], torch.zeros(3, 9, 9))               # clipped hole
    inverted = aug.apply(x, {**base, "ops": (("Invert", 0.0),)})
    # Invert comes after the padding (pad 128 → 127) and before Cutout (hole stays 0)
    assert torch.allclose(inverted[:, :4, :], torch.full((3, 4, 32), 127 / 255))
    assert torch.allclose(inverted[:, 4:23, 4:23], 1 - x[:, :19, :19])
    assert torch.equal(inverted[:, 23:, 23:], torch.zeros(3, 9, 9))
    flipped = aug.apply(x, {**base, "ops": (), "flip": True, "top": 4, "left": 4,
                            "cutout": (0, 0)})
    assert torch.equal(flipped[:, 8:, 8:], x.flip(-1)[:, 8:, 8:])


@pytest.mark.parametrize("centre,box", [((16, 16), (8, 24, 8, 24)), ((0, 0), (0, 8, 0, 8)),
                                        ((31, 5), (23, 32, 0, 13)), ((8, 8), (0, 16, 0, 16))])
def test_cutout_hole_is_a_clipped_16_px_square_of_zeros(centre, box):
    cut = Cutout()
    assert cut.box(32, 32, centre) == box
    x = torch.ones(3, 32, 32)
    out = cut.apply(x, centre)
    top, bottom, left, right = box
    assert float(out[:, top:bottom, left:right].abs().sum()) == 0.0
    assert float(out.sum()) == 3 * (32 * 32 - (bottom - top) * (right - left))
    assert float(x.min()) == 1.0                                               # input untouched


def test_cutout_centre_is_uniform_over_the_image():
    aug = AutoAugmentCutout()
    centres = [aug.params(32, 32, generator_for(s))["cutout"] for s in range(3000)]
    ys, xs = {c[0] for c in centres}, {c[1] for c in centres}
    assert ys == set(range(32)) and xs == set(range(32))
    mean_y = sum(c[0] for c in centres) / len(centres)
    assert abs(mean_y - 15.5) < 0.6
    full = sum((8 <= y <= 24) and (8 <= x <= 24) for y, x in centres) / len(centres)
    assert abs(full - (17 / 32) ** 2) < 0.04          # fraction of full 16×16 holes


def test_autoaugment_cutout_output_has_the_drawn_hole():
    aug = AutoAugmentCutout()
    x = _cifar_like(5) * 0.5 + 0.25                   # no pixel is 0 before Cutout…
    checked = 0
    for s in range(40):
        p = aug.params(32, 32, generator_for(s))
        if any(op in ("Solarize", "Invert", "AutoContrast", "Equalize", "Posterize",
                      "Contrast", "Brightness", "Color", "Sharpness") for op, _ in p["ops"]):
            continue                                  # …unless a colour op makes one
        out = aug.apply(x, p)
        top, bottom, left, right = aug.cutout.box(32, 32, p["cutout"])
        assert float(out[:, top:bottom, left:right].abs().sum()) == 0.0
        mask = torch.ones(32, 32, dtype=torch.bool)
        mask[top:bottom, left:right] = False
        # outside the hole only the pad fill (128/255), image pixels or geometric fill remain
        assert float(out[:, mask].min()) > 0
        checked += 1
    assert checked >= 8


# ---------------------------------------------------------------- imagenet (RandomResizedCrop)
# float rounding of one [0, 1] float32 value: a few ulps at 1.0
ROUNDING = 4 * torch.finfo(torch.float32).eps
# nearest-neighbour rotation: pixels whose value may be another source pixel's (see below)
MAX_TIE_PIXELS = 8


def assert_equal_but_nearest_ties(out, expected, context=()):
    """``out`` ≈ ``expected`` ([C, H, W] in [0, 1]): every channel within float rounding, except
    at most ``MAX_TIE_PIXELS`` pixel positions, whose values only need to lie in [0, 1].

    Why the exceptions: flatkd's rotation computes the sampling grid elementwise
    (``rotate_nearest``), torchvision's with a ``bmm`` through MKL, whose AVX2 / AVX-512 / AMX
    paths round (fuse) differently, so a grid coordinate can differ by an ulp. Nearest
    interpolation turns that ulp into another source pixel wherever the coordinate sits on the
    border between two pixels (or on the image edge: in bounds on one side, fill on the other),
    so the pixel — all its channels — differs by up to the value range. That happens at a
    handful of the 50,176 positions of an image at most (0–2 seen); a wrong angle, box or flip
    changes a large share of them."""
    assert out.shape == expected.shape, context
    off = ((out - expected).abs() > ROUNDING).any(dim=0)      # positions with any channel off
    assert int(off.sum()) <= MAX_TIE_PIXELS, (*context, int(off.sum()))
    for img in (out, expected):
        assert bool(((img[:, off] >= 0) & (img[:, off] <= 1)).all()), context


@pytest.mark.crosslib
@pytest.mark.parametrize("hw", [(30, 40), (375, 500), (20, 300), (300, 20), (224, 224)])
def test_resized_crop_mirrors_torchvision_transforms(hw):
    """Same seed in the global RNG (torchvision) and in the generator (flatkd) → the same box,
    flip and angle. The resize is torchvision's kernel on both sides; the rotation is not (see
    :func:`assert_equal_but_nearest_ties`), so equality holds up to nearest-neighbour ties."""
    import torchvision.transforms.v2 as T

    reference = T.Compose([T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip(),
                           T.RandomRotation(15)])
    aug = ResizedCropAugment(size=224, rotation=15.0)
    x = torch.rand(3, *hw, generator=torch.Generator().manual_seed(hw[0]))
    for s in range(12):
        torch.manual_seed(s)
        with one_intra_op_thread():
            expected = reference(x)
        out = aug(x, torch.Generator().manual_seed(s))
        assert out.shape == (3, 224, 224), (hw, s)
        assert_equal_but_nearest_ties(out, expected, (hw, s))
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_resized_crop_box_statistics_and_fallback():
    g = generator_for(0)
    boxes = [ResizedCropAugment().params(300, 400, g)["box"] for _ in range(500)]
    areas = [h * w / (300 * 400) for _, _, h, w in boxes]
    assert min(areas) < 0.15 and max(areas) > 0.85                    # scale (0.08, 1)
    assert all(0.7 <= w / h <= 1.4 for _, _, h, w in boxes)            # ratio (3/4, 4/3), rounded
    assert all(0 <= i <= 300 - h and 0 <= j <= 400 - w for i, j, h, w in boxes)
    # no box of ≥ 8 % of a 5×500 strip is ≤ 5 px high within the ratio range: after 10 tries,
    # the centre crop of full height with ratio 4/3 (w = round(5 · 4/3) = 7)
    assert ResizedCropAugment().params(5, 500, g)["box"] == (0, 246, 5, 7)
    assert ResizedCropAugment().params(500, 5, g)["box"] == (246, 0, 7, 5)


def test_imagenet_policy_on_the_imagefolder_fixture(tiny_imagefolder):
    root, _ = tiny_imagefolder
    aug = D.train_augment("imagefolder")
    assert aug.needs_original and aug.size == 224 and aug.hflip and aug.rotation == 0
    originals = D.get("imagefolder", "train", root=root, original=True)
    x, y = originals[1]
    assert x.shape == (3, 30, 40)                                    # the file as it is
    assert y == D.get("imagefolder", "train", root=root).targets[1]
    a = aug(x, generator_for(11))
    assert a.shape == (3, 224, 224) and torch.equal(a, aug(x, generator_for(11)))
    assert not torch.equal(a, aug(x, generator_for(12)))
    test = D.get("imagefolder", "test", root=root)                   # evaluation: 224 centre crops
    assert all(test[i][0].shape == (3, 224, 224) for i in range(len(test)))
    wrapped = D.get("imagefolder", "train", root=root, augment=True, augment_seed=3)
    assert wrapped[0][0].shape == (3, 224, 224) and wrapped.augment == aug
    assert torch.equal(wrapped[0][0], wrapped[0][0])
    assert aug.describe() == ("RandomResizedCrop(224, scale=(0.08, 1), ratio=(0.75, 1.333), "
                              "bilinear, antialias) of the original image + "
                              "RandomHorizontalFlip(p=0.5)")


def test_originals_of_in_memory_datasets_are_the_items():
    ds = D.get("digits", "test")
    assert ds.originals() is ds
    assert D.get("digits", "test", original=True)[3][0].shape == (3, 32, 32)


# ---------------------------------------------------------------- exact replay through the batch stream
@pytest.mark.parametrize("dataset,policy", [("cifar100", "autoaugment-cutout"),
                                            ("imagefolder", "imagenet")])
def test_batch_spec_materialised_twice_is_pixel_equal(dataset, policy, tiny_cifar100,
                                                      tiny_imagefolder):
    from flatkd.training.batches import epoch_specs, materialize

    root = (tiny_cifar100 if dataset == "cifar100" else tiny_imagefolder)[0]
    aug = D.train_augment(dataset, policy, family="self")
    train = D.get(dataset, "train", root=root, original=aug.needs_original)
    specs = epoch_specs(len(train), 2, seed=0, epoch=1, first_step=1)[:2]
    first = [(x.clone(), y.clone()) for _, x, y in materialize(train, aug, specs)]
    second = [(x, y) for _, x, y in materialize(train, aug, list(reversed(specs)))][::-1]
    for (xa, ya), (xb, yb) in zip(first, second):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(first[0][0][0], first[1][0][0])
    if dataset == "cifar100":                    # worker processes give the same pixels
        workers = [x for _, x, _ in materialize(train, aug, specs, num_workers=2)]
        assert all(torch.equal(x, xa) for x, (xa, _) in zip(workers, first))
    other = epoch_specs(len(train), 2, seed=1, epoch=1, first_step=1)[0]
    [(_, x_other, _)] = list(materialize(train, aug, [other]))
    assert not torch.equal(x_other, first[0][0])


@pytest.mark.parametrize("policy", ["crop-flip", "autoaugment-cutout", "imagenet"])
def test_policies_survive_pickling_for_dataloader_workers(policy):
    import pickle

    aug = D.train_augment("cifar10", policy)
    clone = pickle.loads(pickle.dumps(aug))
    x = _cifar_like(6)
    assert clone.describe() == aug.describe()
    assert torch.equal(clone(x, generator_for(9)), aug(x, generator_for(9)))
