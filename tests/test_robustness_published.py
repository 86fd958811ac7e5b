"""The published CIFAR-10-C / CIFAR-100-C / Tiny-ImageNet-C loader on a fixture in the released
layout (one <corruption>.npy per corruption, severities stacked, labels.npy), and the mCE
arithmetic (Hendrycks & Dietterich 2019)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from flatkd import datasets
from flatkd.errors import FlatkdError
from flatkd.robustness import published as pub
from flatkd.robustness.config import RobustnessConfig
from flatkd.robustness.suite import run_robustness

CORRUPTIONS = ("brightness", "gaussian_noise")


def write_published(root: Path, labels: np.ndarray, size: int = 32, seed: int = 0,
                    folder: str = "CIFAR-10-C") -> dict:
    """``root/<folder>/{labels,<name>}.npy`` as Hendrycks releases them; returns the arrays."""
    rng = np.random.default_rng(seed)
    d = root / folder
    d.mkdir(parents=True)
    n = len(labels)
    np.save(d / "labels.npy", np.tile(labels, 5).astype(np.int64))
    arrays = {}
    for name in CORRUPTIONS:
        arrays[name] = rng.integers(0, 256, size=(5 * n, size, size, 3), dtype=np.uint8)
        np.save(d / f"{name}.npy", arrays[name])
    return arrays


@pytest.fixture
def cifar_c(tiny_cifar10, tmp_path):
    root, written = tiny_cifar10
    labels = np.asarray(written["test"][1])
    arrays = write_published(tmp_path, labels)
    return root, tmp_path / "CIFAR-10-C", labels, arrays


def test_loader_returns_the_fixture_rows_per_severity(cifar_c):
    _, folder, labels, arrays = cifar_c
    n = len(labels)
    assert pub.folder("cifar10", folder.parent) == folder
    assert pub.resolve(["all"], folder) == sorted(CORRUPTIONS)
    sets = pub.published_sets(folder, [(c, s) for c in CORRUPTIONS for s in (1, 3, 5)], labels, 32)
    for (c, s), got in sets.items():
        assert got.dtype == np.uint8 and got.shape == (n, 32, 32, 3)
        assert np.array_equal(got, arrays[c][(s - 1) * n: s * n])


def test_loader_refuses_wrong_folders(cifar_c, tmp_path):
    _, folder, labels, _ = cifar_c
    with pytest.raises(FlatkdError, match="present: all, brightness, gaussian_noise"):
        pub.resolve(["fog"], folder)
    with pytest.raises(FlatkdError, match="labels of severity 1 differ"):
        pub.published_sets(folder, [("brightness", 1)], (labels + 1) % 10, 32)
    with pytest.raises(FlatkdError, match="expected integer labels \\[15\\]"):
        pub.published_sets(folder, [("brightness", 1)], np.zeros(3, dtype=np.int64), 32)
    with pytest.raises(FlatkdError, match="expected uint8 \\[" + str(5 * len(labels)) + ", 64, 64, 3\\]"):
        pub.published_sets(folder, [("brightness", 1)], labels, 64)
    with pytest.raises(FlatkdError, match="severity 6 is not valid"):
        pub.published_sets(folder, [("brightness", 6)], labels, 32)
    with pytest.raises(FlatkdError, match="no labels.npy"):
        pub.folder("cifar100", tmp_path)
    with pytest.raises(FlatkdError, match="data_root"):
        pub.folder("cifar10", None)
    assert [pub.FOLDERS.get(d) for d in ("cifar10", "cifar100", "tinyimagenet")] == \
        ["CIFAR-10-C", "CIFAR-100-C", "Tiny-ImageNet-C"]


def test_suite_reads_published_sets(cifar_c, tmp_path):
    root, folder, labels, arrays = cifar_c
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).eval()
    cfg = RobustnessConfig(source="published", published_dir=str(folder), corruptions=["all"],
                           severities=[2, 4], epsilons=[])
    test_set = datasets.get("cifar10", "test", root=root)
    out = run_robustness(model, test_set, dataset_name="cifar10", cfg=cfg, seed=0,
                         device=torch.device("cpu"), batch_size=3, progress=False,
                         cache_dir=tmp_path / "unused")
    n = len(labels)
    for row in out["corruptions"]:
        block = arrays[row["corruption"]][(row["severity"] - 1) * n: row["severity"] * n]
        x = torch.from_numpy(block).permute(0, 3, 1, 2).float() / 255
        want = (model(x).argmax(1).numpy() == labels).mean()
        assert row["accuracy"] == pytest.approx(want)
    assert [(r["corruption"], r["severity"]) for r in out["corruptions"]] == \
        [(c, s) for c in sorted(CORRUPTIONS) for s in (2, 4)]
    assert "corruption_errors" not in out                   # 2 of 15 corruptions: no mCE
    assert not (tmp_path / "unused").exists()               # nothing generated or cached


def test_published_config_validation():
    RobustnessConfig(source="published", corruptions=["fog"], constants="cifar-c").validate()
    with pytest.raises(FlatkdError, match="generated, published"):
        RobustnessConfig(source="hendrycks").validate()


def test_mce_and_relative_mce_by_hand():
    rng = np.random.default_rng(0)
    acc = {(c, s): float(rng.uniform(0.2, 0.9)) for c in pub.BENCHMARK for s in range(1, 6)}
    base = {(c, s): float(rng.uniform(0.1, 0.8)) for c in pub.BENCHMARK for s in range(1, 6)}

    def rows(a):
        return [{"corruption": c, "severity": s, "accuracy": a[c, s]} for c, s in a] + \
            [{"corruption": "saturate", "severity": 1, "accuracy": 0.5}]   # extras don't count
    e = pub.corruption_errors(rows(acc), clean_accuracy=0.95)
    b = pub.corruption_errors(rows(base), clean_accuracy=0.9)
    assert len(pub.BENCHMARK) == 15 and "saturate" not in pub.BENCHMARK
    err = {k: 1 - v for k, v in acc.items()}
    assert e["mce"] == pytest.approx(np.mean(list(err.values())))
    assert e["relative_mce"] == pytest.approx(np.mean([v - 0.05 for v in err.values()]))
    n = pub.normalised(e, b)
    want = np.mean([sum(err[c, s] for s in range(1, 6)) / sum(1 - base[c, s] for s in range(1, 6))
                    for c in pub.BENCHMARK])
    want_rel = np.mean([sum(err[c, s] - 0.05 for s in range(1, 6))
                        / sum(1 - base[c, s] - 0.1 for s in range(1, 6)) for c in pub.BENCHMARK])
    assert n["mce"] == pytest.approx(want) and n["relative_mce"] == pytest.approx(want_rel)
    del acc["fog", 3]
    assert pub.corruption_errors(rows(acc), 0.95) is None   # a severity missing: no mCE
