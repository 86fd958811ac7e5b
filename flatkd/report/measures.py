"""Report section for the sharpness and landscape suites: the measure-vs-generalization τ
table, sharpness and mCE tables, and figures (τ with its interval, landscape contours and 1-D
slices, linear paths between checkpoints).

Everything is built from the result files; the section appears only when some result holds a
``sharpness`` or ``landscape`` section (or a corruption-error summary), so reports of the
flatness and robustness suites alone are unchanged. :func:`measures_section` is the hook that
:func:`flatkd.report.build.build_report` calls.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..evidence.results import Result, group, method_label
from ..io import write_text
from ..robustness.published import corruption_errors, normalised
from . import figures as F, style as Sty, tables as T
from .study_figures import tau_figure

def _study():
    """The study modules (imported late: they read result files through this package)."""
    from ..study import measures, study
    return measures, study


# ------------------------------------------------------------------------------ tables
def tau_frame(results: Sequence[Result], settings=None) -> tuple[pd.DataFrame, list[str]]:
    """The τ table (one row per measure; numeric columns) and the verdict sentences
    (``settings``: a :class:`flatkd.study.StudySettings`, default settings if None)."""
    measures, study = _study()
    settings = settings or study.StudySettings()
    taus = study.measure_taus(measures.rows(measures.merge(results)), settings)
    return taus_frame(taus), study.sentences(taus, settings.confidence)


def taus_frame(taus: Sequence[Mapping]) -> pd.DataFrame:
    """The ``taus`` entries of a study (:func:`flatkd.study.run_study`) as one numeric row per
    measure: tau/ci/p with the gap and test accuracy, ψ per varied axis (``psi_<axis>``; a
    measure whose networks do not vary an axis has None there), Ψ, verdict."""
    rows = []
    for t in taus:
        row = {"measure": t["measure"], "family": t["family"], "n": t["n"]}
        for target in ("gap", "test_accuracy"):
            row[f"tau_{target}"] = t[target]["tau"]
            row[f"ci_low_{target}"], row[f"ci_high_{target}"] = t[target]["ci"]
            row[f"p_{target}"] = t[target]["p_value"]
        for axis, a in t["granulated"]["axes"].items():
            row[f"psi_{axis}"] = a["psi"]
        row["psi_overall"] = t["granulated"]["overall"]
        row["verdict"] = t["verdict"]
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.dropna(axis=1, how="all")
    return df


def _interval(t, lo, hi) -> str:
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return "—"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{t:+.2f}"
    return f"{t:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def tau_display(df: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Formatted τ table: τ [CI] with the gap and with test accuracy, granulated ψ, verdict."""
    pct = f"{100 * confidence:g} %"
    out = pd.DataFrame({"Measure": df["measure"], "n": df["n"].astype(int)})
    out[f"τ with gap [{pct} CI]"] = [_interval(*v) for v in zip(
        df["tau_gap"], df["ci_low_gap"], df["ci_high_gap"])]
    out[f"τ with test acc. [{pct} CI]"] = [_interval(*v) for v in zip(
        df["tau_test_accuracy"], df["ci_low_test_accuracy"], df["ci_high_test_accuracy"])]
    for col in [c for c in df if c.startswith("psi_") and c != "psi_overall"]:
        out[f"ψ {col[4:]}"] = [("—" if v is None or math.isnan(v) else f"{v:+.2f}")
                               for v in df[col]]
    if "psi_overall" in df:
        out["Ψ"] = ["—" if v is None or math.isnan(v) else f"{v:+.2f}" for v in df["psi_overall"]]
    out["verdict (gap)"] = df["verdict"]
    return out


def _stat(values: list[float], digits: int = 4) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "—"
    m = float(np.mean(vals))
    if len(vals) == 1:
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ± {float(np.std(vals, ddof=1)):.2g}"


SHARPNESS_COLUMNS = (
    ("gap", "gap (train − test acc.)", lambda s: (s.get("generalization") or {}).get("gap")),
    ("adaptive_average", "adaptive avg.", lambda s: ((s.get("adaptive") or {}).get("average")
                                                     or {}).get("value")),
    ("adaptive_worst", "adaptive worst", lambda s: ((s.get("adaptive") or {}).get("worst")
                                                    or {}).get("value")),
    ("pacbayes_sigma", "PAC-Bayes σ", lambda s: ((s.get("pacbayes") or {}).get("isotropic")
                                                 or {}).get("sigma")),
    ("pacbayes_sigma_mag", "PAC-Bayes σ′", lambda s: ((s.get("pacbayes") or {})
                                                      .get("magnitude_aware") or {}).get("sigma")),
)


