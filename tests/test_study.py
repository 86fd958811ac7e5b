"""The measure-vs-generalization study: Kendall's τ, its bootstrap interval and the granulated
τ against scipy on hand-made data; merging of results spread over files; verdicts."""
import itertools
import json

import numpy as np
import pytest
from scipy import stats

from flatkd.errors import FlatkdError
from flatkd.study import StudySettings, run_study
from flatkd.study.measures import load, rows
from flatkd.study.tau import bootstrap_ci, granulated, kendall, tau_b


@pytest.mark.crosslib
def test_tau_b_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, 11).astype(float)
        y = x + rng.integers(0, 3, 11)
        assert tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
        assert kendall(x, y)[0] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    batch = rng.normal(size=(5, 9))
    other = rng.normal(size=(5, 9))
    want = [stats.kendalltau(a, b).statistic for a, b in zip(batch, other)]
    assert tau_b(batch, other) == pytest.approx(want, abs=1e-12)
    assert tau_b(np.ones(5), np.arange(5.0)) == 0.0       # constant: no ranking information


@pytest.mark.crosslib
def test_bootstrap_interval_equals_scipy_on_the_same_resamples():
    rng = np.random.default_rng(1)
    x = rng.normal(size=15)
    y = x + rng.normal(size=15)
    got = bootstrap_ci(x, y, n_resamples=400, confidence=0.9, seed=7)
    ref = stats.bootstrap((x, y), lambda a, b: stats.kendalltau(a, b).statistic, paired=True,
                          vectorized=False, n_resamples=400, confidence_level=0.9,
                          method="percentile", rng=np.random.default_rng(7))
    assert got == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high),
                                abs=1e-12)
    assert got[0] < kendall(x, y)[0] < got[1]


def _granulated_by_hand(table, value, target, axes):
    """Jiang et al. 2020 Eq. 4 written out for a full grid: collapse seeds to their mean, then
    ψ_i = mean over every combination of the other axes of τ over axis i's values."""
    import itertools
    cells = {}
    for row in table:
        cells.setdefault(tuple(row[a] for a in axes), []).append(row)
    mean = {k: (np.mean([r[value] for r in v]), np.mean([r[target] for r in v]))
            for k, v in cells.items()}
    levels = [sorted({k[i] for k in mean}) for i in range(len(axes))]
    psi = {}
    for i, axis in enumerate(axes):
        taus = []
        for other in itertools.product(*(levels[:i] + levels[i + 1:])):
            pts = [mean[other[:i] + (lv,) + other[i:]] for lv in levels[i]]
            taus.append(stats.kendalltau(*zip(*pts)).statistic)
        psi[axis] = np.mean(taus)
    return psi, np.mean(list(psi.values()))


@pytest.mark.crosslib
def test_granulated_tau_collapses_seeds_and_matches_jiang_eq4_written_out():
    rng = np.random.default_rng(5)
    table = []
    for method, lr, bs in itertools.product(("a", "b", "c"), (0.01, 0.05, 0.1), (16, 64)):
        for seed in (0, 1):
            table.append({"method": method, "lr": lr, "bs": bs, "seed": seed,
                          "m": rng.normal(), "g": rng.normal()})
    rows_ = [{"dataset": "d", "network": "n", "model": "student", "method": r["method"],
              "interval": None, "seed": r["seed"],
              "hyperparameters": {"optim.lr": r["lr"], "batch_size": r["bs"],
                                  "optim.weight_decay": 5e-4}} for r in table]
    g = granulated(rows_, [r["m"] for r in table], [r["g"] for r in table])
    psi, overall = _granulated_by_hand(table, "m", "g", ("method", "lr", "bs"))
    assert set(g["axes"]) == {"method", "optim.lr", "batch_size"}   # no seed, no constant wd
    assert g["configurations"] == 18
    assert g["axes"]["method"]["psi"] == pytest.approx(psi["method"])
    assert g["axes"]["method"]["groups"] == 6
    assert g["axes"]["optim.lr"]["psi"] == pytest.approx(psi["lr"])
    assert g["axes"]["batch_size"]["psi"] == pytest.approx(psi["bs"])
    assert g["axes"]["batch_size"]["groups"] == 9
    assert g["overall"] == pytest.approx(overall)


def test_a_perfect_ranker_with_seed_noise_has_granulated_tau_one():
    """Three configurations ranked perfectly by the measure, each trained with 4 seeds whose
    measure and gap carry independent noise: seeds are replicates, so Ψ = 1 (pooling the seeds
    as an axis gave 0.667)."""
    rng = np.random.default_rng(0)
    rows_, x, y = [], [], []
    for rank, (method, interval) in enumerate((("online", None), ("spaced-online", 1.5),
                                               ("spaced-online", 3.0))):
        for seed in range(4):
            rows_.append({"dataset": "d", "network": "n", "model": "student", "method": method,
                          "interval": interval, "seed": seed})
            x.append(rank + rng.uniform(-0.3, 0.3))
            y.append(10 * rank + rng.uniform(-3, 3))
    g = granulated(rows_, x, y)
    assert set(g["axes"]) == {"method"}                      # interval is not a second axis
    assert g["axes"]["method"] == {"psi": 1.0, "groups": 1}
    assert g["overall"] == 1.0
    assert kendall(x, y)[0] < 1                             # the noise is real


def _result(method, seed, sha, **sections):
    return {"format": "flatkd.result", "version": 1,
            "checkpoint": {"path": f"{method}-{seed}.pt", "sha256": sha, "method": method,
                           "arch": "resnet8", "dataset": "digits", "model": "student",
                           "seed": seed, "interval": 1.5 if method.startswith("spaced") else None},
            **sections, "provenance": {"seed": 0}}


