"""Seaborn figures of the report (each returned as a matplotlib ``Figure``, saved as PNG + PDF).

* :func:`perturbation_figure` — paper Fig. 4: training loss and accuracy vs the std σ of Gaussian
  noise added to the parameters; one row of panels per KD family, each non-spaced method beside
  its spaced counterpart (baseline for reference), band = ± std (over repeats and seeds) held
  to the possible range (loss ≥ 0, accuracy 0–100 %).
* :func:`density_figure` — Hessian eigenvalue density (stochastic Lanczos quadrature), log scale,
  one line per method (mean over seeds) with thin per-seed lines, each seed's top eigenvalue
  marked on its line and the flatness table's mean top eigenvalue on the x axis; the y range
  is fitted so that every marked point shows; the title says how the densities were estimated.
* :func:`training_curves_figure` — student/teacher (and self-KD exit-ensemble) test accuracy per
  epoch, mean ± std over seeds, spaced replays marked; takes plain metric rows.
* :func:`interval_figure` — accuracy vs spaced interval s (paper Fig. 2 / Table 6).

Styling is shared through :mod:`flatkd.report.style` (re-exported here): colours are fixed per
configuration over the results a figure is given (:func:`label_colors`, distinct for up to 16),
so a method looks the same in every figure of a report; non-spaced methods are dashed, the
baseline dotted; accuracy axes start at 0 or carry a break mark; legends are wrapped to the
figure's width. Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state) so
they can be made in a loop, in tests and in notebooks alike. :func:`save_figure` refuses a
figure with an unlabelled or empty axes. Corruption and attack figures are in
:mod:`flatkd.report.robustness_figures`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .results import FAMILIES, GroupKey, Result, fmt_interval, group, sort_keys
from .style import (CONTEXT, DASHES, METHOD_COLORS, PALETTE, SPARE_COLORS, STYLE,  # noqa: F401
                    accuracy_axis, clip_band, figure_legend, fit_legend, label_colors,
                    legend_below, mark_axis_break, method_colors, method_dashes, new_figure,
                    palette, results_title, save_figure, unlabelled_axes)
from .tables import SELECTIONS

DENSITY_RANGE = 1e-7   # the density plot shows at least 7 decades below its highest value


def family_panels(keys: Iterable[GroupKey]) -> list[tuple[str, list[GroupKey]]]:
    """Panels of "each non-spaced method beside its spaced counterpart": one per KD family
    present (``"online vs spaced-online"``: the baseline for reference, the non-spaced method
    and every spaced interval), then ``"other methods"`` for what no family holds."""
    keys = sort_keys(set(keys))
    base = [k for k in keys if k.method == "baseline"]
    panels, used = [], set()
    for _, (_, plain, spaced) in FAMILIES.items():
        members = [k for k in keys if k.method in (plain, spaced)]
        if members:
            panels.append((f"{plain} vs {spaced}", sort_keys(base + members)))
            used |= set(base) | set(members)
    rest = [k for k in keys if k not in used]
    if rest:
        panels.append(("other methods" if panels else "methods", rest))
    return panels


def perturbation_frame(results: Iterable[Result]) -> pd.DataFrame:
    """One row per (configuration, σ): ``label, sigma, loss_mean, loss_std, acc_mean, acc_std``.

    Seeds are pooled by the law of total variance: mean of the seed means, and
    std = sqrt(mean of within-seed variances + variance of the seed means (ddof = 0)).
    """
    rows = []
    for key, rs in group(results).items():
        per_sigma: dict[float, list[dict]] = {}
        for r in rs:
            for p in (r.flatness or {}).get("perturbation", []):
                per_sigma.setdefault(float(p["sigma"]), []).append(p)
        for sigma in sorted(per_sigma):
            ps = per_sigma[sigma]
            row = {"label": key.label, "sigma": sigma, "seeds": len(ps)}
            for q in ("loss", "acc"):
                means = np.array([p[f"{q}_mean"] for p in ps], dtype=float)
                var = np.array([(p.get(f"{q}_std") or 0.0) ** 2 for p in ps], dtype=float)
                row[f"{q}_mean"] = float(means.mean())
                row[f"{q}_std"] = float(math.sqrt(var.mean() + means.var()))
            rows.append(row)
    return pd.DataFrame(rows, columns=["label", "sigma", "seeds", "loss_mean", "loss_std",
                                       "acc_mean", "acc_std"])


SIGMA_LABELS = {"absolute": "parameter noise std σ (θ + N(0, σ²))",
                "filter": "relative noise σ (filter-normalised, Li et al. 2018)"}


def sigma_label(results: Iterable[Result]) -> str:
    """x label of Fig. 4 from the perturbation mode recorded in the results' provenance."""
    modes = sorted({str(((r.data.get("provenance") or {}).get("settings") or {})
                        .get("perturbation", {}).get("mode", "absolute")) for r in results})
    if len(modes) == 1:
        return SIGMA_LABELS.get(modes[0], f"noise σ ({modes[0]})")
    return f"noise σ — results mix perturbation modes {', '.join(modes)}!"


