"""Report figures: labelled, non-empty axes; the plotted numbers are the result files' numbers."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import report_fixtures as fx
from flatkd.report import density_figure as DF
from flatkd.report import figures as F
from flatkd.report import robustness_figures as RF
from flatkd.evidence import load_results
from flatkd.report import tables as T
from flatkd.report import cells as S
from flatkd.report import style as Sty
from flatkd.evidence.results import METHOD_ORDER, GroupKey, group


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return load_results(fx.write_results(tmp_path_factory.mktemp("res")))


BUILDERS = [F.perturbation_figure, RF.corruption_bars, RF.corruption_heatmap, DF.density_figure,
            RF.bim_figure]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_figures_have_labelled_nonempty_axes_and_save_png_pdf(build, results, tmp_path):
    fig = build(results)
    axes = [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel()
        assert ax.lines or ax.collections or ax.patches or ax.images
    assert Sty.unlabelled_axes(fig) == []
    png, pdf = Sty.save_figure(fig, tmp_path, "f")
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
    assert Sty.unlabelled_axes(fig) == []
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
    Sty.save_figure(fig, tmp_path, "tc")
    with pytest.raises(ValueError):
        F.training_curves_figure([])


def test_density_is_one_line_per_method_mean_over_seeds(results):
    fig = DF.density_figure(results)
    ax = fig.axes[0]
    thick = [ln for ln in ax.lines if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in thick] == [
        "baseline", "online", "spaced-online (s=1.5)", "self", "spaced-self (s=4.0)"]
    assert len({ln.get_color() for ln in thick}) == 5
    assert len([ln for ln in ax.lines if ln.get_label() == "_seed"]) == 15
    grid, mean, seeds = DF.density_frame(results)
    online = [r for r in results if r.method == "online"]
    by_hand = np.mean([np.interp(grid, r.flatness["hessian"]["density"]["grid"],
                                 r.flatness["hessian"]["density"]["values"], left=0, right=0)
                       for r in online], axis=0)
    line = [ln for ln in thick if ln.get_label() == "online"][0]
    y = np.asarray(line.get_ydata(), dtype=float)
    shown = ~np.isnan(y)
    assert y[shown] == pytest.approx(by_hand[shown])
    floor = DF.density_floor(grid, mean, seeds, DF.density_points(results))
    assert np.all(by_hand[~shown] < floor) and ax.get_ylim()[0] == pytest.approx(floor / 2)
    assert f"densities < {floor:.0e} not drawn" in ax.get_title()


def test_heatmap_hatches_exactly_the_cells_at_chance_and_names_the_constants(results):
    rule = S.ChanceRule(10, 360)
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
    assert Sty.unlabelled_axes(fig) == []
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
        Sty.save_figure(fig, tmp_path, "bad")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    empty = Figure().subplots()
    empty.set_xlabel("x")
    empty.set_ylabel("y")
    assert Sty.unlabelled_axes(empty.figure) == ["axes 0: nothing drawn"]
    assert Sty.unlabelled_axes(fig) == []
    assert not list(tmp_path.iterdir())


def test_sigma_axis_names_the_recorded_perturbation_mode(results):
    assert F.perturbation_figure(results).axes[0].get_xlabel().startswith("parameter noise std")
    filt = [r.__class__(r.path, {**r.data, "provenance": {"settings": {"perturbation": {
        "mode": "filter"}}}}) for r in results]
    assert "filter-normalised" in F.sigma_label(filt)
    assert "mix" in F.sigma_label([results[0], filt[1]])


# ------------------------------------------------ the reference report's figures tell the truth
REFERENCE = Path(__file__).resolve().parents[1] / "checkpoints" / "reference" / "results"
#: every figure ``flatkd report checkpoints/reference/results`` writes
REFERENCE_FIGURES = ("fig4_perturbation_digits_resnet8", "hessian_density_digits_resnet8",
                     "corruption_bars_digits_resnet8", "corruption_heatmap_digits_resnet8",
                     "bim_digits_resnet8", "training_curves")
#: the figures that draw one colour per method
METHOD_FIGURES = ("fig4_perturbation_digits_resnet8", "hessian_density_digits_resnet8",
                  "corruption_bars_digits_resnet8", "bim_digits_resnet8")


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory):
    """``(results, {stem: Figure})``: the reference results and every figure ``build_report``
    made of them, after it saved them (PNG + PDF)."""
    from flatkd.report import build
    saved, real = {}, Sty.save_figure

    def keep(fig, out_dir, stem, *args, **kwargs):
        paths = real(fig, out_dir, stem, *args, **kwargs)
        saved[stem] = fig
        return paths
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Sty, "save_figure", keep)
        build.build_report([REFERENCE], tmp_path_factory.mktemp("ref-report"))
    return load_results([REFERENCE]), saved


def _renderer(fig, dpi: int = 150):
    """An Agg renderer at the dpi ``save_figure`` writes PNGs with (text extents depend on it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()               # axis labels are placed in pixels at draw time
    return canvas.get_renderer()


def _cut_off(fig) -> list[str]:
    """The texts and legends of ``fig`` that reach outside the figure (1 px tolerance)."""
    r, box = _renderer(fig), fig.bbox
    items = [("legend", lg) for lg in fig.legends]
    if fig._suptitle is not None and fig._suptitle.get_text():
        items.append(("suptitle", fig._suptitle))
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if ax.get_legend() is not None:
            items.append(("axes legend", ax.get_legend()))
        items += [("title", ax.title), ("x label", ax.xaxis.label), ("y label", ax.yaxis.label)]
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lo, hi), max(lo, hi)
            items += [("tick label", t.label1) for t in axis.get_major_ticks()
                      if lo <= t.get_loc() <= hi]             # ticks outside the view: not drawn
    bad = []
    for what, a in items:
        if not a.get_visible() or (hasattr(a, "get_text") and not a.get_text()):
            continue
        e = a.get_window_extent(r)
        if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
            name = a.get_text() if hasattr(a, "get_text") else what
            bad.append(f"{what} {name[:40]!r}: {e.x0:.0f}..{e.x1:.0f} × {e.y0:.0f}..{e.y1:.0f} "
                       f"outside {box.x1:.0f} × {box.y1:.0f}")
    return bad