def sharpness_frame(results: Sequence[Result]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric rows per result, display rows per configuration: mean ± std over seeds)."""
    numeric, display = [], []
    for k, rs in group(results).items():
        secs = [(r, r.data.get("sharpness")) for r in rs if r.data.get("sharpness")]
        if not secs:
            continue
        vals: dict[str, list] = {c: [] for c, _, _ in SHARPNESS_COLUMNS}
        for r, s in secs:
            row = {"dataset": k.dataset, "network": k.network, "method": k.method,
                   "interval": k.interval, "model": k.model, "seed": r.seed}
            for c, _, get in SHARPNESS_COLUMNS:
                row[c] = get(s)
                vals[c].append(get(s))
            numeric.append(row)
        display.append({"Configuration": f"{k.label}, {k.dataset}/{k.network}",
                        "Seeds": len(secs),
                        **{title: _stat(vals[c]) for c, title, _ in SHARPNESS_COLUMNS}})
    return pd.DataFrame(numeric), pd.DataFrame(display)


def mce_frame(results: Sequence[Result]) -> tuple[pd.DataFrame, str]:
    """Corruption errors per result: unnormalised mCE / relative mCE and, where the same
    (dataset, network) has ``baseline`` results with all corruptions, both normalised by the
    baseline's mean errors (stated in the returned note)."""
    entries = []
    for r in results:
        rob = r.robustness or {}
        e = rob.get("corruption_errors") or (corruption_errors(rob.get("corruptions") or [],
                                                               rob["clean_accuracy"])
                                             if rob.get("clean_accuracy") is not None else None)
        if e is not None:
            entries.append((r, e))
    baselines: dict[tuple, dict] = {}
    for (d, n), es in _by_cell(entries).items():
        base = [e for r, e in es if r.method == "baseline" and r.model == "student"]
        if base:
            baselines[d, n] = _mean_errors(base)
    rows = []
    for r, e in entries:
        row = {"dataset": r.dataset, "network": r.network, "method": r.method,
               "interval": r.interval, "model": r.model, "seed": r.seed,
               "mce_unnormalised": e["mce"], "relative_mce_unnormalised": e["relative_mce"]}
        base = baselines.get((r.dataset, r.network))
        if base is not None:
            row.update({f"{k}_vs_baseline": v for k, v in normalised(e, base).items()})
        rows.append(row)
    note = ("mCE and relative mCE over the 15 benchmark corruptions at severities 1–5 "
            "(Hendrycks & Dietterich 2019). *Unnormalised*: mean top-1 error (resp. error minus "
            "clean error). *vs baseline*: per corruption normalised by the baseline (w/o KD) "
            "network's errors, mean over its seeds, of the same dataset and architecture; "
            "100 % = as robust as the baseline.")
    return pd.DataFrame(rows), note


def _by_cell(entries):
    out: dict[tuple, list] = {}
    for r, e in entries:
        out.setdefault((r.dataset, r.network), []).append((r, e))
    return out


def _mean_errors(errors: Sequence[Mapping]) -> dict:
    cs = errors[0]["corruptions"]
    return {"corruptions": {c: {k: float(np.mean([e["corruptions"][c][k] for e in errors]))
                                for k in ("error_sum", "relative_error_sum")} for c in cs}}


def mce_display(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("mce_unnormalised", "relative_mce_unnormalised", "mce_vs_baseline",
                        "relative_mce_vs_baseline") if c in df]
    names = {"mce_unnormalised": "mCE (%)", "relative_mce_unnormalised": "relative mCE (%)",
             "mce_vs_baseline": "mCE vs baseline (%)",
             "relative_mce_vs_baseline": "relative mCE vs baseline (%)"}
    out = []
    for keys, d in df.groupby(["dataset", "network", "method", "interval", "model"],
                              dropna=False, sort=False):
        label = method_label(keys[2], None if pd.isna(keys[3]) else keys[3], keys[4])
        out.append({"Configuration": f"{label}, {keys[0]}/{keys[1]}", "Seeds": len(d),
                    **{names[c]: _stat([100 * v for v in d[c]], 4) for c in cols}})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------ figures
