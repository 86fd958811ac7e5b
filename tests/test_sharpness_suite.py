"""``flatkd eval --suite sharpness`` and ``--suite landscape`` end to end on a small digits
checkpoint: result sections, determinism, the path to a second checkpoint, bad settings."""
import json

import pytest

import flatkd
from flatkd.cli import main
from flatkd.errors import FlatkdError

TINY = {"sharpness.samples": 32, "sharpness.m": 16, "sharpness.steps": 3,
        "sharpness.average_draws": 2, "pacbayes.draws": 2, "pacbayes.max_evals": 4,
        "layers.samples": 16, "layers.max_iter": 4, "layers.trace_probes": 2,
        "landscape.resolution": 3, "landscape.samples": 16, "landscape.path_points": 3,
        "landscape.bn_samples": 16}


def test_sharpness_section_via_the_api(digits_checkpoint):
    r = flatkd.evaluate(digits_checkpoint, "sharpness", overrides=TINY)
    s = r["sharpness"]
    assert set(s) == {"generalization", "adaptive", "pacbayes", "layers"}
    g = s["generalization"]
    assert g["gap"] == pytest.approx(g["train_accuracy"] - g["test_accuracy"])
    assert (g["n_train"], g["n_test"]) == (1437, 360)          # whole un-augmented splits
    a = s["adaptive"]
    assert a["n_samples"] == 32 and a["worst"]["n_batches"] == 2
    assert a["worst"]["grad_evals_per_batch"] == 3 and a["worst"]["value"] >= 0
    assert s["pacbayes"]["isotropic"]["evaluations"] <= 4
    assert [x["name"] for x in s["layers"]["groups"]] == ["stem", "stages.0", "stages.1",
                                                         "stages.2", "fc"]
    assert "flatness" not in r and "landscape" not in r       # suites not run are absent
    assert r["provenance"]["settings"]["sharpness"]["steps"] == 3


def test_the_gap_is_taken_on_the_data_the_run_trained_on(tmp_path):
    """A run on a 10 % train_fraction: the sharpness suite's train accuracy is measured on the
    run's own 142 images (the trainer's seeded draw), not on the 1,437 of the whole split."""
    import torch

    from torch.utils.data import DataLoader

    from flatkd.accuracy import top1_accuracy
    from flatkd.batchnorm import recalibrate
    from flatkd.datasets import get, stratified_fraction
    from flatkd.training import Trainer, resolve
    cfg = resolve("baseline", "resnet8", "digits", seed=3,
                  overrides={"epochs": 1, "train_fraction": 0.1, "test_subset": 32})
    Trainer(cfg, tmp_path / "run", progress=False).run()
    ck = tmp_path / "run" / "checkpoint.pt"
    r = flatkd.evaluate(ck, "sharpness", overrides=TINY)
    g = r["sharpness"]["generalization"]
    mine = stratified_fraction(get("digits", "train"), 0.1, 3)
    assert g["n_train"] == len(mine) == 142 and g["n_test"] == 360      # round(0.1 · n_c) per class
    net = flatkd.load_checkpoint(ck).build_model("student")
    recalibrate(net, get("digits", "train"), samples=50_000, batch_size=256,
                device=torch.device("cpu"))               # as the evaluation does, whole split
    by_hand = top1_accuracy(net, DataLoader(mine, batch_size=256), torch.device("cpu"))
    assert g["train_accuracy"] == pytest.approx(by_hand, abs=1e-12)
    assert stratified_fraction(get("digits", "train"), 0.1, 4).indices != mine.indices


def test_landscape_path_and_determinism(digits_checkpoint, tmp_path):
    over = {**TINY, "landscape.path_to": str(digits_checkpoint), "landscape.path_bn": "interpolate"}
    out = tmp_path / "a.json"
    r = flatkd.evaluate(digits_checkpoint, "landscape", overrides=over, out=out)
    land = r["landscape"]
    assert land["1d"]["loss"][1] == land["origin"]["loss"] == land["2d"]["loss"][1][1]
    p = land["path"]
    assert p["partner"]["sha256"] == r["checkpoint"]["sha256"]
    assert p["barrier"]["loss"] == pytest.approx(0.0, abs=1e-6)   # a network to itself
    again = tmp_path / "b.json"
    assert main(["eval", "--ckpt", str(digits_checkpoint), "--suite", "landscape", "--quiet",
                 "--out", str(again)] +
                [a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v)}")]) == 0
    first, second = json.loads(out.read_text()), json.loads(again.read_text())
    first["provenance"].pop("git_revision"), second["provenance"].pop("git_revision")
    assert first == second


@pytest.mark.parametrize("overrides,match", [
    ({"landscape.resolution": 4}, "odd"),
    ({"landscape.path_to": "missing.pt"}, "checkpoint not found"),
    ({"sharpness.norm": "l1"}, "linf, l2"),
])
def test_bad_settings_fail_before_work(digits_checkpoint, tmp_path, overrides, match):
    out = tmp_path / "r.json"
    suite = "landscape" if any(k.startswith("landscape") for k in overrides) else "sharpness"
    with pytest.raises(FlatkdError, match=match):
        flatkd.evaluate(digits_checkpoint, suite, overrides=overrides, out=out)
    assert not out.exists()
