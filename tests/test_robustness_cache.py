"""Corrupted-set cache: worker-count independence, reuse, atomicity, keys, integrity (sha256)."""
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


# ---------------------------------------------------------------- integrity (checksum sidecar)
def _entry(tmp_path, job=("frost", 5)):
    return tmp_path / EntryKey("toy", "test", job[0], job[1], 0, "imagenet-c",
                               fingerprint(IMAGES)).filename


def _zero_data_in_place(path):
    """Zero every byte after the .npy header: same size, still a valid uint8 array of the shape."""
    header = len(path.read_bytes()) - IMAGES.nbytes
    with open(path, "r+b") as f:
        f.seek(header)
        f.write(bytes(IMAGES.nbytes))


def test_checksum_sidecar_is_the_sha256_of_the_entry(tmp_path):
    import hashlib

    _sets(tmp_path)
    for job in JOBS:
        path = _entry(tmp_path, job)
        line = cache.checksum_path(path).read_text()
        assert line == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"


def test_entry_altered_at_the_same_size_is_regenerated(tmp_path):
    good = _sets(tmp_path)
    path = _entry(tmp_path)
    size = path.stat().st_size
    _zero_data_in_place(path)
    assert path.stat().st_size == size
    tampered = np.load(path)           # a size/shape/dtype check alone would accept this file
    assert tampered.shape == IMAGES.shape and tampered.dtype == np.uint8 and not tampered.any()
    assert cache.load(path, IMAGES.shape) is None
    again = _sets(tmp_path)
    assert np.array_equal(again["frost", 5], good["frost", 5])
    assert np.array_equal(np.load(path), good["frost", 5])              # rewritten on disk
    assert cache.load(path, IMAGES.shape) is not None


def test_one_flipped_byte_or_a_missing_checksum_means_regeneration(tmp_path, monkeypatch):
    good = _sets(tmp_path)
    path = _entry(tmp_path, ("impulse_noise", 1))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert cache.load(path, IMAGES.shape) is None
    cache.checksum_path(_entry(tmp_path, ("spatter", 1))).unlink()   # e.g. written by an older flatkd
    regenerated = []
    real = cache.generate

    def spy(images, jobs, **kw):
        regenerated.extend(jobs)
        return real(images, jobs, **kw)

    monkeypatch.setattr(cache, "generate", spy)
    again = _sets(tmp_path)
    assert sorted(regenerated) == [("impulse_noise", 1), ("spatter", 1)]
    for job in JOBS:
        assert np.array_equal(again[job], good[job])


def test_zeroed_cache_entry_does_not_change_suite_accuracies(tmp_path):
    import torch
    from torch.utils.data import TensorDataset

    from flatkd.robustness.config import RobustnessConfig
    from flatkd.robustness.suite import run_robustness, to_uint8_hwc

    class Bright(torch.nn.Module):
        """Class = which of 0.2 / 0.5 / 0.8 the image's mean brightness is nearest to."""
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([-(m - 0.2).abs(), -(m - 0.5).abs(), -(m - 0.8).abs()], 1)

    x = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).float() / 255
    x = (x * torch.linspace(0.2, 1.2, len(x)).view(-1, 1, 1, 1)).clamp(0, 1)
    job = ("brightness", 1)
    corrupted = generate(to_uint8_hwc(x), [job], constants="imagenet-c", seed=0, workers=1,
                         progress=False)[job]
    y = Bright()(torch.from_numpy(corrupted).permute(0, 3, 1, 2).float() / 255).argmax(1)
    zero_acc = (Bright()(torch.zeros_like(x)).argmax(1) == y).float().mean().item()
    assert zero_acc <= 0.5                       # a zeroed entry would show in the accuracy
    cfg = dict(corruptions=["brightness"], severities=[1], epsilons=[], workers=1)

    def run():
        return run_robustness(Bright(), TensorDataset(x, y), dataset_name="toy",
                              cfg=RobustnessConfig(**cfg), seed=0, device=torch.device("cpu"),
                              batch_size=16, progress=False, cache_dir=tmp_path)

    first = run()
    assert first["corruptions"] == [{"corruption": "brightness", "severity": 1, "accuracy": 1.0}]
    [path] = list(tmp_path.glob("*.npy"))
    size = path.stat().st_size
    with open(path, "r+b") as f:                 # zero the pixels in place, header intact
        f.seek(size - x.numel())
        f.write(bytes(x.numel()))
    assert path.stat().st_size == size and not np.load(path).any()
    assert run() == first
    assert np.array_equal(np.load(path), corrupted)