def _legend_colors(fig) -> dict[str, str]:
    """Legend label → colour of its handle (line colour, or face colour of a bar)."""
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D
    out = {}
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend()]
    for lg in legends:
        for h, t in zip(lg.legend_handles, lg.get_texts()):
            c = h.get_color() if isinstance(h, Line2D) else h.get_facecolor()
            out[t.get_text()] = to_hex(c)
    return out


def _configuration(label: str) -> str:
    """A legend label without its seed count: ``spaced-online (s=1.5) (5 seeds)`` →
    ``spaced-online (s=1.5)``."""
    return re.sub(r" \(\d+ seeds?\)$", "", label)


def _accuracy_axis_ok(ax) -> bool:
    """An accuracy axis starts at 0, or it carries a visible break mark (gid ``axis-break``)."""
    return ax.get_ylim()[0] <= 0 or any(
        (a.get_gid() or "") == "axis-break" and a.get_visible() for a in ax.get_children())


def test_reference_report_figures_are_the_ones_checked(reference_report):
    assert set(reference_report[1]) == set(REFERENCE_FIGURES)


@pytest.mark.parametrize("stem", REFERENCE_FIGURES)
def test_reference_figure_cuts_nothing_off(reference_report, stem):
    """Legends, titles, axis and tick labels lie inside the figure (the saved file shows them)."""
    fig = reference_report[1][stem]
    assert _cut_off(fig) == []


def test_reference_figures_give_each_method_its_own_colour_everywhere(reference_report):
    seen: dict[str, str] = {}
    for stem in METHOD_FIGURES:
        colors = {lab: c for lab, c in _legend_colors(reference_report[1][stem]).items()
                  if not lab.startswith(("λ", "mean λ", "seed λ"))}
        labels = [_configuration(lab) for lab in colors]
        assert len(colors) >= 4, stem
        assert len(set(colors.values())) == len(colors), (stem, colors)
        for lab, c in zip(labels, colors.values()):
            assert seen.setdefault(lab, c) == c, f"{lab} changes colour in {stem}"


def test_reference_density_shows_every_top_eigenvalue_of_the_table(reference_report):
    results, figs = reference_report
    ax = figs["hessian_density_digits_resnet8"].axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    flat = T.flatness_table(results)
    assert len(flat) == 7
    for _, row in flat.iterrows():                       # the table's mean λ_max
        assert x0 <= row["top_eig_mean"] <= x1, row["label"]
    thick = {_configuration(ln.get_label()): ln for ln in ax.lines
             if not ln.get_label().startswith("_")}
    n = 0
    for k, rs in group(results).items():
        for r in rs:
            h = (r.flatness or {}).get("hessian") or {}
            if not h.get("density"):
                continue
            lam = max(h["top_eigenvalues"])
            d = float(np.interp(lam, h["density"]["grid"], h["density"]["values"]))
            where = f"{k.label} seed {r.seed}: λ_max {lam:.1f}, density {d:.2e}"
            assert x0 <= lam <= x1 and y0 < d < y1, where
            # that seed's thin line is drawn at its λ_max, and so is the method's thick line
            drawn = [ln for ln in ax.lines if ln.get_label() == "_seed"
                     and np.isclose(np.interp(lam, ln.get_xdata(), ln.get_ydata()), d, rtol=1e-6)]
            assert drawn, f"{where}: not drawn"
            m = thick[k.label]
            assert np.isfinite(np.interp(lam, m.get_xdata(), m.get_ydata())), f"{where}: mean"
            n += 1
    assert n == 31                                   # 5 headline methods × 5 seeds, offline and constant-ahead × 3
    title = ax.get_title()
    assert "SLQ, 1 probe," in title and "40 Lanczos steps" in title
    assert "1 seeds" not in title


