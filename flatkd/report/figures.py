"""Seaborn figures of the report (each returned as a matplotlib ``Figure``, saved as PNG + PDF).

* :func:`perturbation_figure` — paper Fig. 4: training loss and accuracy vs the std σ of Gaussian
  noise added to the parameters, one line per method, band = ± std (over repeats and seeds).
* :func:`corruption_bars` / :func:`corruption_heatmap` — accuracy under image corruptions
  (Tables 5/12 as pictures).
* :func:`density_figure` — Hessian eigenvalue density (stochastic Lanczos quadrature), log scale.
* :func:`bim_figure` — accuracy vs BIM ε (in 1/255 units), ε = 0 is the clean accuracy.
* :func:`training_curves_figure` — student/teacher test accuracy per epoch, spaced replay
  boundaries as vertical lines; takes plain metric rows, so it needs no checkpoint.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state) so they can be made
in a loop, in tests and in notebooks alike. :func:`save_figure` refuses a figure with an
unlabelled or empty axes.
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
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..io import atomic_path
from .results import GroupKey, Result, group

STYLE = "whitegrid"
DENSITY_RANGE = 1e-7   # the density plot shows 7 decades below its highest value
CONTEXT = "notebook"


def _palette(labels: Sequence[str]) -> dict[str, tuple]:
    return dict(zip(labels, sns.color_palette("colorblind", n_colors=max(len(labels), 1))))


def _new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.8,
                sharey: bool = False) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def _legend_below(fig: Figure, ax, ncol: int | None = None) -> None:
    """One figure legend under the axes (readable even with many methods)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="outside lower center",
                   ncol=ncol or min(len(labels), 3), frameon=False)


def _title(results: Sequence[Result]) -> str:
    cells = sorted({(r.dataset, r.network) for r in results})
    return ", ".join(f"{d} / {n}" for d, n in cells)


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


def perturbation_figure(results: Sequence[Result]) -> Figure:
    """Fig. 4: training loss (left) and accuracy in % (right) vs parameter-noise std σ."""
    df = perturbation_frame(results)
    xlabel = sigma_label(r for r in results if (r.flatness or {}).get("perturbation"))
    labels = list(dict.fromkeys(df["label"]))
    colors = _palette(labels)
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = _new_figure(2)
        for ax, q, ylabel, scale in ((axes[0, 0], "loss", "training loss (cross-entropy)", 1.0),
                                     (axes[0, 1], "acc", "training accuracy (%)", 100.0)):
            for label in labels:
                d = df[df["label"] == label]
                m, s = d[f"{q}_mean"].to_numpy() * scale, d[f"{q}_std"].to_numpy() * scale
                ax.plot(d["sigma"], m, marker="o", ms=4, color=colors[label], label=label)
                ax.fill_between(d["sigma"], m - s, m + s, color=colors[label], alpha=0.2, lw=0)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        fig.suptitle(f"Gaussian parameter perturbation (band ± std) — {_title(results)}")
        _legend_below(fig, axes[0, 0])
    return fig


def corruption_frame(results: Iterable[Result]) -> pd.DataFrame:
    """One row per (result, corruption, severity): ``label, seed, corruption, severity, accuracy``."""
    rows = [{"label": k.label, "seed": r.seed, "corruption": c["corruption"],
             "severity": int(c["severity"]), "accuracy": 100.0 * c["accuracy"]}
            for k, rs in group(results).items() for r in rs
            for c in (r.robustness or {}).get("corruptions", [])]
    return pd.DataFrame(rows, columns=["label", "seed", "corruption", "severity", "accuracy"])


def corruption_bars(results: Sequence[Result]) -> Figure:
    """Grouped bars: accuracy (%) per corruption, one bar per method, one panel per severity.

    Bar = mean over seeds, error bar = ± std over seeds.
    """
    df = corruption_frame(results)
    sevs = sorted(df["severity"].unique())
    labels = list(dict.fromkeys(df["label"]))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = _new_figure(len(sevs), width=4.6, height=4.8, sharey=True)
        for ax, sev in zip(axes[0], sevs):
            sns.barplot(data=df[df["severity"] == sev], x="corruption", y="accuracy", hue="label",
                        hue_order=labels, palette=_palette(labels), errorbar="sd", ax=ax,
                        err_kws={"linewidth": 1})
            ax.set_title(f"severity {sev}")
            ax.set_xlabel("corruption")
            ax.set_ylabel("test accuracy (%)")
            ax.tick_params(axis="x", labelrotation=40)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
        for ax in axes[0][1:]:
            ax.get_legend().remove()
        fig.suptitle(f"Accuracy under image corruptions (mean ± std over seeds) — "
                     f"{_title(results)}")
        _legend_below(fig, axes[0, 0], ncol=min(len(labels), 5))
    return fig


def corruption_heatmap(results: Sequence[Result]) -> Figure:
    """Heatmap of accuracy (%): rows = method, columns = corruption and severity (mean over seeds)."""
    df = corruption_frame(results)
    df["column"] = df["corruption"] + " s" + df["severity"].astype(str)
    labels = list(dict.fromkeys(df["label"]))
    order = {c: i for i, c in enumerate(dict.fromkeys(df["corruption"]))}
    ranked = df.assign(rank=df["corruption"].map(order)).sort_values(["rank", "severity"])
    cols = list(dict.fromkeys(ranked["column"]))
    table = df.pivot_table(index="label", columns="column", values="accuracy", aggfunc="mean")
    table = table.reindex(index=labels, columns=cols)
    with sns.axes_style("white"), sns.plotting_context(CONTEXT):
        label_width = 0.11 * max(len(lab) for lab in labels)      # inches for the row labels
        fig, axes = _new_figure(width=max(6.0, 0.62 * len(cols) + 2.2 + label_width),
                                height=2.6 + 0.6 * len(labels))
        ax = axes[0, 0]
        sns.heatmap(table, annot=True, fmt=".1f", cmap="viridis", ax=ax,
                    annot_kws={"fontsize": 8}, cbar_kws={"label": "test accuracy (%)"})
        ax.set_xlabel("corruption and severity")
        ax.set_ylabel("method")
        ax.tick_params(axis="y", labelrotation=0)
        ax.tick_params(axis="x", labelrotation=50)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
        fig.suptitle(f"Accuracy under image corruptions — {_title(results)}")
    return fig


