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

from .results import FAMILIES, GroupKey, Result, group, method_label
from .tables import (METRICS, SELECTIONS, Histories, _hist, _seeded, _stat_cols, _test_cols,
                     describe, fmt_stat, gain_verdict, paired_test, to_markdown)

#: column → (w/o KD, w/ KD, w/ Ours) methods (the report's KD families); Table 4's three
#: columns first, in the paper's order.
TABLE4: dict[str, tuple[str, str, str]] = {
    name.upper(): FAMILIES[name] for name in
    ("tsb", "ctkd", "lskd", "ban", "takd", "dml", "shake", "dlb", "pskd")}
PAPER_COLUMNS = ("TSB", "CTKD", "LSKD")

COLUMNS = (["column", "dataset", "network", "interval", "selection"]
           + [f"{p}_{s}" for p in ("wo_kd", "w_kd", "w_ours") for s in ("mean", "std", "n")]
           + ["delta", "n_pairs", "t", "p_value", "significant", "statement", "verdict",
              "wo_kd_method", "w_kd_method", "w_ours_method"])


def table4(results: Iterable[Result], histories: Histories | None = None) -> pd.DataFrame:
    """One row per (column, dataset, network, spaced interval, accuracy selection) that has a
    w/ KD or w/ Ours run; columns :data:`COLUMNS` (accuracies as fractions, student models)."""
    metric = METRICS.get("accuracy")
    groups = {k: v for k, v in group(results).items() if k.model == "student"}
    rows = []
    for column, (base_m, kd_m, ours_m) in TABLE4.items():
        cells = sorted({(k.dataset, k.network) for k in groups if k.method in (kd_m, ours_m)})
        for dataset, network in cells:
            def pick(method, interval=None):
                return groups.get(GroupKey(dataset, network, method, interval, "student"), [])
            intervals = sorted({k.interval for k in groups if k.method == ours_m
                                and (k.dataset, k.network) == (dataset, network)}) or [None]
            base, kd = pick(base_m), pick(kd_m)
            for s in intervals:
                ours = pick(ours_m, s) if s is not None else []
                for sel in SELECTIONS.values():
                    if sel.families is not None:
                        continue

                    def fn(r, sel=sel):
                        return sel.extract(r, _hist(histories, r))
                    o_st, k_st, b_st = (describe(fn(r) for r in rs) for rs in (ours, kd, base))
                    if sel.name != "final" and not (o_st or k_st):
                        continue
                    test = paired_test(_seeded(ours, fn), _seeded(kd, fn)) if o_st and k_st else None
                    row = {"column": column, "dataset": dataset, "network": network,
                           "interval": s, "selection": sel.name}
                    row |= _stat_cols("wo_kd", b_st) | _stat_cols("w_kd", k_st) | _stat_cols("w_ours", o_st)
                    row["delta"] = o_st.mean - k_st.mean if o_st and k_st else math.nan
                    label = method_label(ours_m, s)
                    missing = "; ".join(f"no {m} results" for m, rs in ((ours_m, ours), (kd_m, kd))
                                        if not rs)
                    row |= _test_cols(test, label, kd_m, metric,
                                      missing + " to compare" if missing else "")
                    row["verdict"] = (gain_verdict(label, kd_m, f"accuracy ({sel.label})", o_st,
                                                   k_st, test) if not missing else row["statement"])
                    row |= {"wo_kd_method": base_m, "w_kd_method": kd_m, "w_ours_method": ours_m}
                    rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


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
                                              f" (p = {r['p_value']:.2g}"
                                              + (")" if r["significant"] else ", n.s.)")))
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
             "(n.s.: not significant at α = 0.05). Columns: " + ", ".join(
                 f"{c} = {TABLE4[c][1]} / {TABLE4[c][2]}" for c in present) + ".", "",
             write("table4", df, table4_display(df)), ""]
    verdicts = [f"* {c}: {v}" for c, v, s in zip(df["column"], df["verdict"], df["selection"])
                if s == "final"]
    return lines + verdicts + [""]


__all__ = ["TABLE4", "PAPER_COLUMNS", "table4", "table4_display", "section", "to_markdown"]
