"""Seaborn figures of the report (each returned as a matplotlib ``Figure``, saved as PNG + PDF).

* :func:`perturbation_figure` — paper Fig. 4: training loss and accuracy vs the std σ of Gaussian
  noise added to the parameters; one row of panels per KD family, each non-spaced method beside
  its spaced counterpart (baseline for reference), band = ± std (over repeats and seeds).
* :func:`density_figure` — Hessian eigenvalue density (stochastic Lanczos quadrature), log scale,
  one line per method (mean over seeds) with thin per-seed lines.
* :func:`training_curves_figure` — student/teacher (and self-KD exit-ensemble) test accuracy per
  epoch, mean ± std over seeds, spaced replays marked; takes plain metric rows.
* :func:`interval_figure` — accuracy vs spaced interval s (paper Fig. 2 / Table 6).

Colours are fixed per method (:func:`label_colors`) so a method looks the same in every figure;
non-spaced methods are dashed, the baseline dotted. Figures are built with
``matplotlib.figure.Figure`` (no pyplot global state) so they can be made in a loop, in tests and
in notebooks alike. :func:`save_figure` refuses a figure with an unlabelled or empty axes.
Corruption and attack figures are in :mod:`flatkd.report.robustness_figures`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..io import atomic_path
from .results import COUNTERPART, FAMILIES, GroupKey, Result, fmt_interval, group, sort_keys
from .tables import SELECTIONS

STYLE = "whitegrid"
DENSITY_RANGE = 1e-7   # the density plot shows 7 decades below its highest value
CONTEXT = "notebook"

#: one colour per method (colour-blind safe, distinct hues); further configurations of a method
#: (other intervals, teacher models, unknown methods) take :data:`SPARE_COLORS` in turn.
METHOD_COLORS = {"baseline": "#4d4d4d", "online": "#0173b2", "spaced-online": "#de8f05",
                 "self": "#029e73", "spaced-self": "#cc78bc"}
SPARE_COLORS = ("#8c0f5f", "#d55e00", "#ca9161", "#56b4e9", "#1b4f2a", "#949494", "#ece133")



def label_colors(keys: Iterable[GroupKey]) -> dict[str, str]:
    """Colour per configuration label: the first configuration of a known method gets the
    method's colour, every other configuration the next spare colour."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    spare = iter(SPARE_COLORS * 4)
    for k in sort_keys(set(keys)):
        if k.label in out:
            continue
        c = METHOD_COLORS.get(k.method)
        if c is None or c in taken or k.model != "student":
            c = next(spare)
        out[k.label] = c
        taken.add(c)
    return out


def method_dashes(method: str) -> str:
    """Line style: spaced methods solid, their non-spaced counterparts dashed, baseline dotted."""
    if method == "baseline":
        return ":"
    return "--" if method in COUNTERPART.values() else "-"


DASHES = {"-": "", "--": (4, 2), ":": (1, 2)}   # seaborn's dash specs of the line styles


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.8,
                sharey: bool | str = False) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def legend_below(fig: Figure, ax, ncol: int | None = None) -> None:
    """One figure legend under the axes (readable even with many methods)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="outside lower center",
                   ncol=ncol or min(len(labels), 3), frameon=False)


def figure_legend(fig: Figure, axes: Iterable, ncol: int | None = None,
                   order: Sequence[str] = ()) -> None:
    """One legend under the figure with every distinct label of ``axes`` (first handle wins),
    labels named in ``order`` first, in that order."""
    handles: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                handles.setdefault(lab, h)
    rank = {lab: i for i, lab in enumerate(order)}
    handles = dict(sorted(handles.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=ncol or min(len(handles), 4), frameon=False)


def results_title(results: Sequence[Result]) -> str:
    cells = sorted({(r.dataset, r.network) for r in results})
    return ", ".join(f"{d} / {n}" for d, n in cells)


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
    in % (right) vs parameter-noise std σ — with the non-spaced method (dashed) beside its spaced
    counterpart (solid) and the baseline (dotted) for reference; x ticks at the σ grid."""
    df = perturbation_frame(results)
    keys = [k for k in group(results) if k.label in set(df["label"])]
    panels = family_panels(keys)
    colors = label_colors(keys)
    sigmas = sorted(df["sigma"].unique())
    xlabel = sigma_label(r for r in results if (r.flatness or {}).get("perturbation"))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(2, len(panels), width=5.4, height=3.6, sharey="col")
        for row, (title, members) in zip(axes, panels):
            for ax, q, ylabel, scale in ((row[0], "loss", "training loss (cross-entropy)", 1.0),
                                         (row[1], "acc", "training accuracy (%)", 100.0)):
                for k in members:
                    d = df[df["label"] == k.label]
                    m = d[f"{q}_mean"].to_numpy() * scale
                    s = d[f"{q}_std"].to_numpy() * scale
                    ax.plot(d["sigma"], m, marker="o", ms=4, color=colors[k.label],
                            ls=method_dashes(k.method), label=k.label)
                    ax.fill_between(d["sigma"], m - s, m + s, color=colors[k.label], alpha=0.15,
                                    lw=0)
                _sigma_ticks(ax, sigmas)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                ax.set_title(title)
            row[0].legend(loc="upper left", fontsize="small", frameon=True)
        fig.suptitle("Gaussian parameter noise (paper Fig. 4), mean ± std over noise draws "
                     f"and seeds — {results_title(results)}")
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


