"""StableKD report section: accuracy vs epoch budget (paper Fig. 4/5, Table 5), the Table 4
ablation (KD, KD + MSE, StableKD) and accuracy vs training-data fraction (Table 2).

Runs are read from their result files (clean accuracy of the robustness suite) and the run's
``config.yaml`` found next to the recorded checkpoint (the loop writes it: the resolved config
and the method's options), so a run folder reduced to ``config.yaml`` still reports. Schemes:
``stablekd`` → StableKD-k/n, ``kd-mse`` → KD + MSE, ``offline`` → KD, ``dkd`` → DKD, ``at``
→ AT (the last three only when they distil from a teacher checkpoint some StableKD run uses,
so unrelated offline runs stay out).
Cells are mean ± std over seeds (n); ``†``: some of the cell's runs have not converged (the
report's convergence diagnostic; a short epoch budget is expected to be), and each figure names
them.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import seaborn as sns
import yaml

from ..evidence.histories import Histories
from ..evidence.results import Result
from ..evidence.stats import describe
from ..evidence.verdicts import stale_runs
from .cells import fmt_stat, stale_mark
from .style import CONTEXT, STYLE, accuracy_axis, legend_below, new_figure, not_converged_note, palette

#: method → scheme label; the baselines count only with a teacher some StableKD run uses
SCHEMES = {"kd-mse": "KD + MSE", "offline": "KD", "dkd": "DKD", "at": "AT"}
METHODS = ("stablekd", *SCHEMES)
BASELINES = ("offline", "dkd", "at")
COLUMNS = ["dataset", "network", "scheme", "epochs", "train_fraction", "mean", "std", "n",
           "not_converged"]


@lru_cache(maxsize=4096)
def _run_record(path: str) -> dict:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def run_record(r: Result) -> dict:
    """The run's ``config.yaml`` (``{"config": ..., "derived": ...}``), {} when not found."""
    path = r.beside_checkpoint("config.yaml")
    return _run_record(str(path)) if path is not None else {}


def scheme(r: Result, record: dict) -> str:
    """``StableKD-k/n``, ``KD + MSE`` or ``KD``."""
    if r.method == "stablekd":
        opts = record.get("derived", {}).get("options", {})
        return f"StableKD-{opts.get('blocks', '?')}/{opts.get('recompositions', '?')}"
    return SCHEMES[r.method]


def stablekd_results(results: Iterable[Result]) -> dict[tuple, list[Result]]:
    """The section's results per (dataset, network, scheme, epochs, train_fraction)."""
    teachers, picked = set(), []
    for r in results:
        if r.method not in METHODS or r.model != "student" or not r.robustness:
            continue
        record = run_record(r)
        cfg = record.get("config", {})
        if not cfg:
            continue
        if r.method not in BASELINES:
            teachers.add(cfg.get("teacher_ckpt"))
        picked.append((r, record, cfg))
    cells: dict[tuple, list[Result]] = {}
    for r, record, cfg in picked:
        if r.method in BASELINES and (cfg.get("teacher_ckpt") is None
                                      or cfg.get("teacher_ckpt") not in teachers):
            continue
        key = (r.dataset, r.network, scheme(r, record), int(cfg.get("epochs")),
               float(cfg.get("train_fraction") or 1.0))
        cells.setdefault(key, []).append(r)
    return dict(sorted(cells.items()))


def runs_table(results: Iterable[Result], histories: Histories | None = None) -> pd.DataFrame:
    """One row per (dataset, network, scheme, epochs, train_fraction): accuracy stats (the
    robustness suite's clean accuracy) and ``not_converged``, the cell's runs that have not
    converged (from ``histories``, else their results' ``bn`` sections)."""
    rows = []
    for key, rs in stablekd_results(results).items():
        st = describe(r.robustness["clean_accuracy"] for r in rs)
        rows.append(dict(zip(COLUMNS, (*key, st.mean, st.std if st.std is not None else math.nan,
                                       st.n, len(stale_runs(rs, histories))))))
    return pd.DataFrame(rows, columns=COLUMNS)


def _order(schemes: Iterable[str]) -> list[str]:
    """KD, DKD, AT, KD + MSE, then StableKD variants by (k, n)."""
    fixed = ["KD", "DKD", "AT", "KD + MSE"]

    def rank(s: str):                        # "KD" or "KD, 6 epochs" (a row per budget)
        base, _, rest = s.partition(", ")
        if base.startswith("StableKD-"):
            k, n = base[len("StableKD-"):].split("/")
            return (len(fixed), int(k) if k.isdigit() else 0, int(n) if n.isdigit() else 0, rest)
        return (fixed.index(base), 0, 0, rest)
    return sorted(set(schemes), key=rank)


def pivot(df: pd.DataFrame, column: str, fmt: Callable[[float], str]) -> pd.DataFrame:
    """Rows (setting, scheme) × one column per value of ``column``; cells ``mean ± std (n)`` in %."""
    out = []
    for (dataset, network), d in df.groupby(["dataset", "network"], sort=False):
        for s in _order(d["scheme"]):
            row = {"setting": f"{dataset} / {network}", "scheme": s}
            for _, r in d[d["scheme"] == s].iterrows():
                row[fmt(r[column])] = (fmt_stat(r["mean"], r["std"], 100.0) + f" ({int(r['n'])})"
                                       + stale_mark(r["not_converged"]))
            out.append(row)
    cols = ["setting", "scheme"] + [fmt(v) for v in sorted(df[column].unique())]
    return pd.DataFrame(out).reindex(columns=cols).fillna("—")