def test_reference_curves_keep_every_mean_inside_the_axes(reference_report):
    results, figs = reference_report
    # Fig. 4: every (configuration, σ) mean of the perturbation table inside its panel
    fig = figs["fig4_perturbation_digits_resnet8"]
    axes = [a for a in fig.axes if a.get_visible()]
    df = F.perturbation_frame(results)
    for ax in axes:
        lo, hi = ax.get_ylim()
        acc = "accuracy" in ax.get_ylabel()
        labels = {ln.get_label() for ln in ax.lines}
        d = df[df["label"].isin(labels)]
        assert len(d), ax.get_title()
        vals = 100 * d["acc_mean"] if acc else d["loss_mean"]
        assert lo <= vals.min() and vals.max() <= hi, (ax.get_title(), ax.get_ylabel())
        for band in ax.collections:                      # mean ± std bands
            y = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
            assert y.min() >= 0, f"{ax.get_title()}: a band below 0"
            assert not acc or y.max() <= 100
        assert not acc or _accuracy_axis_ok(ax)
    # adversarial accuracy: every mean over seeds inside its panel; axis from 0 or marked
    fig = figs["bim_digits_resnet8"]
    means = RF.bim_frame(results).groupby(["attack", "label", "epsilon_255"])["accuracy"].mean()
    for ax in [a for a in fig.axes if a.get_visible()]:
        lo, hi = ax.get_ylim()
        attack = ax.get_xlabel().split(" ")[0]
        m = means[attack]
        assert lo <= m.min() and m.max() <= hi
        assert _accuracy_axis_ok(ax), ax.get_ylim()
        for band in ax.collections:
            y = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
            assert 0 <= y.min() and y.max() <= 100
    # corruption bars: every mean inside, bars from 0
    fig = figs["corruption_bars_digits_resnet8"]
    cm = RF.corruption_frame(results).groupby(["severity", "label", "corruption"])["accuracy"].mean()
    for ax in [a for a in fig.axes if a.get_visible()]:
        lo, hi = ax.get_ylim()
        sev = int(ax.get_title().split()[-1])
        assert lo <= 0 and cm[sev].max() <= hi
    # training curves: accuracy axes from 0 or marked
    for ax in [a for a in figs["training_curves"].axes if a.get_visible()]:
        assert _accuracy_axis_ok(ax), (ax.get_title(), ax.get_ylim())


def test_density_subtitle_with_one_seed_promises_no_mean(tmp_path):
    rs = load_results(fx.write_results(tmp_path, seeds=(0,)))
    ax = DF.density_figure(rs).axes[0]
    title = ax.get_title()
    assert "1 seeds" not in title and "mean over" not in title and "one seed" in title
    assert "probes not recorded" in title                 # the fixture records no SLQ settings


def test_slq_caption_reads_the_recorded_settings(results):
    def with_hessian(**settings):
        return [r.__class__(r.path, {**r.data, "provenance": {"settings": {"hessian": settings}}})
                for r in results]
    one = DF.slq_caption(with_hessian(slq_probes=1, slq_steps=40, density_width=0.01))
    assert one.startswith("SLQ, 1 probe, 40 Lanczos steps, Gaussian broadening 1 % of the range")
    assert "noisy" in one
    three = DF.slq_caption(with_hessian(slq_probes=3, slq_steps=30))
    assert three == "SLQ, 3 probes, 30 Lanczos steps"
    mixed = with_hessian(slq_probes=3, slq_steps=30)[:3] + with_hessian(slq_probes=2,
                                                                        slq_steps=30)[3:]
    assert "probes MIXED across results (2, 3)" in DF.slq_caption(mixed)


def test_label_colors_are_distinct_for_sixteen_methods():
    from matplotlib.colors import to_rgb
    keys = [GroupKey("d", "n", m, None, "student") for m in METHOD_ORDER[:16]]
    colors = Sty.label_colors(keys)
    assert len(set(colors.values())) == 16
    rgb = np.array([to_rgb(c) for c in colors.values()])
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + 9 * np.eye(16)
    assert dist.min() > 0.1                              # not merely different strings
    # a method keeps its colour when other methods join
    assert Sty.label_colors(keys[:5]) == {k.label: colors[k.label] for k in keys[:5]}


def test_study_figures_of_notebook_03_fit_and_share_the_report_colours(reference_report):
    """Notebook 03's figures (the stored reference study): nothing cut off — the gap's y label
    included, with few measures too — and each configuration in the report's colour."""
    import json

    from flatkd.report import measures as M
    from flatkd.report import study_figures as SF
    study = json.loads((REFERENCE.parent / "study.json").read_text())
    scatter = SF.scatter_figure(study, ["hessian_trace", "adaptive_worst",
                                        "pacbayes_mag_inv_sigma_sq"])
    df = M.taus_frame(study["taus"])
    for fig in (scatter, SF.tau_figure(df, 0.95), SF.tau_figure(df.iloc[:2], 0.95)):
        assert Sty.unlabelled_axes(fig) == []
        assert _cut_off(fig) == []
    colors = _legend_colors(scatter)
    assert len(colors) == len({r["label"] for r in study["rows"]}) == 13
    assert len(set(colors.values())) == 13
    assert colors == {lab: c for lab, c in _legend_colors(
        reference_report[1]["bim_digits_resnet8"]).items()}