def density_figure(results: Sequence[Result]) -> Figure:
    """Hessian eigenvalue density (log scale, clipped ``DENSITY_RANGE`` below the highest value):
    one thick line per method (mean over seeds on a common grid), thin lines per seed."""
    grid, mean, seeds = density_frame(results)
    colors = label_colors(mean)
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(width=7.4, height=4.4)
        ax = axes[0, 0]
        top = max((float(v.max()) for v in mean.values()), default=1.0)
        floor = top * DENSITY_RANGE

        def shown(v):   # below the floor: not drawn (no pile of lines along the bottom)
            return np.where(v >= floor, v, np.nan)
        for k, m in mean.items():
            for v in seeds[k]:
                ax.plot(grid, shown(v), color=colors[k.label], alpha=0.3, lw=0.6,
                        ls=method_dashes(k.method), label="_seed")
        counts = {len(v) for v in seeds.values()}
        for k, m in mean.items():
            n = "" if len(counts) == 1 else f" ({len(seeds[k])} seeds)"
            ax.plot(grid, shown(m), color=colors[k.label], lw=2.0,
                    ls=method_dashes(k.method), label=f"{k.label}{n}")
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, top * 3)
        ax.set_xlabel("Hessian eigenvalue")
        ax.set_ylabel("spectral density (log scale)")
        seeds_text = f"{counts.pop()} seeds" if len(counts) == 1 else "seeds"
        ax.set_title(f"Hessian eigenvalue density — {results_title(results)}\nthick: mean over "
                     f"{seeds_text}; thin: each seed", fontsize="medium")
        legend_below(fig, ax, ncol=min(len(mean), 3))
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
    ensemble (dash-dot, when recorded); red dotted vertical lines at the spaced replay points."""
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
                        label=name)
                ax.fill_between(d["epoch"], d["mean"] - d["std"], d["mean"] + d["std"],
                                color=colors[name], alpha=0.2, lw=0)
            n = len(c.runs)
            ax.set_title(f"{c.label}\n{n} seed{'s' if n != 1 else ''}"
                         + (", mean ± std" if n > 1 else ""), fontsize="medium")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
        order = [name for _, name, _, _ in CURVE_SERIES] + ["spaced replay"]
        figure_legend(fig, axes.flat, order=order)
        fig.suptitle("Test accuracy during training")
    return fig


def interval_figure(df: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy (%) vs spaced interval s (paper Fig. 2 / Table 6) from
    :func:`flatkd.report.tables.interval_table` rows of one (dataset, network) cell: one panel
    per accuracy selection, one line per spaced method (mean ± std over seeds, error bars) that
    starts at its non-spaced counterpart drawn at s = 0 (open square); the baseline as a dotted
    horizontal reference."""
    if df.empty:
        raise ValueError("interval_figure needs interval_table rows")
    sels = list(dict.fromkeys(df["selection"]))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(len(sels), width=5.6, height=4.0)
        for ax, sel in zip(axes[0], sels):
            d = df[df["selection"] == sel]
            for fam, f in d.groupby("family", sort=False):
                base_m, plain_m, spaced_m = FAMILIES[fam]
                c_sp = METHOD_COLORS.get(spaced_m, SPARE_COLORS[0])
                sp = f[f["method"] == spaced_m].sort_values("interval")
                pl = f[f["method"] == plain_m]
                x = list(pl["interval"]) + list(sp["interval"])
                y = 100 * np.asarray(list(pl["mean"]) + list(sp["mean"]), dtype=float)
                e = 100 * np.nan_to_num(np.asarray(list(pl["std"]) + list(sp["std"]), dtype=float))
                ax.errorbar(x, y, yerr=e, color=c_sp, marker="o", ms=5, capsize=3,
                            label=f"{spaced_m} (s > 0)")
                if len(pl):
                    ax.plot([0.0], [100 * pl["mean"].iloc[0]], ls="none", marker="s", ms=9,
                            mfc="white", mec=METHOD_COLORS.get(plain_m, "k"), mew=2,
                            label=f"{plain_m} (s = 0)")
                bl = f[f["method"] == base_m]
                if len(bl):
                    ax.axhline(100 * bl["mean"].iloc[0], color=METHOD_COLORS["baseline"],
                               ls=":", lw=1.5, label=f"{base_m} (no KD)")
            ivals = sorted(set(d["interval"].dropna()))
            ax.set_xticks(ivals)
            ax.xaxis.set_major_formatter(lambda v, _: fmt_interval(v) if v else "0")
            ax.set_xlabel("spaced interval s (epochs)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"accuracy: {SELECTIONS[sel].label}", fontsize="medium")
        figure_legend(fig, axes.flat)
        fig.suptitle(f"Accuracy vs spaced interval (paper Fig. 2 / Table 6), mean ± std over "
                     f"seeds — {title}")
    return fig


def unlabelled_axes(fig: Figure) -> list[str]:
    """Descriptions of visible axes that lack an x or y label or draw nothing (empty = bad)."""
    bad = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        name = ax.get_title() or f"axes {i}"
        if not ax.get_xlabel() or not ax.get_ylabel():
            bad.append(f"{name}: missing axis label")
        if not (ax.lines or ax.collections or ax.patches or ax.images):
            bad.append(f"{name}: nothing drawn")
    return bad


def save_figure(fig: Figure, out_dir: str | Path, stem: str, dpi: int = 150) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically; refuse unlabelled or empty axes."""
    bad = unlabelled_axes(fig)
    if bad:
        raise ValueError(f"figure {stem!r} not saved: {'; '.join(bad)}")
    paths = []
    for ext in ("png", "pdf"):
        p = Path(out_dir) / f"{stem}.{ext}"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi)
        fig.set_layout_engine("none")  # keep the layout of the first file: same look, half the work
        paths.append(p)
    return paths


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
