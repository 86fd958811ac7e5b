"""``flatkd eval`` / ``flatkd.evaluate`` glue: result schema (SPEC §6), determinism, bad input."""
import json

import pytest

import flatkd
from flatkd.cli import main
from flatkd.errors import FlatkdError

SMALL = {"hessian.samples": 48, "hessian.top_k": 2, "hessian.trace_hvps": 8,
         "hessian.slq_probes": 1, "hessian.slq_steps": 10, "perturbation.sigmas": [0.0, 0.01],
         "perturbation.repeats": 2, "robustness.corruptions": ["brightness"],
         "robustness.severities": [1, 5], "robustness.epsilons": [2.0],
         # --suite all also runs the sharpness and landscape suites: tiny sizes
         "sharpness.samples": 64, "sharpness.m": 32, "sharpness.steps": 3,
         "sharpness.average_draws": 2, "pacbayes.draws": 2, "pacbayes.max_evals": 4,
         "layers.samples": 48, "layers.max_iter": 5, "layers.trace_probes": 2,
         "landscape.slices": "1d", "landscape.resolution": 3, "landscape.samples": 32,
         "landscape.bn_samples": 32}


@pytest.fixture(scope="module")
def result(digits_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "r.json"
    cache = tmp_path_factory.mktemp("cache")
    r = flatkd.evaluate(digits_checkpoint, "all", overrides={**SMALL, "cache_dir": str(cache)},
                        out=out)
    return r, out, cache


def test_result_schema(result, digits_checkpoint):
    r, out, _ = result
    assert json.loads(out.read_text()) == r
    assert r["format"] == "flatkd.result" and r["version"] == 1
    ck = r["checkpoint"]
    assert ck["sha256"] == flatkd.load_checkpoint(digits_checkpoint).sha256
    assert (ck["method"], ck["arch"], ck["dataset"], ck["model"]) == \
        ("spaced-online", "resnet8", "digits", "student")
    assert ck["interval"] == 0.5 and ck["seed"] == 0
    assert ck["hyperparameters"] == {"optim.lr": 0.05, "batch_size": 16,      # study axes
                                     "optim.weight_decay": 5e-4, "epochs": 1,
                                     "train_fraction": None, "teacher_width": 1.0}
    h = r["flatness"]["hessian"]
    assert set(h["trace"]) >= {"mean", "stderr", "n_hvp"} and len(h["top_eigenvalues"]) == 2
    assert h["top_eigenvalues"][0] >= h["top_eigenvalues"][1] and h["n_samples"] == 48
    assert len(h["density"]["grid"]) == len(h["density"]["values"])
    rows = r["flatness"]["perturbation"]
    assert [row["sigma"] for row in rows] == [0.0, 0.01] and rows[1]["repeats"] == 2
    rob = r["robustness"]
    assert 0 <= rob["clean_accuracy"] <= 1
    assert [(c["corruption"], c["severity"]) for c in rob["corruptions"]] == \
        [("brightness", 1), ("brightness", 5)]
    assert rob["adversarial"][0]["attack"] == "BIM" and rob["adversarial"][0]["steps"] == 2
    assert rob["adversarial"][0]["accuracy"] <= rob["clean_accuracy"]
    prov = r["provenance"]
    assert prov["seed"] == 0 and prov["settings"]["hessian"]["samples"] == 48
    assert "created_utc" not in prov


def test_same_seed_gives_identical_json(result, digits_checkpoint, tmp_path):
    r, out, cache = result
    again = tmp_path / "again.json"
    assert main(["eval", "--ckpt", str(digits_checkpoint), "--suite", "all", "--out", str(again),
                 "--quiet", "--set", f"cache_dir={cache}"] +
                [a for k, v in SMALL.items() for a in ("--set", f"{k}={json.dumps(v)}")]) == 0
    assert again.read_text() == out.read_text()


def test_teacher_and_single_suite(digits_checkpoint):
    r = flatkd.evaluate(digits_checkpoint, "flatness", model="teacher", overrides=SMALL)
    assert r["checkpoint"]["model"] == "teacher" and "robustness" not in r


@pytest.mark.parametrize("overrides,match", [
    ({"hessian.top_k": 0}, "top_k"),
    ({"hessian.backend": "magic"}, "native"),
    ({"hessian.samples": 5000}, "samples"),
    ({"robustness.severities": [6]}, "1"),
    ({"robustness.corruptions": ["rain"]}, "brightness"),
    ({"robustness.epsilons": [-1.0]}, "psilon"),
    ({"hessian.nope": 1}, "valid keys"),
])
def test_bad_settings_raise_and_write_nothing(digits_checkpoint, tmp_path, overrides, match):
    out = tmp_path / "r.json"
    with pytest.raises(FlatkdError, match=match):
        flatkd.evaluate(digits_checkpoint, "all", overrides=overrides, out=out)
    assert not out.exists()


def test_unknown_model_names_choices(digits_checkpoint):
    with pytest.raises(FlatkdError, match="valid choices: student, teacher"):
        flatkd.evaluate(digits_checkpoint, "flatness", model="projector", overrides=SMALL)


def test_suite_lists():
    """``--suite a,b`` names several suites (run in registry order); ``all`` every one."""
    from flatkd.evaluator import SUITE_CHOICES, suite_names
    assert suite_names("robustness,flatness") == ["flatness", "robustness"]
    assert sorted(suite_names("all")) == sorted(s for s in SUITE_CHOICES if s != "all")
    with pytest.raises(FlatkdError, match="unknown suite 'speed'.*comma-separated"):
        suite_names("flatness,speed")
