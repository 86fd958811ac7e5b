"""Both notebooks run headless top to bottom (nbclient) with reduced sizes injected after their
"parameters" cell (papermill convention), and are stored without outputs."""
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import report_fixtures as fx

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(autouse=True)
def inline_figures(monkeypatch):
    """The kernel inherits the environment: MPLBACKEND=Agg (common on CI) would hide figures."""
    monkeypatch.delenv("MPLBACKEND", raising=False)


def execute(name: str, params: dict) -> nbformat.NotebookNode:
    """Run notebook ``name`` with ``params`` injected after its tagged parameters cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    injected = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(injected))
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def warnings_shown(nb) -> list[str]:
    """Every stderr stream and error output of the executed notebook (library warnings land on
    stderr); kernel start-up messages are not cell outputs and do not count."""
    return [o.get("text", "") or o.get("evalue", "") for c in nb.cells
            for o in c.get("outputs", []) if o.get("name") == "stderr"
            or o.get("output_type") == "error"]


def outputs(nb) -> tuple[str, int]:
    """All text printed/displayed by the notebook, and the number of PNG images shown."""
    text, images = [], 0
    for c in nb.cells:
        for o in c.get("outputs", []):
            text.append(o.get("text", ""))
            data = o.get("data", {})
            text += [data.get("text/plain", ""), data.get("text/markdown", "")]
            images += "image/png" in data
    return "\n".join(text), images


@pytest.mark.parametrize("name", ["01_theory.ipynb", "02_generalization_report.ipynb"])
def test_notebook_is_stored_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None


def test_theory_notebook_runs_and_reports_verdicts():
    nb = execute("01_theory.ipynb", {"seeds": [0, 1], "epochs": 12, "n_train": 96, "dim": 4,
                                     "hidden": 8, "record_points": 3, "converge_steps": 300})
    text, images = outputs(nb)
    assert warnings_shown(nb) == []
    assert images == 2
    assert "P = 121 parameters" in text
    assert "Lemma 4.3 (E u_k(t) ≤ E u_t, averaged over 2 seeds) holds at" in text
    assert "(a) Own trajectories" in text and "Over-parameterised" in text


def test_theory_notebook_names_the_theory_package():
    nb = json.loads((NOTEBOOKS / "01_theory.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "flatkd/theory.py" not in text and "`flatkd/theory/` package" in text


@pytest.mark.parametrize("name", ["01_theory.ipynb", "02_generalization_report.ipynb"])
def test_notebook_text_cites_no_internal_documents(name):
    assert "SPEC" not in (NOTEBOOKS / name).read_text()


def test_report_notebook_renders_fake_results(tmp_path):
    paths = fx.write_results(tmp_path / "results", intervals={"spaced-online": (0.5,)})
    fx.write_checkpoints(paths)
    nb = execute("02_generalization_report.ipynb",
                 {"results_dir": str(tmp_path / "results"), "out_dir": str(tmp_path / "report")})
    text, images = outputs(nb)
    assert warnings_shown(nb) == []          # e.g. no tqdm "IProgress not found" (ipywidgets)
    assert (tmp_path / "report" / "report.md").is_file()
    assert "18 networks in 18 result files" in text
    # perturbation, density, corruption bars + heatmap, BIM, accuracy vs interval, training curves
    assert images == 7
    assert "± " in text and "best over epochs" in text and "exit ensemble" in text
    assert "NOT significant" in text and "the gain does not survive" in text
    assert "spaced-online (s=1.5) vs online, accuracy (final)" in text
    assert "corruption accuracy: spaced mean higher in" in text
    assert "(no training_curves figure" not in text and "without a readable checkpoint" not in text


def test_report_notebook_runs_with_its_shipped_defaults(tmp_path):
    """As shipped, 02 reads the reference results folder (only the output folder is moved)."""
    nb = execute("02_generalization_report.ipynb", {"out_dir": str(tmp_path / "report")})
    text, _ = outputs(nb)
    assert warnings_shown(nb) == []
    assert (tmp_path / "report" / "report.md").is_file()
    reference = sorted((NOTEBOOKS.parent / "checkpoints" / "reference" / "results").glob("*.json"))
    assert f"{len(reference)} networks in {len(reference)} result files" in text


@pytest.mark.parametrize("name", ["01_theory.ipynb", "03_measures_vs_generalization.ipynb"])
def test_notebook_runs_with_its_shipped_defaults(name):
    """01 and 03 top to bottom exactly as shipped (nothing injected)."""
    nb = execute(name, {})
    assert warnings_shown(nb) == []
    assert outputs(nb)[1] >= 2                       # their figures were shown


def test_a_results_folder_means_the_same_to_report_study_and_notebooks(tmp_path):
    """One network's sections spread over two files are one network everywhere; two different
    networks of one configuration and seed are refused everywhere."""
    from flatkd.errors import FlatkdError
    from flatkd.evidence import load_results
    from flatkd.report import build_report
    from flatkd.study import run_study
    from flatkd.study.measures import load as study_load

    paths = fx.write_results(tmp_path / "res", methods=("baseline", "online"))
    split = json.loads(paths[0].read_text())
    robustness = split.pop("robustness")
    paths[0].write_text(json.dumps(split))
    (tmp_path / "res" / "more").mkdir()
    (tmp_path / "res" / "more" / "extra.json").write_text(json.dumps(
        {**{k: v for k, v in split.items() if k != "flatness"}, "robustness": robustness}))
    merged = load_results([tmp_path / "res"])
    assert len(merged) == len(paths) and len(study_load([tmp_path / "res"])) == len(paths)
    first = next(r for r in merged if r.path == paths[0])
    assert first.robustness == robustness and first.flatness == split["flatness"]
    assert len(first.files) == 2
    build_report([tmp_path / "res"], tmp_path / "out")
    clash = json.loads(paths[1].read_text())
    clash["checkpoint"]["sha256"] = "f" * 64                   # another network, same seed
    (tmp_path / "res" / "more" / "clash.json").write_text(json.dumps(clash))
    for read in (load_results, study_load, run_study):
        with pytest.raises(FlatkdError, match="two different networks"):
            read([tmp_path / "res"])


def test_measures_notebook_is_clean_and_states_which_measures_track_the_gap(tmp_path):
    """03: stored without outputs, no internal references; on results whose adaptive average
    sharpness rises with the gap while the worst case is unrelated (τ = 0) it says so."""
    name = "03_measures_vs_generalization.ipynb"
    stored = json.loads((NOTEBOOKS / name).read_text())
    assert all(c["outputs"] == [] and c["execution_count"] is None
               for c in stored["cells"] if c["cell_type"] == "code")
    assert "SPEC" not in (NOTEBOOKS / name).read_text()
    unrelated = [8, 3, 9, 5, 7, 0, 1, 10, 6, 2, 11, 4]          # Kendall τ = 0 with 0..11
    for i in range(12):
        method, seed, gap = ("baseline", "online", "spaced-online")[i % 3], i // 3, 0.01 * i
        (tmp_path / f"{method}-{seed}.json").write_text(json.dumps({
            "format": "flatkd.result", "version": 1,
            "checkpoint": {"path": f"{method}-{seed}.pt", "sha256": f"sha{i}", "method": method,
                           "arch": "resnet8", "dataset": "digits", "model": "student",
                           "seed": seed, "interval": 1.5 if method == "spaced-online" else None},
            "sharpness": {"generalization": {"gap": gap, "test_accuracy": 0.95 - gap},
                          "adaptive": {"average": {"value": 0.1 + gap},
                                       "worst": {"value": float(unrelated[i])}}},
            "provenance": {"seed": 0}}))
    nb = execute(name, {"study_file": None, "results_dir": str(tmp_path), "n_resamples": 200})
    text, images = outputs(nb)
    assert warnings_shown(nb) == []
    assert images == 2                                   # τ with intervals; measures vs gap
    assert "12 networks; targets: gap: whole train split − whole test split" in text
    assert "Track the generalization gap on this set" in text and \
        "adaptive_average (τ = +1.00)" in text
    assert "Do not track the gap on this set" in text and "adaptive_worst (τ = +0.00)" in text
