"""The shared look of every report figure (and of the notebooks' figures).

* colours: :func:`label_colors` — one colour per configuration, distinct for up to 16 (the
  curated :data:`PALETTE`: the five paper methods keep fixed colour-blind-safe colours, further
  methods take the next colour in turn; beyond 20, evenly spaced husl hues). Colours are
  assigned over the configurations passed, in paper order: a figure passes every configuration
  of its results (not only those it draws), so in one report a method has one colour in every
  figure;
* line styles: :func:`method_dashes` (spaced solid, non-spaced dashed, baseline dotted);
* figures: :func:`new_figure` (constrained layout, no pyplot state), :func:`fit_legend` and its
  wrappers :func:`legend_below` / :func:`figure_legend` (a legend under the axes, wrapped into
  as many columns as fit the figure's width), :func:`accuracy_axis` (from 0, or truncated with
  a visible break mark), :func:`clip_band` (a mean ± std band held to a quantity's range);
* :func:`not_converged_note`: a footnote naming the drawn runs that have not converged;
* :func:`save_figure`: PNG + PDF, tight bounding box (nothing cut off), refusing unlabelled or
  empty axes (:func:`unlabelled_axes`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..evidence.results import COUNTERPART, GroupKey, Result, sort_keys
from ..io import atomic_path

STYLE = "whitegrid"
CONTEXT = "notebook"

#: the paper's methods keep these colours (seaborn "colorblind").
METHOD_COLORS = {"baseline": "#4d4d4d", "online": "#0173b2", "spaced-online": "#de8f05",
                 "self": "#029e73", "spaced-self": "#cc78bc"}
#: further configurations (other methods, other intervals, teachers) take these in turn: picked
#: greedily for the largest smallest CIEDE2000 distance to the colours picked before (≥ 16.7
#: between any two of the first 16 of :data:`PALETTE`, ≥ 15.5 over all 20), none too light for
#: a line on white, the more saturated ones first.
SPARE_COLORS = ("#d62728", "#8c0f5f", "#8db600", "#604e97", "#a6cee3", "#1b4f2a", "#c49c94",
                "#654522", "#d55e00", "#c2b280", "#003f5c", "#f7b6d2", "#882d17", "#000000",
                "#7f7f7f")
PALETTE = (*METHOD_COLORS.values(), *SPARE_COLORS)


def palette(n: int) -> list[str]:
    """``n`` distinct colours: the first ``n`` of :data:`PALETTE`, then evenly spaced husl hues."""
    more = max(0, n - len(PALETTE))
    extra = [to_hex(c) for c in sns.husl_palette(more, l=0.55)] if more else []
    return list(PALETTE[:n]) + extra


def label_colors(keys: Iterable[GroupKey]) -> dict[str, str]:
    """Colour per configuration label, over ``keys`` in paper order: the first (student)
    configuration of a paper method gets :data:`METHOD_COLORS`, every other configuration the
    next unused colour of :func:`palette`. Distinct for every label."""
    keys = sort_keys(set(keys))
    out: dict[str, str] = {}
    fixed = {}
    for k in keys:                      # which configuration owns a fixed colour
        if k.model == "student" and k.method in METHOD_COLORS:
            fixed.setdefault(k.method, k.label)
    owners = {lab: METHOD_COLORS[m] for m, lab in fixed.items()}
    reserved = set(METHOD_COLORS.values())    # kept for the paper methods even when absent
    spare = iter(c for c in palette(len(keys) + len(reserved)) if c not in reserved)
    for k in keys:
        if k.label not in out:
            out[k.label] = owners.get(k.label) or next(spare)
    return out


def method_colors(keys: Iterable[GroupKey]) -> dict[str, str]:
    """Colour per method: the colour :func:`label_colors` gives its first configuration."""
    keys = sort_keys(set(keys))
    colors = label_colors(keys)
    out: dict[str, str] = {}
    for k in keys:
        out.setdefault(k.method, colors[k.label])
    return out


def method_dashes(method: str) -> str:
    """Line style: spaced methods solid, their non-spaced counterparts dashed, baseline dotted."""
    if method == "baseline":
        return ":"
    return "--" if method in COUNTERPART.values() else "-"


DASHES = {"-": "", "--": (4, 2), ":": (1, 2)}   # seaborn's dash specs of the line styles


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.8,
               sharey: bool | str = False) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure of ``nrows × ncols`` axes (each ``width × height`` inches)
    with an Agg canvas (legends can be measured before saving)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def _renderer(fig: Figure):
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if get is not None else FigureCanvasAgg(fig).get_renderer()


def fit_legend(fig: Figure, handles: Sequence, labels: Sequence[str], ncol: int | None = None,
               max_ncol: int = 6, **kwargs):
    """A figure legend under the axes (``loc="outside lower center"``: constrained layout makes
    room for it) with as many columns as fit the figure's width — at most ``ncol`` (default
    ``min(len(labels), max_ncol)``), rows balanced. ``None`` without handles."""
    if not handles:
        return None
    n = len(labels)
    renderer = _renderer(fig)
    kwargs.setdefault("frameon", False)
    for cols in range(min(ncol or max_ncol, n), 0, -1):
        cols = -(-n // -(-n // cols))                   # same rows, balanced columns
        legend = fig.legend(list(handles), list(labels), loc="outside lower center", ncol=cols,
                            **kwargs)
        if cols == 1 or legend.get_window_extent(renderer).width <= 0.97 * fig.bbox.width:
            return legend
        legend.remove()
    return None


def legend_below(fig: Figure, ax, ncol: int | None = None) -> None:
    """One figure legend under the figure with the handles of ``ax`` (its own legend removed),
    wrapped to the figure's width (:func:`fit_legend`)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fit_legend(fig, handles, labels, ncol=ncol)