def _sigma_ticks(ax, sigmas: Sequence[float]) -> None:
    """x ticks exactly at the σ grid; labels slanted when there are more than four."""
    ax.set_xticks(list(sigmas))
    ax.set_xticklabels([f"{v:g}" for v in sigmas])
    if len(sigmas) > 4:
        for t in ax.get_xticklabels():
            t.set(rotation=45, horizontalalignment="right", rotation_mode="anchor")


def perturbation_figure(results: Sequence[Result]) -> Figure:
    """Fig. 4 as the paper draws it: per KD family one row — training loss (left) and accuracy
    in % (right, axis from 0) vs parameter-noise std σ — with the non-spaced method (dashed)
    beside its spaced counterpart (solid) and the baseline (dotted) for reference; x ticks at
    the σ grid. Reads ``flatness.perturbation`` (:func:`perturbation_frame`); bands are
    mean ± std clipped to the possible range (loss ≥ 0, accuracy in [0, 100] %)."""
    df = perturbation_frame(results)
    keys = [k for k in group(results) if k.label in set(df["label"])]
    panels = family_panels(keys)
    colors = label_colors(group(results))          # every configuration: same as other figures
    sigmas = sorted(df["sigma"].unique())
    xlabel = sigma_label(r for r in results if (r.flatness or {}).get("perturbation"))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(2, len(panels), width=5.4, height=3.6, sharey="col")
        for row, (title, members) in zip(axes, panels):
            for ax, q, ylabel, scale, high in (
                    (row[0], "loss", "training loss (cross-entropy)", 1.0, None),
                    (row[1], "acc", "training accuracy (%)", 100.0, 100.0)):
                for k in members:
                    d = df[df["label"] == k.label]
                    m = d[f"{q}_mean"].to_numpy() * scale
                    s = d[f"{q}_std"].to_numpy() * scale
                    ax.plot(d["sigma"], m, marker="o", ms=4, color=colors[k.label],
                            ls=method_dashes(k.method), label=k.label, clip_on=False)
                    ax.fill_between(d["sigma"], *clip_band(m - s, m + s, 0.0, high),
                                    color=colors[k.label], alpha=0.15, lw=0)
                _sigma_ticks(ax, sigmas)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                ax.set_title(title)
            row[0].legend(loc="upper left", fontsize="small", frameon=True)
        axes[0, 0].set_ylim(bottom=0.0)           # shared per column: after every row is drawn
        accuracy_axis(axes[0, 1])
        fig.suptitle("Gaussian parameter noise (paper Fig. 4), mean ± std over noise draws "
                     f"and seeds — {results_title(results)}\nbands clipped to the possible "
                     "range (loss ≥ 0, accuracy 0–100 %)")
    return fig