def _sharp(gap, sharp, noise):
    return {"generalization": {"gap": gap, "test_accuracy": 0.9 - gap, "train_accuracy": 0.9},
            "adaptive": {"average": {"value": sharp}, "worst": {"value": noise}}}


UNRELATED = [8, 3, 9, 5, 7, 0, 1, 10, 6, 2, 11, 4]     # Kendall τ = 0 with 0, 1, …, 11


def _write(tmp_path, n=12, split=False):
    rng = np.random.default_rng(3)
    methods = ["baseline", "online", "spaced-online"]
    paths = []
    for i in range(n):
        m, seed = methods[i % 3], i // 3
        gap = 0.01 * i + 0.001 * rng.random()
        sharp = {"sharpness": _sharp(gap, 2 * gap + 0.001, float(UNRELATED[i]))}
        flat = {"flatness": {"hessian": {"trace": {"mean": float(rng.random())},
                                         "top_eigenvalues": [float(rng.random())]}}}
        if split:                                    # the two suites in two files
            for tag, sec in (("s", sharp), ("f", flat)):
                p = tmp_path / f"{m}-{seed}-{tag}.json"
                p.write_text(json.dumps(_result(m, seed, f"sha{i}", **sec)))
                paths.append(p)
        else:
            p = tmp_path / f"{m}-{seed}.json"
            p.write_text(json.dumps(_result(m, seed, f"sha{i}", **sharp, **flat)))
            paths.append(p)
    return paths


def test_study_verdicts_and_taus(tmp_path):
    _write(tmp_path)
    out = tmp_path / "study.json"
    s = run_study([tmp_path], StudySettings(n_resamples=300), out=out)
    assert json.loads(out.read_text()) == s and s["n_networks"] == 12
    by = {t["measure"]: t for t in s["taus"]}
    assert by["adaptive_average"]["gap"]["tau"] == pytest.approx(1.0)
    assert by["adaptive_average"]["verdict"] == "tracks"
    assert by["adaptive_average"]["test_accuracy"]["tau"] == pytest.approx(-1.0)
    table = rows(load([tmp_path]))
    x = [r["measures"]["adaptive_worst"] for r in table]
    y = [r["targets"]["gap"] for r in table]
    assert by["adaptive_worst"]["gap"]["tau"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert by["adaptive_worst"]["gap"]["tau"] == pytest.approx(0.0, abs=1e-12)
    assert by["adaptive_worst"]["verdict"] == "does not track"
    assert any(line.startswith("Track the generalization gap") and "adaptive_average" in line
               for line in s["summary"])
    assert s["target_sources"] == ["gap: whole train split − whole test split",
                                   "test_accuracy: whole test split (sharpness suite)"]


def test_sections_of_one_network_merge_across_files(tmp_path):
    _write(tmp_path, n=6, split=True)
    table = rows(load([tmp_path]))
    assert len(table) == 6
    assert all({"adaptive_average", "hessian_trace"} <= set(r["measures"]) for r in table)
    assert all(len(r["files"]) == 2 for r in table)


def test_conflicting_sections_are_refused(tmp_path):
    a = _result("online", 0, "same", sharpness=_sharp(0.1, 1.0, 1.0))
    b = _result("online", 0, "same", sharpness=_sharp(0.2, 1.0, 1.0))
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    with pytest.raises(FlatkdError, match="differs"):
        load([tmp_path])


def test_gap_falls_back_to_flatness_and_robustness(tmp_path):
    r = _result("online", 0, "x", flatness={
        "hessian": {"n_samples": 64, "trace": {"mean": 3.0}, "top_eigenvalues": [1.0]},
        "perturbation": [{"sigma": 0.0, "loss_mean": 0.1, "acc_mean": 0.98},
                         {"sigma": 0.01, "loss_mean": 0.2, "acc_mean": 0.9}]},
        robustness={"clean_accuracy": 0.95, "corruptions": [], "adversarial": []})
    (tmp_path / "r.json").write_text(json.dumps(r))
    [row] = rows(load([tmp_path]))
    assert row["targets"]["gap"] == pytest.approx(0.03)
    assert row["target_sources"]["gap"] == "first 64 training samples − whole test split"
    assert row["measures"] == {"hessian_trace": 3.0, "top_eigenvalue": 1.0,
                               "perturbation_loss@0.01": 0.2}


def test_a_target_never_mixes_sources(tmp_path):
    """Networks with the sharpness suite's gap and networks with only the fallback gap: the τ of
    a measure they share uses the former alone."""
    paths = _write(tmp_path, n=8)
    for i in range(4):                                   # four more, flatness + robustness only
        r = _result("self", i, f"fallback{i}", flatness={
            "hessian": {"n_samples": 64, "trace": {"mean": 100.0 + i}, "top_eigenvalues": [1.0]},
            "perturbation": [{"sigma": 0.0, "loss_mean": 0.1, "acc_mean": 0.99}]},
            robustness={"clean_accuracy": 0.9 - 0.01 * i, "corruptions": [], "adversarial": []})
        (tmp_path / f"self-{i}.json").write_text(json.dumps(r))
    s = run_study([tmp_path], StudySettings(n_resamples=100))
    by = {t["measure"]: t for t in s["taus"]}
    assert by["hessian_trace"]["gap"]["n"] == 8 and s["n_networks"] == 12
    assert len(paths) == 8
