"""Figures of a measures-vs-generalization study (:func:`flatkd.study.run_study`), as notebook 03
and the report show them: Kendall τ of every measure with its bootstrap interval, and each
measure against the generalization gap, one point per network.

Styling from :mod:`flatkd.report.style`: a configuration has the colour it has in the report's
other figures (:func:`~flatkd.report.style.label_colors` over the study's configurations), the
legend is wrapped to the figure's width, axis labels fit their axes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..evidence.results import GroupKey, sort_keys
from .style import CONTEXT, METHOD_COLORS, STYLE, figure_legend, label_colors, new_figure

TARGET_LABELS = {"gap": "generalization gap\n(train − test acc., pp)",
                 "test_accuracy": "test accuracy (%)"}


def tau_figure(df: pd.DataFrame, confidence: float) -> Figure:
    """Kendall τ of every measure with the gap (left) and with test accuracy (right), points
    with their bootstrap intervals, 0 marked. Reads :func:`flatkd.report.measures.taus_frame`
    columns ``measure, tau_<target>, ci_low_<target>, ci_high_<target>`` (target ``gap``,
    ``test_accuracy``); tall enough for its y label with any number of measures."""
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(2, width=5.0, height=max(3.4, 0.32 * len(df) + 1.8), sharey=True)
        y = np.arange(len(df))
        for ax, target, title in ((axes[0, 0], "gap", "with the generalization gap"),
                                  (axes[0, 1], "test_accuracy", "with test accuracy")):
            t = df[f"tau_{target}"].astype(float).to_numpy()
            lo = df[f"ci_low_{target}"].astype(float).to_numpy()
            hi = df[f"ci_high_{target}"].astype(float).to_numpy()
            # a percentile interval need not contain the point estimate: draw what it covers
            err = np.maximum(np.vstack([np.nan_to_num(t - lo), np.nan_to_num(hi - t)]), 0.0)
            ax.errorbar(t, y, xerr=err, fmt="o", color=METHOD_COLORS["online"], capsize=3)
            ax.axvline(0, color="k", lw=0.8)
            ax.set_xlim(-1.05, 1.05)
            ax.set_xticks([-1.0, -0.5, 0.0, 0.5, 1.0])
            ax.set_yticks(y)
            ax.set_yticklabels(df["measure"])
            ax.set_ylim(len(df) - 0.5, -0.5)             # first measure on top
            ax.set_xlabel(f"Kendall τ ({100 * confidence:g} % bootstrap CI)")
            ax.set_ylabel("measure\n(larger = sharper)")
            ax.set_title(title, fontsize="medium")
        fig.suptitle("Which measures track generalization?")
    return fig


def study_keys(rows: Sequence[Mapping]) -> dict[str, GroupKey]:
    """Configuration label → key, from a study's rows (``dataset, network, method, interval,
    model, label``)."""
    out = {}
    for r in rows:
        k = GroupKey(r.get("dataset", ""), r.get("network", ""), r.get("method", r["label"]),
                     r.get("interval"), r.get("model", "student"))
        out.setdefault(r["label"], k)
    return out


def scatter_figure(study: Mapping, measures: Sequence[str], target: str = "gap") -> Figure:
    """Each measure against the target (``gap`` or ``test_accuracy``, in pp / %), one point per
    network, coloured by configuration as in the report (legend in paper order), τ in the panel
    title. Reads a study dict's ``rows`` (``label``, ``measures``, ``targets`` and the
    configuration fields) and ``taus``."""
    rows = study["rows"]
    taus = {t["measure"]: t for t in study["taus"]}
    keys = study_keys(rows)
    by_key = label_colors(keys.values())
    palette = {lab: by_key[k.label] for lab, k in keys.items()}
    rank = {k: i for i, k in enumerate(sort_keys(keys.values()))}
    order = sorted(keys, key=lambda lab: rank[keys[lab]])
    scale = 100.0 if target in ("gap", "test_accuracy") else 1.0
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(len(measures), width=4.2, height=3.8, sharey=True)
        for ax, m in zip(axes[0], measures):
            for lab in order:
                pts = [(r["measures"][m], scale * r["targets"][target]) for r in rows
                       if r["label"] == lab and m in r["measures"] and target in r["targets"]]
                if pts:
                    ax.plot(*zip(*pts), "o", color=palette[lab], mec="white", mew=0.5,
                            label=lab)
            t = taus.get(m, {}).get(target, {}).get("tau")
            ax.set_title(f"{m}\nτ = {t:+.2f}" if t is not None else m, fontsize="medium")
            ax.set_xlabel(m)
            ax.set_ylabel(TARGET_LABELS.get(target, target))
        figure_legend(fig, axes.flat, order=order)
    return fig