def epochs_to_target(df: pd.DataFrame) -> list[str]:
    """Sentences: per (dataset, network), the smallest budget at which each scheme's mean
    accuracy reaches KD's mean at KD's largest budget, and the ratio KD / scheme."""
    lines = []
    for (dataset, network), d in df.groupby(["dataset", "network"], sort=False):
        kd = d[d["scheme"] == "KD"]
        if kd.empty:
            continue
        top = kd.loc[kd["epochs"].idxmax()]
        target, e_kd = top["mean"], int(top["epochs"])
        for s in _order(d["scheme"]):
            if s == "KD":
                continue
            mine = d[(d["scheme"] == s) & (d["mean"] >= target)]
            if mine.empty:
                lines.append(f"* {dataset} / {network}: {s} does not reach KD's {100 * target:.2f} % "
                             f"({e_kd} epochs) at any measured budget.")
                continue
            e = int(mine["epochs"].min())
            lines.append(f"* {dataset} / {network}: {s} reaches KD's {100 * target:.2f} % "
                         f"({e_kd} epochs) in {e} epochs: epochs ratio KD / {s} = {e_kd / e:.2f}.")
    return lines


def _figure(df: pd.DataFrame, column: str, xlabel: str, title: str):
    """Accuracy (%) vs ``column`` (epochs or training fraction) of :func:`runs_table` rows, one
    line per scheme (mean ± std over seeds, error bars held to [0, 100] %), colours from the
    report's shared palette; the accuracy axis is fitted to the data and, not starting at 0,
    carries a break mark."""
    schemes = _order(df["scheme"])
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(width=5.8, height=3.9)
        ax = axes[0, 0]
        for s, color in zip(schemes, palette(len(schemes))):
            d = df[df["scheme"] == s].sort_values(column)
            x = d[column] * (100 if column == "train_fraction" else 1)
            m, sd = d["mean"] * 100, d["std"].fillna(0) * 100
            err = [(m - (m - sd).clip(lower=0.0)).clip(lower=0.0),
                   ((m + sd).clip(upper=100.0) - m).clip(lower=0.0)]
            ax.errorbar(x, m, yerr=err, marker="o", capsize=3, color=color, label=s)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{title}, mean ± std over seeds", fontsize="medium")
        accuracy_axis(ax, truncate=True)
        legend_below(fig, ax)
    return fig


def section(results: Sequence[Result], out: Path, written: dict, write_table: Callable,
            save_figure: Callable, histories: Histories | None = None) -> list[str]:
    """Markdown of the StableKD section (empty without StableKD / KD + MSE runs)."""
    df = runs_table(results, histories)
    cells = stablekd_results(results)

    def stale(**where) -> list[str]:
        """The not-converged runs of the cells matching ``where`` (dataset, network, ...)."""
        names = ("dataset", "network", "scheme", "epochs", "train_fraction")
        return list(stale_runs([r for key, rs in cells.items() for r in rs
                                if all(dict(zip(names, key))[k] == v for k, v in where.items())],
                               histories))
    if df.empty or not df["scheme"].str.startswith(("StableKD", "KD + MSE")).any():
        return []
    md = ["## StableKD: accuracy vs epoch budget and vs training data", "",
          "Student test accuracy (%; robustness suite's clean accuracy), mean ± std over seeds "
          "(n). KD = offline vanilla KD from the same frozen teacher, DKD / AT = decoupled KD / "
          "attention transfer, KD + MSE = the Table 4 ablation (feature alignment end to end), "
          "StableKD-k/n = k blocks, n recompositions.", ""]
    budget = df[df["train_fraction"] == 1.0]
    if budget["epochs"].nunique() > 0:
        md += ["### Accuracy vs epoch budget (paper Fig. 4/5, Tables 4 and 5 layout)", "",
               write_table(out, "stablekd_epochs", budget,
                           pivot(budget, "epochs", lambda v: f"{int(v)} epochs"), written), ""]
        md += epochs_to_target(budget) + [""]
        for (dataset, network), d in budget.groupby(["dataset", "network"]):
            stem = f"stablekd_epochs_{dataset}_{network}"
            fig = _figure(d, "epochs", "training epochs (budget)", f"{dataset} / {network}")
            written["figures"][stem] = save_figure(
                not_converged_note(fig, stale(dataset=dataset, network=network,
                                              train_fraction=1.0)), out / "figures", stem)
            md += [f"![accuracy vs epochs](figures/{stem}.png)", ""]
    frac = df[df.groupby(["dataset", "network", "scheme", "epochs"])["train_fraction"]
              .transform("nunique") > 1]
    if len(frac):
        md += ["### Accuracy vs training-data fraction (paper Table 2 layout)", "",
               "A seeded class-stratified fraction of the training split (`train_fraction`); "
               "rows per epoch budget.", "",
               write_table(out, "stablekd_fraction", frac,
                           pivot(frac.assign(scheme=frac["scheme"] + ", "
                                             + frac["epochs"].astype(str) + " epochs"),
                                 "train_fraction", lambda v: f"{100 * v:g} %"), written), ""]
        for (dataset, network, epochs), d in frac.groupby(["dataset", "network", "epochs"]):
            stem = f"stablekd_fraction_{dataset}_{network}_e{epochs}"
            fig = _figure(d, "train_fraction", "training data (%)",
                          f"{dataset} / {network}, {epochs} epochs")
            written["figures"][stem] = save_figure(
                not_converged_note(fig, stale(dataset=dataset, network=network, epochs=epochs)),
                out / "figures", stem)
            md += [f"![accuracy vs data fraction](figures/{stem}.png)", ""]
    return md


__all__ = ["runs_table", "stablekd_results", "pivot", "epochs_to_target", "section"]
