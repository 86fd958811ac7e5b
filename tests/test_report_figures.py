"""Report figures: labelled, non-empty axes; the plotted numbers are the result files' numbers."""
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

import report_fixtures as fx
from flatkd.report import figures as F
from flatkd.report import load_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return load_results(fx.write_results(tmp_path_factory.mktemp("res")))


BUILDERS = [F.perturbation_figure, F.corruption_bars, F.corruption_heatmap, F.density_figure,
            F.bim_figure]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_figures_have_labelled_nonempty_axes_and_save_png_pdf(build, results, tmp_path):
    fig = build(results)
    axes = [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel()
        assert ax.lines or ax.collections or ax.patches or ax.images
    assert F.unlabelled_axes(fig) == []
    png, pdf = F.save_figure(fig, tmp_path, "f")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert not list(tmp_path.glob("*.tmp"))


def test_legend_names_every_method(results):
    fig = F.perturbation_figure(results)
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert texts == ["baseline", "online", "spaced-online (s=1.5)", "self", "spaced-self (s=4.0)"]


def test_perturbation_pools_seeds_by_total_variance(results):
    df = F.perturbation_frame(results)
    row = df[(df["label"] == "online") & (df["sigma"] == 0.01)].iloc[0]
    raw = [[p for p in r.flatness["perturbation"] if p["sigma"] == 0.01][0]
           for r in results if r.method == "online"]
    means = np.array([p["loss_mean"] for p in raw])
    stds = np.array([p["loss_std"] for p in raw])
    assert row["seeds"] == 3
    assert row["loss_mean"] == pytest.approx(means.mean())
    assert row["loss_std"] == pytest.approx(math.sqrt((stds ** 2).mean() + means.var()))
    # the plotted line carries exactly these numbers
    ax = F.perturbation_figure(results).axes[0]
    line = [ln for ln in ax.lines if ln.get_label() == "online"][0]
    i = list(line.get_xdata()).index(0.01)
    assert line.get_ydata()[i] == pytest.approx(row["loss_mean"])


def test_bim_frame_starts_at_clean_accuracy(results):
    df = F.bim_frame(results)
    clean = df[(df["label"] == "online") & (df["epsilon_255"] == 0)]
    assert sorted(clean["accuracy"]) == pytest.approx(sorted(100 * a for a in fx.ACCURACY["online"]))
    assert sorted(df["epsilon_255"].unique()) == pytest.approx([0, 1, 2, 4, 8])


def test_training_curves_from_plain_rows_mark_boundaries(tmp_path):
    rows = fx.metric_rows(epochs=6)
    curves = [F.Curve("online", rows), F.Curve("spaced-online (s=1.5)", rows, [1.5, 3.0, 4.5]),
              F.Curve("baseline", fx.metric_rows(epochs=6, teacher=False))]
    fig = F.training_curves_figure(curves)
    assert F.unlabelled_axes(fig) == []
    spaced = fig.axes[1]
    vlines = [ln for ln in spaced.lines if list(ln.get_xdata()) == [ln.get_xdata()[0]] * 2]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [1.5, 3.0, 4.5]
    student = [ln for ln in spaced.lines if ln.get_label() == "student"][0]
    assert student.get_ydata() == pytest.approx([100 * r["student_test_acc"] for r in rows])
    assert [ln.get_label() for ln in fig.axes[2].lines] == ["student"]  # no teacher → no line
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "student", "teacher", "spaced replay boundary"]
    F.save_figure(fig, tmp_path, "tc")
    with pytest.raises(ValueError):
        F.training_curves_figure([])


def test_save_refuses_unlabelled_or_empty_axes(tmp_path):
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="missing axis label"):
        F.save_figure(fig, tmp_path, "bad")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    empty = Figure().subplots()
    empty.set_xlabel("x")
    empty.set_ylabel("y")
    assert F.unlabelled_axes(empty.figure) == ["axes 0: nothing drawn"]
    assert F.unlabelled_axes(fig) == []
    assert not list(tmp_path.iterdir())


def test_sigma_axis_names_the_recorded_perturbation_mode(results):
    assert F.perturbation_figure(results).axes[0].get_xlabel().startswith("parameter noise std")
    filt = [r.__class__(r.path, {**r.data, "provenance": {"settings": {"perturbation": {
        "mode": "filter"}}}}) for r in results]
    assert "filter-normalised" in F.sigma_label(filt)
    assert "mix" in F.sigma_label([results[0], filt[1]])