def landscape_results(results: Sequence[Result], part: str) -> dict:
    """Configuration key → the lowest-seed result with ``landscape[part]``."""
    out = {}
    for k, rs in group(results).items():
        got = [r for r in rs if ((r.data.get("landscape") or {}).get(part))]
        if got:
            out[k] = got[0]
    return out


def contour_figure(results: Sequence[Result]) -> Figure:
    """2-D filter-normalised slices: one contour panel of the training loss per configuration
    (its lowest seed), the unperturbed weights at the centre."""
    sel = landscape_results(results, "2d")
    n = len(sel)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    with sns.axes_style("white"), sns.plotting_context(Sty.CONTEXT):
        fig, axes = Sty.new_figure(ncols, nrows, width=4.4, height=3.8)
        for ax, (k, r) in zip(axes.flat, sel.items()):
            s = r.data["landscape"]["2d"]
            a, b = np.asarray(s["alphas"]), np.asarray(s["betas"])
            z = np.log10(np.maximum(np.asarray(s["loss"], dtype=float).T, 1e-12))
            cs = ax.contourf(a, b, z, levels=20, cmap="viridis")
            ax.contour(a, b, z, levels=10, colors="w", linewidths=0.4)
            ax.plot([0], [0], marker="*", color="r", ms=9)
            fig.colorbar(cs, ax=ax, label="log10 training loss")
            ax.set_xlabel("α (direction 1, filter-normalised)")
            ax.set_ylabel("β (direction 2)")
            ax.set_title(f"{k.label} (seed {r.seed})", fontsize="medium")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.suptitle(f"Loss landscape, 2-D slices (Li et al. 2018) — {Sty.results_title(results)}")
    return fig


def slice_figure(results: Sequence[Result]) -> Figure:
    """1-D slices: training loss (log scale) vs α, one line per configuration (mean over seeds;
    each seed has its own random direction)."""
    rows = []
    for k, rs in group(results).items():
        for r in rs:
            s = (r.data.get("landscape") or {}).get("1d")
            if s:
                rows += [{"label": k.label, "alpha": a, "loss": v}
                         for a, v in zip(s["alphas"], s["loss"])]
    df = pd.DataFrame(rows)
    keys = [k for k in group(results) if k.label in set(df["label"])]
    with sns.axes_style(Sty.STYLE), sns.plotting_context(Sty.CONTEXT):
        fig, axes = Sty.new_figure(width=6.4, height=4.4)
        ax = axes[0, 0]
        sns.lineplot(data=df, x="alpha", y="loss", hue="label",
                     hue_order=[k.label for k in keys], palette=Sty.label_colors(keys),
                     errorbar="sd", ax=ax)
        ax.set_yscale("log")
        ax.set_xlabel("α (filter-normalised random direction)")
        ax.set_ylabel("training loss (log scale)")
        ax.set_title(f"Loss landscape, 1-D slices — {Sty.results_title(results)}\nmean ± std over seeds "
                     "(one random direction each)", fontsize="medium")
        Sty.legend_below(fig, ax)
    return fig


def path_figure(results: Sequence[Result]) -> Figure:
    """Linear paths between checkpoints: loss (left) and accuracy (right) along t, one line per
    pair (this network at t = 0, the partner at t = 1), barrier heights in the legend."""
    paths = [(r, r.data["landscape"]["path"]) for r in results
             if (r.data.get("landscape") or {}).get("path")]
    with sns.axes_style(Sty.STYLE), sns.plotting_context(Sty.CONTEXT):
        fig, axes = Sty.new_figure(2, width=5.4, height=4.0)
        colors = sns.color_palette("colorblind", len(paths))
        for (r, p), c in zip(paths, colors):
            q = p["partner"]
            height = p["barrier"]["loss"]
            label = (f"{r.key.label} s{r.seed} → {q.get('method')} s{q.get('seed')} "
                     f"(barrier {'—' if height is None else f'{height:.3g}'})")
            axes[0, 0].plot(p["t"], [np.nan if v is None else v for v in p["loss"]], marker="o",
                            ms=3, color=c, label=label)
            axes[0, 1].plot(p["t"], [100 * a for a in p["accuracy"]], marker="o", ms=3, color=c,
                            label=label)
        axes[0, 0].set_ylabel("training loss")
        axes[0, 1].set_ylabel("training accuracy (%)")
        for ax in axes[0]:
            ax.set_xlabel("t (0: this network, 1: partner)")
        bn = sorted({p["bn"] for _, p in paths})
        fig.suptitle(f"Linear paths between checkpoints (BatchNorm statistics: {', '.join(bn)})")
        Sty.legend_below(fig, axes[0, 0], ncol=1)
    return fig


