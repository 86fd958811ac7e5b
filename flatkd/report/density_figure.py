"""The Hessian eigenvalue density figure (stochastic Lanczos quadrature), log scale: one line
per method (mean over seeds) with thin per-seed lines, each seed's top eigenvalue marked on
its line and the flatness table's mean top eigenvalue on the x axis; the y range is fitted so
that every marked point shows; the title says how the densities were estimated (read from the
results' recorded settings)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from ..evidence.results import GroupKey, Result, group
from .style import (CONTEXT, STYLE, fit_legend, label_colors, method_dashes, new_figure,
                    results_title)

DENSITY_RANGE = 1e-7   # the density plot shows at least 7 decades below its highest value


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