def density_frame(results: Sequence[Result]) -> tuple[np.ndarray, dict[GroupKey, np.ndarray],
                                                      dict[GroupKey, list[np.ndarray]]]:
    """Hessian densities on one common eigenvalue grid (the union of every result's grid;
    each density is linearly interpolated, 0 outside its own grid): ``(grid, {key: mean over
    seeds}, {key: [per-seed densities]})``."""
    keyed = [(k, r.flatness["hessian"]["density"]) for k, rs in group(results).items()
             for r in rs if ((r.flatness or {}).get("hessian") or {}).get("density")]
    if not keyed:
        return np.zeros(0), {}, {}
    grid = np.unique(np.concatenate([np.asarray(d["grid"], dtype=float) for _, d in keyed]))
    seeds: dict[GroupKey, list[np.ndarray]] = {}
    for k, d in keyed:
        seeds.setdefault(k, []).append(np.interp(grid, np.asarray(d["grid"], dtype=float),
                                                 np.asarray(d["values"], dtype=float),
                                                 left=0.0, right=0.0))
    return grid, {k: np.mean(v, axis=0) for k, v in seeds.items()}, seeds


def slq_caption(results: Sequence[Result]) -> str:
    """How the densities of ``results`` were estimated, from what each result recorded:
    ``provenance.settings.hessian`` ``slq_probes``, ``slq_steps`` and ``density_width``, and
    ``flatness.hessian.lanczos_steps`` (native backend: the shared Lanczos run, which is the
    first probe), e.g. ``SLQ, 1 probe, 40 Lanczos steps, Gaussian broadening 1 % of the
    range`` (with one probe a second line says what that means); mixed values are listed as
    MIXED, missing ones said to be not recorded."""
    rs = [r for r in results if ((r.flatness or {}).get("hessian") or {}).get("density")]
    cfg = [(((r.data.get("provenance") or {}).get("settings") or {}).get("hessian") or {})
           for r in rs]

    def values(got: list) -> list | None:
        return None if not got or any(v is None for v in got) else sorted(set(got))

    def fmt(vals: list, noun: str) -> str:
        if len(vals) == 1:
            return f"{vals[0]:g} {noun}" + ("s" if vals[0] != 1 else "")
        return f"{noun}s MIXED across results ({', '.join(f'{v:g}' for v in vals)})"
    probes = values([c.get("slq_probes") for c in cfg])
    steps = values([c.get("slq_steps") for c in cfg])
    shared = values([r.flatness["hessian"].get("lanczos_steps") for r in rs])
    width = values([c.get("density_width") for c in cfg])
    parts = ["SLQ, " + (fmt(probes, "probe") if probes else "probes not recorded")]
    if probes == [1] and shared:                    # the only probe is the shared run
        parts.append(fmt(shared, "Lanczos step"))
    elif steps:
        parts.append(fmt(steps, "Lanczos step")
                     + (f" (first probe: {fmt(shared, 'step')})" if shared and shared != steps
                        else ""))
    else:
        parts.append("Lanczos steps not recorded")
    if width is not None and len(width) == 1:
        parts.append(f"Gaussian broadening {100 * width[0]:g} % of the range")
    text = ", ".join(parts)
    if probes == [1]:
        text += "\n(1 probe: one random start vector per seed, so the weights are noisy)"
    return text


def density_points(results: Sequence[Result]) -> dict[GroupKey, list[tuple[float, float] | None]]:
    """Per configuration, per seed with a density (in :func:`density_frame`'s order):
    ``(λ_max, density at λ_max)`` — λ_max the largest of ``flatness.hessian.top_eigenvalues``
    (the flatness table's top eigenvalue), the density that seed's ``flatness.hessian.density``
    linearly interpolated there; ``None`` for a seed without top eigenvalues."""
    out: dict[GroupKey, list[tuple[float, float] | None]] = {}
    for k, rs in group(results).items():
        for r in rs:
            h = (r.flatness or {}).get("hessian") or {}
            if not h.get("density"):
                continue
            point = None
            if h.get("top_eigenvalues"):
                lam = float(max(h["top_eigenvalues"]))
                point = (lam, float(np.interp(lam, np.asarray(h["density"]["grid"], dtype=float),
                                              np.asarray(h["density"]["values"], dtype=float),
                                              left=0.0, right=0.0)))
            out.setdefault(k, []).append(point)
    return out


