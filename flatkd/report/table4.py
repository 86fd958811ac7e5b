"""Paper Table 4 (and the App. A.3 methods): spacing as a plug-in for other KD methods.

For each method column the paper reports *w/o KD* (the network trained without distillation),
*w/ KD* (the method inside online KD) and *w/ Ours* (the method inside spaced KD). The columns
and the runs that fill them (:data:`TABLE4`):

* Table 4 — TSB (``tsb`` / ``spaced-tsb``), CTKD (``online+ctkd`` / ``spaced-online+ctkd``),
  LSKD (``online+lskd`` / ``spaced-online+lskd``); w/o KD = ``baseline``.
* App. A.3 — BAN, TAKD, DML, SHAKE (w/o KD = ``baseline``) and DLB, PS-KD, whose w/o KD is the
  self-distilled teacher alone (``dlb``, ``pskd``) and whose w/ KD / w/ Ours are the online /
  spaced students (``online-dlb`` / ``spaced-dlb``, ``online-pskd`` / ``spaced-pskd``).

Cells are mean ± std over seeds (fractions in the CSV, % in the Markdown); Δ = w/ Ours − w/ KD
with a paired t-test over the seeds both have, stated plainly when not significant. Accuracy
selections as in Tables 1/2 (*final* from the robustness suite, *best over epochs* from the
checkpoints' per-epoch metrics).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import pandas as pd

from ..evidence.histories import Histories
from ..evidence.results import FAMILIES, Result
from ..evidence.selections import SELECTIONS
from .cells import fmt_stat
from .tables import accuracy_table, holm_within, to_markdown

#: column → (w/o KD, w/ KD, w/ Ours) methods (the report's KD families); Table 4's three
#: columns first, in the paper's order.
TABLE4: dict[str, tuple[str, str, str]] = {
    name.upper(): FAMILIES[name] for name in
    ("tsb", "ctkd", "lskd", "ban", "takd", "dml", "shake", "dlb", "pskd")}
PAPER_COLUMNS = ("TSB", "CTKD", "LSKD")

COLUMNS = (["column", "dataset", "network", "interval", "selection"]
           + [f"{p}_{s}" for p in ("wo_kd", "w_kd", "w_ours") for s in ("mean", "std", "n")]
           + ["delta", "n_pairs", "t", "p_value", "p_holm", "detectable", "significant",
              "statement", "verdict", "not_converged",
              "wo_kd_method", "w_kd_method", "w_ours_method"])


def table4(results: Iterable[Result], histories: Histories | None = None) -> pd.DataFrame:
    """One row per (column, dataset, network, spaced interval, accuracy selection) that has a
    w/ KD or w/ Ours run; columns :data:`COLUMNS` (accuracies as fractions, student models).
    The rows of :func:`~flatkd.report.tables.accuracy_table` for these families, in the
    paper's naming (w/ KD = the family's non-spaced method, w/ Ours = its spaced one)."""
    df = accuracy_table(results, histories)
    df = holm_within(df, df["family"].isin([c.lower() for c in TABLE4]))
    df = df.rename(columns=lambda c: "w_kd" + c[len("wo_ours"):] if c.startswith("wo_ours_")
                   else c)
    df["column"] = df["family"].str.upper()
    for i, key in enumerate(("wo_kd_method", "w_kd_method", "w_ours_method")):
        df[key] = df["column"].map(lambda c, i=i: TABLE4[c][i])
    order = {c: i for i, c in enumerate(TABLE4)}
    verdicts = dict(zip(df.index, df.attrs["verdicts"]))
    df = df.sort_values("column", key=lambda col: col.map(order), kind="stable")
    df.attrs["verdicts"] = [verdicts[i] for i in df.index]
    return df.reset_index(drop=True).reindex(columns=COLUMNS)


def table4_display(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: rows (dataset / network, selection, interval) × (w/o KD, w/ KD,
    w/ Ours, Δ, p), one column per method; cells in % as mean ± std (n)."""
    if df.empty:
        return pd.DataFrame()
    out = []
    for (dataset, network, interval, sel), d in df.groupby(
            ["dataset", "network", "interval", "selection"], sort=False, dropna=False):
        where = f"{dataset} / {network}" + ("" if pd.isna(interval) else f", s = {interval:g}")
        label = SELECTIONS[sel].label
        by_col = {r["column"]: r for _, r in d.iterrows()}
        for name, key in (("w/o KD", "wo_kd"), ("w/ KD", "w_kd"), ("w/ Ours", "w_ours")):
            row = {"setting": where, "accuracy": label, "row": name}
            for col, r in by_col.items():
                row[col] = _cell(r, key)
            out.append(row)
        delta = {"setting": where, "accuracy": label, "row": "Δ (paired p)"}
        for col, r in by_col.items():
            delta[col] = "—" if math.isnan(r["delta"]) else (
                f"{r['delta'] * 100:+.2f}" + ("" if math.isnan(r["p_value"]) else
                                              f" (p = {r['p_value']:.2g}, Holm {r['p_holm']:.2g}"
                                              + (")" if r["significant"] else ", n.s.)"))
                + (" †" if r["not_converged"] else ""))
        out.append(delta)
    cols = ["setting", "accuracy", "row"] + [c for c in TABLE4 if c in set(df["column"])]
    return pd.DataFrame(out).reindex(columns=cols).fillna("")


def _cell(r, key: str) -> str:
    if not r[f"{key}_n"]:
        return "—"
    std = r[f"{key}_std"]
    return fmt_stat(r[f"{key}_mean"], std, 100.0) + f" ({int(r[f'{key}_n'])})"


def section(results: Iterable[Result], histories: Histories | None,
            write: Callable[[str, pd.DataFrame, pd.DataFrame], str]) -> list[str]:
    """Markdown lines of the report's Table 4 section (empty without any Table 4 run);
    ``write(name, numeric, display)`` stores a table and returns its Markdown."""
    df = table4(results, histories)
    if df.empty:
        return []
    present = [c for c in TABLE4 if c in set(df["column"])]
    lines = ["## Spacing as a plug-in (paper Table 4 layout; App. A.3 methods)", "",
             "Per method: *w/o KD* the network without distillation (baseline; for DLB / PS-KD "
             "the self-distilled teacher alone), *w/ KD* the method inside online KD, *w/ Ours* "
             "inside spaced KD; % mean ± std (seeds); Δ = w/ Ours − w/ KD with a paired t-test "
             "and its Holm-adjusted p over this table's tests (n.s.: not significant at "
             "α = 0.05 after Holm; †: a run of the comparison has not converged, so it gives "
             "no verdict). Columns: " + ", ".join(
                 f"{c} = {TABLE4[c][1]} / {TABLE4[c][2]}" for c in present) + ".", "",
             write("table4", df, table4_display(df)), ""]
    verdicts = [f"* {c}: {v}" for c, v, s in zip(df["column"], df["verdict"], df["selection"])
                if s == "final"]
    return lines + verdicts + [""]


__all__ = ["TABLE4", "PAPER_COLUMNS", "table4", "table4_display", "section", "to_markdown"]
