"""Corrupted-set cache: worker-count independence, reuse, atomicity, keys."""
import numpy as np
import pytest

from flatkd.robustness import cache
from flatkd.robustness.cache import EntryKey, corrupted_sets, fingerprint, generate

IMAGES = (np.random.default_rng(0).random((10, 32, 32, 3)) * 255).astype(np.uint8)
JOBS = [("impulse_noise", 1), ("frost", 5), ("spatter", 1)]


def _sets(tmp_path, **kw):
    args = dict(dataset="toy", split="test", constants="imagenet-c", seed=0, cache_dir=tmp_path,
                workers=1, progress=False)
    args.update(kw)
    return corrupted_sets(IMAGES, JOBS, **args)


def test_result_independent_of_worker_count():
    one = generate(IMAGES, JOBS, constants="imagenet-c", seed=3, workers=1, progress=False)
    two = generate(IMAGES, JOBS, constants="imagenet-c", seed=3, workers=2, progress=False)
    for job in JOBS:
        assert one[job].dtype == np.uint8 and one[job].shape == IMAGES.shape
        assert np.array_equal(one[job], two[job]), job
        assert not np.array_equal(one[job], IMAGES)


def test_each_image_gets_its_own_noise():
    twins = np.repeat(IMAGES[:1], 2, axis=0)
    out = generate(twins, [("impulse_noise", 3)], constants="imagenet-c", seed=0, workers=1,
                   progress=False)[("impulse_noise", 3)]
    assert not np.array_equal(out[0], out[1])


def test_second_call_reads_the_cache(tmp_path, monkeypatch):
    first = _sets(tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == len(JOBS)

    def fail(*a, **k):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(cache, "generate", fail)
    second = _sets(tmp_path)
    for job in JOBS:
        assert np.array_equal(first[job], second[job])


def test_partial_entry_is_never_read(tmp_path):
    good = _sets(tmp_path)
    path = tmp_path / EntryKey("toy", "test", "frost", 5, 0, "imagenet-c",
                               fingerprint(IMAGES)).filename
    assert path.is_file()
    path.write_bytes(path.read_bytes()[:500])  # truncated, as if the writer died mid-file
    again = _sets(tmp_path)
    assert np.array_equal(again["frost", 5], good["frost", 5])
    assert cache.load(path, IMAGES.shape) is not None  # rewritten whole


def test_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    def crash(f, arr, allow_pickle):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache.np, "save", crash)
    with pytest.raises(OSError):
        _sets(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_key_spells_out_every_dependency():
    a = EntryKey("cifar10", "test", "snow", 3, 0, "cifar-c", "abc").filename
    assert all(s in a for s in ("cifar10", "test", "snow", "s3", "seed0", "cifar-c", "abc",
                                "imagecorruptions1.1.2"))
    assert fingerprint(IMAGES) != fingerprint(IMAGES[::-1].copy())
    assert fingerprint(IMAGES) == fingerprint(IMAGES.copy())


def test_seed_and_constants_change_the_images(tmp_path):
    base = _sets(tmp_path)
    other_seed = _sets(tmp_path, seed=1)
    cifar = _sets(tmp_path, constants="cifar-c")
    assert not np.array_equal(base["frost", 5], other_seed["frost", 5])
    assert not np.array_equal(base["frost", 5], cifar["frost", 5])
    assert len(list(tmp_path.glob("*.npy"))) == 3 * len(JOBS)