def density_floor(grid: np.ndarray, mean: Mapping, seeds: Mapping, points: Mapping) -> float:
    """Lowest density drawn: :data:`DENSITY_RANGE` below the highest value, or lower — a third
    of the smallest density at any seed's λ_max (and at the grid points around it) on that
    seed's line and on its method's mean line, so every top eigenvalue shows."""
    top = max((float(v.max()) for v in mean.values()), default=1.0)
    near = []
    for k, pts in points.items():
        for p, v in zip(pts, seeds[k]):
            if p is None:
                continue
            i = int(np.clip(np.searchsorted(grid, p[0]), 1, len(grid) - 1))
            near += [p[1], *mean[k][i - 1:i + 1], *v[i - 1:i + 1]]
    near = [x for x in near if x > 0]
    return min(top * DENSITY_RANGE, min(near, default=top) / 3.0)


def density_figure(results: Sequence[Result]) -> Figure:
    """Hessian eigenvalue density (log scale): one thick line per method (mean over its seeds
    on a common grid, :func:`density_frame`), thin lines per seed (when a method has several),
    a dot on each seed's line at its λ_max (:func:`density_points`) and a triangle on the x
    axis at the method's mean λ_max — the flatness table's value. The y range reaches below the
    smallest marked density (:func:`density_floor`; lower densities are not drawn, the title
    says from where), the x range covers every grid and λ_max. Reads
    ``flatness.hessian.{density, top_eigenvalues}`` and the SLQ settings (:func:`slq_caption`)."""
    from matplotlib.lines import Line2D
    grid, mean, seeds = density_frame(results)
    points = density_points(results)
    colors = label_colors(group(results))          # every configuration: same as other figures
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(width=8.4, height=4.6)
        ax = axes[0, 0]
        top = max((float(v.max()) for v in mean.values()), default=1.0)
        floor = density_floor(grid, mean, seeds, points)

        def shown(v):   # below the floor: not drawn (no pile of lines along the bottom)
            return np.where(v >= floor, v, np.nan)
        for k, m in mean.items():
            if len(seeds[k]) > 1:
                for v in seeds[k]:
                    ax.plot(grid, shown(v), color=colors[k.label], alpha=0.3, lw=0.6,
                            ls=method_dashes(k.method), label="_seed")
        counts = {len(v) for v in seeds.values()}
        for k, m in mean.items():
            n = len(seeds[k])
            n_text = "" if len(counts) == 1 else f" ({n} seed{'s' if n != 1 else ''})"
            ax.plot(grid, shown(m), color=colors[k.label], lw=2.0,
                    ls=method_dashes(k.method), label=f"{k.label}{n_text}")
        points = {k: [p for p in pts if p is not None] for k, pts in points.items()}
        points = {k: pts for k, pts in points.items() if pts}
        lams = [lam for pts in points.values() for lam, _ in pts]
        for k, pts in points.items():
            ax.plot([lam for lam, _ in pts], [d for _, d in pts], ls="none", marker="o", ms=4.5,
                    mfc=colors[k.label], mec="white", mew=0.6, label="_lambda_max", zorder=5)
            ax.plot([np.mean([lam for lam, _ in pts])], [0.0], ls="none", marker="^", ms=8,
                    color=colors[k.label], mec="k", mew=0.6, clip_on=False, zorder=6,
                    transform=ax.get_xaxis_transform(), label="_mean_lambda_max")
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, top * 3)
        lo, hi = min([grid.min(), *lams], default=0.0), max([grid.max(), *lams], default=1.0)
        pad = 0.02 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel("Hessian eigenvalue")
        ax.set_ylabel("spectral density (log scale)")
        if counts == {1}:
            seeds_text = "one seed per method"
        elif len(counts) == 1:
            seeds_text = f"thick: mean over {next(iter(counts))} seeds; thin: each seed"
        else:
            seeds_text = "thick: mean over each method's seeds (number in the legend); thin: each seed"
        ax.set_title(f"Hessian eigenvalue density — {results_title(results)}\n"
                     f"{slq_caption(results)}\n{seeds_text}; densities < {floor:.0e} not drawn",
                     fontsize="small")
        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], ls="none", marker="o", ms=5, color="#666666"),
                    Line2D([], [], ls="none", marker="^", ms=7, color="#666666", mec="k")]
        labels += ["λ_max of a seed (top Lanczos eigenvalue)",
                   "λ_max (flatness table)" if counts == {1} else
                   "mean λ_max over seeds (flatness table)"]
        fit_legend(fig, handles, labels, ncol=3, fontsize="small")
    return fig


