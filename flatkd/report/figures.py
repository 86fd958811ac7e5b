"""Seaborn figures of the report (each returned as a matplotlib ``Figure``, saved as PNG + PDF).

* :func:`perturbation_figure` — paper Fig. 4: training loss and accuracy vs the std σ of Gaussian
  noise added to the parameters; one row of panels per KD family, each non-spaced method beside
  its spaced counterpart (baseline for reference), band = ± std (over repeats and seeds) held
  to the possible range (loss ≥ 0, accuracy 0–100 %).
* :func:`training_curves_figure` — student/teacher (and self-KD exit-ensemble) test accuracy per
  epoch, mean ± std over seeds, spaced replays marked; takes plain metric rows.
* :func:`interval_figure` — accuracy vs spaced interval s (paper Fig. 2 / Table 6).

Styling is shared through :mod:`flatkd.report.style`: colours are fixed per
configuration over the results a figure is given (:func:`label_colors`, distinct for up to 16),
so a method looks the same in every figure of a report (the Hessian density is in
:mod:`flatkd.report.density_figure`); non-spaced methods are dashed, the
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

from ..evidence.results import FAMILIES, GroupKey, Result, fmt_interval, group, sort_keys
from ..evidence.selections import SELECTIONS
from .style import (CONTEXT, STYLE, accuracy_axis, clip_band, figure_legend, label_colors,
                    method_colors, method_dashes, new_figure, results_title)


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
