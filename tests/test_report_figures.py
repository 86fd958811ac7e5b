"""Report figures: labelled, non-empty axes; the plotted numbers are the result files' numbers."""
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

import report_fixtures as fx
from flatkd.report import figures as F
from flatkd.report import robustness_figures as RF
from flatkd.report import load_results
from flatkd.report import tables as T


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return load_results(fx.write_results(tmp_path_factory.mktemp("res")))


BUILDERS = [F.perturbation_figure, RF.corruption_bars, RF.corruption_heatmap, F.density_figure,
            RF.bim_figure]


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


def test_fig4_puts_each_non_spaced_method_beside_its_spaced_counterpart(results):
    fig = F.perturbation_figure(results)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 4                       # two families × (loss, accuracy)
    assert [a.get_title() for a in axes] == ["online vs spaced-online"] * 2 + [
        "self vs spaced-self"] * 2
    assert [[ln.get_label() for ln in a.lines] for a in axes[::2]] == [
        ["baseline", "online", "spaced-online (s=1.5)"], ["baseline", "self", "spaced-self (s=4.0)"]]
    for ax in axes:                             # σ ticks exactly at the grid
        assert list(ax.get_xticks()) == pytest.approx(list(fx.SIGMAS))
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:g}" for v in fx.SIGMAS]
    styles = {ln.get_label(): ln.get_linestyle() for ln in axes[0].lines}
    assert styles == {"baseline": ":", "online": "--", "spaced-online (s=1.5)": "-"}
    colors = {ln.get_label(): ln.get_color() for a in axes for ln in a.lines}
    assert len(set(colors.values())) == 5       # one distinct colour per method
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == [
        "baseline", "online", "spaced-online (s=1.5)"]


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
    df = RF.bim_frame(results)
    clean = df[(df["label"] == "online") & (df["epsilon_255"] == 0)]
    assert sorted(clean["accuracy"]) == pytest.approx(sorted(100 * a for a in fx.ACCURACY["online"]))
    assert sorted(df["epsilon_255"].unique()) == pytest.approx([0, 1, 2, 4, 8])


def test_training_curves_average_seeds_and_mark_replays(tmp_path):
    runs = [fx.history_rows("spaced-self", s) for s in fx.SEEDS]
    online = [fx.history_rows("online", s) for s in fx.SEEDS]
    curves = [F.Curve("online", online), F.Curve("spaced-self (s=4.0)", runs, [4.0]),
              F.Curve("baseline", [fx.history_rows("baseline", 0)])]
    fig = F.training_curves_figure(curves)
    assert F.unlabelled_axes(fig) == []
    ax = fig.axes[1]
    vlines = [ln for ln in ax.lines if list(ln.get_xdata()) == [ln.get_xdata()[0]] * 2]
    assert [ln.get_xdata()[0] for ln in vlines] == [4.0]
    student = [ln for ln in ax.lines if ln.get_label() == "student"][0]
    acc = 100 * np.array([[r["student_test_acc"] for r in run] for run in runs])
    assert student.get_ydata() == pytest.approx(acc.mean(axis=0))
    ens = [ln for ln in ax.lines if ln.get_label() == "exit ensemble (self KD)"][0]
    ens_acc = 100 * np.array([[r["ensemble_test_acc"] for r in run] for run in runs])
    assert ens.get_ydata() == pytest.approx(ens_acc.mean(axis=0))
    band = F.curve_frame(curves[1])
    st = band[band["series"] == "student"]
    assert st["std"].to_numpy() == pytest.approx(acc.std(axis=0, ddof=1))
    assert set(st["n"]) == {3}
    teacher = [ln for ln in fig.axes[0].lines if ln.get_label() == "teacher"][0]
    t_acc = 100 * np.array([[r["teacher_test_acc"] for r in run] for run in online])
    assert teacher.get_ydata() == pytest.approx(t_acc.mean(axis=0))
    assert [ln.get_label() for ln in fig.axes[2].lines] == ["student"]  # no teacher → no line
    assert "3 seeds, mean ± std" in fig.axes[0].get_title()
    assert "1 seed" in fig.axes[2].get_title()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "student", "teacher", "exit ensemble (self KD)", "spaced replay"]
    F.save_figure(fig, tmp_path, "tc")
    with pytest.raises(ValueError):
        F.training_curves_figure([])