@dataclass(frozen=True)
class Curve:
    """Training history of one configuration: ``runs`` holds one list of per-epoch metric rows
    (keys as ``ck.metrics``: epoch, student_test_acc, teacher_test_acc or None,
    ensemble_test_acc, ...) per seed; ``boundaries`` are the spaced replay points in epochs."""

    label: str
    runs: Sequence[Sequence[Mapping]]
    boundaries: Sequence[float] = field(default_factory=tuple)


#: series of a training-curve panel: metric column, legend label, line style, marker.
CURVE_SERIES = (("student_test_acc", "student", "-", "o"),
                ("teacher_test_acc", "teacher", "--", "s"),
                ("ensemble_test_acc", "exit ensemble (self KD)", "-.", "^"))


def curve_frame(curve: Curve) -> pd.DataFrame:
    """``epoch, series, mean, std, n`` (accuracy in %) of a curve's series over its seeds; std
    is the sample std (ddof = 1; 0 for one seed). Series absent from every row are left out."""
    rows = []
    for col, name, _, _ in CURVE_SERIES:
        per_epoch: dict[float, list[float]] = {}
        for run in curve.runs:
            for r in run:
                v = r.get(col)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    per_epoch.setdefault(r["epoch"], []).append(100.0 * v)
        for e in sorted(per_epoch):
            v = np.asarray(per_epoch[e])
            rows.append({"epoch": e, "series": name, "mean": float(v.mean()),
                         "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)})
    return pd.DataFrame(rows, columns=["epoch", "series", "mean", "std", "n"])


def training_curves_figure(curves: Sequence[Curve], max_cols: int = 3) -> Figure:
    """Test accuracy (%) per epoch, one panel per configuration: mean over seeds (line) ± std
    (band) of the student (solid), the teacher (dashed, when it exists) and the self-KD exit
    ensemble (dash-dot, when recorded); red dotted vertical lines at the spaced replay points.
    Accuracy axes from 0; bands clipped to [0, 100] %."""
    if not curves:
        raise ValueError("training_curves_figure needs at least one curve")
    ncols = min(max_cols, len(curves))
    nrows = math.ceil(len(curves) / ncols)
    colors = dict(zip([s[1] for s in CURVE_SERIES], sns.color_palette("colorblind", 3)))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(ncols, nrows, width=4.6, height=3.5, sharey=True)
        for i, ax in enumerate(axes.flat):
            if i >= len(curves):
                ax.set_visible(False)
                continue
            c = curves[i]
            df = curve_frame(c)
            for j, b in enumerate(c.boundaries):
                ax.axvline(b, color="#b0413e", alpha=0.8, ls=":", lw=1.5,
                           label="spaced replay" if j == 0 else None)
            for col, name, ls, marker in CURVE_SERIES:
                d = df[df["series"] == name]
                if d.empty:
                    continue
                ax.plot(d["epoch"], d["mean"], color=colors[name], ls=ls, marker=marker, ms=3,
                        label=name, clip_on=False)
                ax.fill_between(d["epoch"], *clip_band(d["mean"] - d["std"],
                                                       d["mean"] + d["std"], 0.0, 100.0),
                                color=colors[name], alpha=0.2, lw=0)
            n = len(c.runs)
            ax.set_title(f"{c.label}\n{n} seed{'s' if n != 1 else ''}"
                         + (", mean ± std" if n > 1 else ""), fontsize="medium")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
            accuracy_axis(ax)
        order = [name for _, name, _, _ in CURVE_SERIES] + ["spaced replay"]
        figure_legend(fig, axes.flat, order=order)
        fig.suptitle("Test accuracy during training")
    return fig


def interval_figure(df: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy (%) vs spaced interval s (paper Fig. 2 / Table 6) from
    :func:`flatkd.report.tables.interval_table` rows of one (dataset, network) cell: one panel
    per accuracy selection, one line per spaced method (mean ± std over seeds, error bars) that
    starts at its non-spaced counterpart drawn at s = 0 (open square); the baseline as a dotted
    horizontal reference. Colours per method from :func:`method_colors`; the accuracy axis is
    fitted to the data and, not starting at 0, carries a break mark."""
    if df.empty:
        raise ValueError("interval_figure needs interval_table rows")
    sels = list(dict.fromkeys(df["selection"]))
    colors = method_colors(GroupKey(r.dataset, r.network, r.method,
                                    r.interval if r.interval == r.interval and r.interval else None,
                                    "student") for r in df.itertuples())
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(len(sels), width=5.6, height=4.0)
        for ax, sel in zip(axes[0], sels):
            d = df[df["selection"] == sel]
            for fam, f in d.groupby("family", sort=False):
                base_m, plain_m, spaced_m = FAMILIES[fam]
                c_sp = colors[spaced_m]
                sp = f[f["method"] == spaced_m].sort_values("interval")
                pl = f[f["method"] == plain_m]
                x = list(pl["interval"]) + list(sp["interval"])
                y = 100 * np.asarray(list(pl["mean"]) + list(sp["mean"]), dtype=float)
                e = 100 * np.nan_to_num(np.asarray(list(pl["std"]) + list(sp["std"]), dtype=float))
                ax.errorbar(x, y, yerr=e, color=c_sp, marker="o", ms=5, capsize=3,
                            label=f"{spaced_m} (s > 0)")
                if len(pl):
                    ax.plot([0.0], [100 * pl["mean"].iloc[0]], ls="none", marker="s", ms=9,
                            mfc="white", mec=colors.get(plain_m, "k"), mew=2,
                            label=f"{plain_m} (s = 0)")
                bl = f[f["method"] == base_m]
                if len(bl):
                    ax.axhline(100 * bl["mean"].iloc[0], color=colors.get(base_m, "k"),
                               ls=":", lw=1.5, label=f"{base_m} (no KD)")
            ivals = sorted(set(d["interval"].dropna()))
            ax.set_xticks(ivals)
            ax.xaxis.set_major_formatter(lambda v, _: fmt_interval(v) if v else "0")
            ax.set_xlabel("spaced interval s (epochs)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"accuracy: {SELECTIONS[sel].label}", fontsize="medium")
            accuracy_axis(ax, truncate=True)
        figure_legend(fig, axes.flat)
        fig.suptitle(f"Accuracy vs spaced interval (paper Fig. 2 / Table 6), mean ± std over "
                     f"seeds — {title}")
    return fig


def cell_results(results: Iterable[Result]) -> dict[tuple[str, str], list[Result]]:
    """Results per (dataset, network) cell — one set of figures per cell."""
    out: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        out.setdefault((r.dataset, r.network), []).append(r)
    return dict(sorted(out.items()))


def keys_with(results: Iterable[Result], section: str, field_name: str) -> list[GroupKey]:
    """Configurations where some result has ``data[section][field_name]`` non-empty."""
    return [k for k, rs in group(results).items()
            if any((r.data.get(section) or {}).get(field_name) for r in rs)]