def figure_legend(fig: Figure, axes: Iterable, ncol: int | None = None,
                  order: Sequence[str] = ()) -> None:
    """One legend under the figure with every distinct label of ``axes`` (first handle wins),
    labels named in ``order`` first, in that order; wrapped to the figure's width."""
    handles: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                handles.setdefault(lab, h)
    rank = {lab: i for i, lab in enumerate(order)}
    handles = dict(sorted(handles.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    fit_legend(fig, list(handles.values()), list(handles), ncol=ncol)


def clip_band(lower, upper, low: float | None = 0.0, high: float | None = None):
    """A mean ± std band held to the quantity's range (a loss ≥ 0, an accuracy in [0, 100])."""
    lo = np.asarray(lower, dtype=float)
    hi = np.asarray(upper, dtype=float)
    return np.clip(lo, low, high), np.clip(hi, low, high)


def mark_axis_break(ax, where: float = 0.025) -> None:
    """Two slanted strokes across the left spine near the bottom: the y axis does not start at
    0 (the artists carry gid ``axis-break``)."""
    for dy in (-0.012, 0.012):
        ax.add_artist(Line2D([-0.018, 0.018], [where + dy - 0.01, where + dy + 0.01],
                             transform=ax.transAxes, color="k", lw=1.2, clip_on=False,
                             zorder=10, gid="axis-break"))


def accuracy_axis(ax, truncate: bool = False, top: float = 100.0) -> None:
    """y axis of an accuracy in %: from 0 to a little above ``top``; with ``truncate`` the
    autoscaled limits stay and, when they do not start at 0, :func:`mark_axis_break` marks it."""
    if not truncate:
        ax.set_ylim(0.0, top * 1.03)
    elif ax.get_ylim()[0] > 0:
        mark_axis_break(ax)


def results_title(results: Sequence[Result]) -> str:
    """``dataset / network`` of every cell of the results."""
    cells = sorted({(r.dataset, r.network) for r in results})
    return ", ".join(f"{d} / {n}" for d, n in cells)


def not_converged_note(fig: Figure, stale: Sequence[str], limit: int = 6) -> Figure:
    """``fig`` with a footnote naming the runs it draws that have not converged (``stale``:
    :func:`~flatkd.evidence.convergence.not_converged`'s ``"method seed N (why)"``; their points
    give no verdict); unchanged when there are none. Returns ``fig``."""
    if stale:
        import re
        import textwrap
        names = [re.sub(r"^(.* seed \S+) \(.*$", r"\1", s) for s in stale]   # reason dropped
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
        text = f"† not converged (see the runs table; no verdict from these points): {shown}"
        fig.text(0.01, 0.0, textwrap.fill(text, 110), ha="left", va="top", fontsize=7,
                 color="#a00000")
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
    """Write ``stem.png`` and ``stem.pdf`` atomically with a tight bounding box around every
    artist (figure legends and titles included: nothing is cut off); refuse unlabelled or
    empty axes."""
    bad = unlabelled_axes(fig)
    if bad:
        raise ValueError(f"figure {stem!r} not saved: {'; '.join(bad)}")
    paths = []
    for ext in ("png", "pdf"):
        p = Path(out_dir) / f"{stem}.{ext}"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight", pad_inches=0.06)
        fig.set_layout_engine("none")  # keep the layout of the first file: same look, half the work
        paths.append(p)
    return paths