def density_figure(results: Sequence[Result]) -> Figure:
    """Hessian eigenvalue density (log scale, clipped ``DENSITY_RANGE`` below the highest value);
    one line per result, coloured by method."""
    keyed = [(k, r) for k, rs in group(results).items() for r in rs
             if ((r.flatness or {}).get("hessian") or {}).get("density")]
    labels = list(dict.fromkeys(k.label for k, _ in keyed))
    colors = _palette(labels)
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = _new_figure(width=7.0, height=4.2)
        ax = axes[0, 0]
        shown = set()
        top = max((max(r.flatness["hessian"]["density"]["values"]) for _, r in keyed), default=1.0)
        floor = top * DENSITY_RANGE
        for k, r in keyed:
            d = r.flatness["hessian"]["density"]
            vals = np.clip(np.asarray(d["values"], dtype=float), floor, None)
            ax.plot(d["grid"], vals, color=colors[k.label], alpha=0.8, lw=1.2,
                    label=None if k.label in shown else k.label)
            shown.add(k.label)
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, top * 3)
        ax.set_xlabel("Hessian eigenvalue")
        ax.set_ylabel("spectral density (log scale)")
        ax.set_title(f"Hessian eigenvalue density, one line per seed — {_title(results)}")
        _legend_below(fig, ax)
    return fig


def bim_frame(results: Iterable[Result]) -> pd.DataFrame:
    """One row per (result, ε): ``label, seed, epsilon_255, accuracy`` (%); ε = 0 is clean accuracy."""
    rows = []
    for k, rs in group(results).items():
        for r in rs:
            rob = r.robustness or {}
            adv = [a for a in rob.get("adversarial", []) if a.get("attack", "BIM") == "BIM"]
            if not adv:
                continue
            if rob.get("clean_accuracy") is not None:
                rows.append({"label": k.label, "seed": r.seed, "epsilon_255": 0.0,
                             "accuracy": 100.0 * rob["clean_accuracy"]})
            rows += [{"label": k.label, "seed": r.seed, "epsilon_255": 255.0 * a["epsilon"],
                      "accuracy": 100.0 * a["accuracy"]} for a in adv]
    return pd.DataFrame(rows, columns=["label", "seed", "epsilon_255", "accuracy"])


def bim_figure(results: Sequence[Result]) -> Figure:
    """Accuracy (%) vs BIM ε (× 1/255); line = mean over seeds, band = ± std over seeds."""
    df = bim_frame(results)
    labels = list(dict.fromkeys(df["label"]))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = _new_figure(width=6.4, height=4.4)
        ax = axes[0, 0]
        sns.lineplot(data=df, x="epsilon_255", y="accuracy", hue="label", hue_order=labels,
                     palette=_palette(labels), errorbar="sd", marker="o", ax=ax)
        ax.set_xlabel("BIM ε (× 1/255, L∞); 0 = clean")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Adversarial robustness (BIM) — {_title(results)}")
        _legend_below(fig, ax)
    return fig


@dataclass(frozen=True)
class Curve:
    """Training history of one run: ``rows`` as ``ck.metrics`` (epoch, student_test_acc,
    teacher_test_acc or None, ...) and the spaced replay boundaries in epochs."""

    label: str
    rows: Sequence[Mapping]
    boundaries: Sequence[float] = field(default_factory=tuple)


def training_curves_figure(curves: Sequence[Curve], max_cols: int = 3) -> Figure:
    """Test accuracy (%) per epoch, one panel per run: student solid, teacher dashed (when it
    exists), grey dotted vertical lines at the spaced interval boundaries."""
    if not curves:
        raise ValueError("training_curves_figure needs at least one curve")
    ncols = min(max_cols, len(curves))
    nrows = math.ceil(len(curves) / ncols)
    colors = sns.color_palette("colorblind", 2)
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = _new_figure(ncols, nrows, width=4.6, height=3.4, sharey=True)
        for i, ax in enumerate(axes.flat):
            if i >= len(curves):
                ax.set_visible(False)
                continue
            c = curves[i]
            ep = [r["epoch"] for r in c.rows]
            for j, b in enumerate(c.boundaries):
                ax.axvline(b, color="#b0413e", alpha=0.8, ls=":", lw=1.5,
                           label="spaced replay boundary" if j == 0 else None)
            ax.plot(ep, [100.0 * r["student_test_acc"] for r in c.rows], color=colors[0],
                    marker="o", ms=3, label="student")
            t = [(e, r.get("teacher_test_acc")) for e, r in zip(ep, c.rows)
                 if r.get("teacher_test_acc") is not None]
            if t:
                ax.plot([e for e, _ in t], [100.0 * a for _, a in t], color=colors[1], ls="--",
                        marker="s", ms=3, label="teacher")
            ax.set_title(c.label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
        handles: dict[str, object] = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=len(handles), frameon=False)
        fig.suptitle("Test accuracy during training")
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