def test_density_is_one_line_per_method_mean_over_seeds(results):
    fig = F.density_figure(results)
    ax = fig.axes[0]
    thick = [ln for ln in ax.lines if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in thick] == [
        "baseline", "online", "spaced-online (s=1.5)", "self", "spaced-self (s=4.0)"]
    assert len({ln.get_color() for ln in thick}) == 5
    assert len([ln for ln in ax.lines if ln.get_label() == "_seed"]) == 15
    grid, mean, _ = F.density_frame(results)
    online = [r for r in results if r.method == "online"]
    by_hand = np.mean([np.interp(grid, r.flatness["hessian"]["density"]["grid"],
                                 r.flatness["hessian"]["density"]["values"], left=0, right=0)
                       for r in online], axis=0)
    line = [ln for ln in thick if ln.get_label() == "online"][0]
    y = np.asarray(line.get_ydata(), dtype=float)
    shown = ~np.isnan(y)
    assert y[shown] == pytest.approx(by_hand[shown])
    assert np.all(by_hand[~shown] < by_hand.max() * F.DENSITY_RANGE)


def test_heatmap_hatches_exactly_the_cells_at_chance_and_names_the_constants(results):
    rule = T.ChanceRule(10, 360)
    fig = RF.corruption_heatmap(results, rule)
    marked = {p.get_gid()[len("chance:"):] for p in fig.axes[0].patches
              if (p.get_gid() or "").startswith("chance:")}
    expected = set()
    for m in fx.ACCURACY:
        label = f"{m} (s={fx.INTERVAL[m]:.1f})" if m in fx.INTERVAL else m
        for c in fx.CORRUPTIONS:
            for sev in fx.SEVERITIES:
                mean = np.mean([[x["accuracy"] for x in fx._result(m, s, fx.Path("."))
                                 ["robustness"]["corruptions"]
                                 if (x["corruption"], x["severity"]) == (c, sev)][0]
                                for s in fx.SEEDS])
                if mean <= rule.threshold:
                    expected.add(f"{label}|{c} s{sev}")
    assert expected and marked == expected
    title = fig.get_suptitle()
    assert "cifar-c" in title and "≤ 13.2 %" in title and f"({len(expected)} cells)" in title
    assert "severity constants: cifar-c" in RF.corruption_bars(results).get_suptitle()
    # the default rule comes from the dataset registry (digits: 10 classes, 360 test images)
    assert RF.chance_rule(results).threshold == pytest.approx(rule.threshold)


def test_interval_figure_draws_counterpart_at_zero(tmp_path):
    rs = load_results(fx.write_results(tmp_path, methods=("baseline", "online", "spaced-online"),
                                       intervals={"spaced-online": (0.5, 3.0)}))
    df = T.interval_table(rs)
    fig = F.interval_figure(df, "digits / resnet8")
    assert F.unlabelled_axes(fig) == []
    ax = fig.axes[0]
    line = [c for c in ax.containers if c.get_label() == "spaced-online (s > 0)"][0].lines[0]
    assert list(line.get_xdata()) == [0.0, 0.5, 1.5, 3.0]
    means = [np.mean(fx.ACCURACY["online"])] + [
        np.mean([fx.accuracy("spaced-online", seed, s) for seed in fx.SEEDS])
        for s in (0.5, 1.5, 3.0)]
    assert line.get_ydata() == pytest.approx(100 * np.array(means))
    zero = [ln for ln in ax.lines if ln.get_label() == "online (s = 0)"][0]
    assert list(zero.get_xdata()) == [0.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "1.5", "3.0"]
    with pytest.raises(ValueError):
        F.interval_figure(df.iloc[0:0])


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