# ------------------------------------------------------------------------------ the hook
def _table(out: Path, name: str, numeric: pd.DataFrame, display: pd.DataFrame,
           written: dict) -> str:
    md = T.to_markdown(display)
    write_text(out / "tables" / f"{name}.csv",
               numeric.astype(object).where(numeric.notna(), None).to_csv(index=False))
    write_text(out / "tables" / f"{name}.md", md)
    written["tables"][name] = [out / "tables" / f"{name}.csv", out / "tables" / f"{name}.md"]
    return md


def _figure(out: Path, stem: str, caption: str, fig: Figure, written: dict) -> list[str]:
    written["figures"][stem] = Sty.save_figure(fig, out / "figures", stem)
    return [f"### {caption}", "", f"![{caption}](figures/{stem}.png)", ""]


def measures_section(results: Sequence[Result], out: Path, written: dict,
                     settings=None) -> list[str]:
    """Markdown of the sharpness/landscape/mCE section (tables and figures written to ``out``
    and recorded in ``written``); empty when no result holds any of them."""
    _, study = _study()
    settings = settings or study.StudySettings()
    md: list[str] = []
    has_sharp = any(r.data.get("sharpness") for r in results)
    if has_sharp:
        df, summary = tau_frame(results, settings)
        n = int(df["n"].max()) if len(df) else 0
        if len(df) and n >= study.MIN_NETWORKS:
            md += ["## Which measures track generalization? (Kendall τ)", "",
                   "Kendall's τ-b between each measure (oriented so that larger = sharper) and "
                   "the generalization gap (train − test accuracy) and test accuracy, over the "
                   f"networks below; {100 * settings.confidence:g} % paired percentile bootstrap "
                   f"interval ({settings.n_resamples} resamples); ψ: granulated τ with the gap "
                   "per varied hyper-parameter (Jiang et al. 2020), Ψ their mean.", "",
                   _table(out, "measures_tau", df, tau_display(df, settings.confidence),
                          written)]
            md += [f"* {s}" for s in summary] + [""]
            written.setdefault("summaries", []).extend(summary)
            md += _figure(out, "measures_tau", "Kendall τ of each measure with the gap and "
                          "with test accuracy", tau_figure(df, settings.confidence), written)
        num, disp = sharpness_frame(results)
        md += ["## Sharpness measures", "",
               "Adaptive average- and worst-case sharpness (Andriushchenko et al. 2023, |w| "
               "scaling, m-sharpness, BatchNorm in eval mode), PAC-Bayes σ (isotropic) and σ′ "
               "(magnitude-aware) at a 0.1 accuracy drop (Jiang et al. 2020); mean ± std over "
               "seeds.", "", _table(out, "sharpness", num, disp, written)]
    mce, note = mce_frame(results)
    if len(mce):
        md += ["## Mean corruption error", "", note, "",
               _table(out, "mce", mce, mce_display(mce), written)]
    for (dataset, network), rs in F.cell_results(results).items():
        cell = f"{dataset}_{network}"
        if landscape_results(rs, "2d"):
            md += _figure(out, f"landscape_2d_{cell}", "Loss landscape: 2-D slices",
                          contour_figure(rs), written)
        if landscape_results(rs, "1d"):
            md += _figure(out, f"landscape_1d_{cell}", "Loss landscape: 1-D slices",
                          slice_figure(rs), written)
        if landscape_results(rs, "path"):
            md += _figure(out, f"linear_paths_{cell}", "Linear paths between checkpoints",
                          path_figure(rs), written)
    return md
