"""Corruption (Tables 5/12) and BIM (Table 13) accuracy over seeds: spaced vs its non-spaced
counterpart cell by cell, with paired t-tests, in numeric and display form, and the sentences
that summarise them (statistics from :mod:`flatkd.report.stats`)."""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from ..evidence.results import FAMILIES, GroupKey, Result, fmt_interval, group
from ..evidence.selections import seeded
from ..evidence.stats import ALPHA, describe, paired_test
from .cells import fmt_num, fmt_stat, stat_cols


def corruption_cells(r: Result) -> dict[tuple, float]:
    """``{(corruption, severity): accuracy}`` of one result (fractions)."""
    return {(c["corruption"], int(c["severity"])): float(c["accuracy"])
            for c in (r.robustness or {}).get("corruptions", [])}


def bim_cells(r: Result) -> dict[tuple, float]:
    """``{(ε,): accuracy}`` of the BIM rows of one result (absolute ε, fractions)."""
    return {(float(a["epsilon"]),): float(a["accuracy"])
            for a in (r.robustness or {}).get("adversarial", []) if a.get("attack", "BIM") == "BIM"}


def paired_cells_table(results: Iterable[Result], cells: Callable[[Result], Mapping[tuple, float]],
                       cell_names: Sequence[str]) -> pd.DataFrame:
    """Spaced vs non-spaced, cell by cell (e.g. per corruption and severity), over seeds.

    One row per (family, dataset, network, interval, cell): ``family, dataset, network,
    interval, group`` (``"<dataset>/<network> s=<interval>"``), the ``cell_names`` columns,
    ``wo_ours_*`` (online or self) and ``w_ours_*`` (spaced) with ``_mean/_std/_n``, ``delta``,
    and the paired t-test columns ``n_pairs, t, p_value, significant``. Student models with
    values on both sides only; cells in the order the results list them.
    """
    groups = {k: v for k, v in group(results).items() if k.model == "student"}
    rows = []
    for family, (_, plain_m, spaced_m) in FAMILIES.items():
        for k, spaced in groups.items():
            plain = groups.get(GroupKey(k.dataset, k.network, plain_m, None, "student"))
            if k.method != spaced_m or not plain:
                continue
            a_vals = [(r, cells(r)) for r in spaced]
            b_vals = [(r, cells(r)) for r in plain]
            order = list(dict.fromkeys(c for _, v in b_vals + a_vals for c in v))
            for cell in order:
                def fn_of(vals):
                    return {r.path: v[cell] for r, v in vals if cell in v}
                fa, fb = fn_of(a_vals), fn_of(b_vals)
                a_st = describe(fa.values())
                b_st = describe(fb.values())
                if a_st is None or b_st is None:
                    continue
                test = paired_test(seeded(spaced, lambda r: fa.get(r.path)),
                                   seeded(plain, lambda r: fb.get(r.path)))
                row = {"family": family, "dataset": k.dataset, "network": k.network,
                       "interval": k.interval,
                       "group": f"{k.dataset}/{k.network} s={fmt_interval(k.interval)}"}
                row |= dict(zip(cell_names, cell))
                row |= stat_cols("wo_ours", b_st) | stat_cols("w_ours", a_st)
                row["delta"] = a_st.mean - b_st.mean
                row |= {"n_pairs": test.n, "t": test.t, "p_value": test.p,
                        "significant": test.significant}
                rows.append(row)
    return pd.DataFrame(rows, columns=[
        "family", "dataset", "network", "interval", "group", *cell_names,
        *[f"{p}_{s}" for p in ("wo_ours", "w_ours") for s in ("mean", "std", "n")],
        "delta", "n_pairs", "t", "p_value", "significant"])


def corruption_table(results: Iterable[Result]) -> pd.DataFrame:
    """Tables 5/12 over seeds: :func:`paired_cells_table` per (corruption, severity)."""
    return paired_cells_table(results, corruption_cells, ("corruption", "severity"))


def bim_table(results: Iterable[Result]) -> pd.DataFrame:
    """Table 13 over seeds: :func:`paired_cells_table` per BIM ε (``epsilon`` absolute and
    ``epsilon_255`` in units of 1/255)."""
    df = paired_cells_table(results, bim_cells, ("epsilon",))
    df.insert(df.columns.get_loc("epsilon") + 1, "epsilon_255",
              [round(e * 255, 6) for e in df["epsilon"]])
    return df


def _group_prefix(groups: Sequence[str]) -> Callable[[str, str], str]:
    """Column naming: the group is named only when a table holds several."""
    return (lambda g, c: c) if len(groups) == 1 else (lambda g, c: f"{g} {c}")


def corruption_display(df: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 5/12 layout: rows (corruption, severity); per group w/o Ours, w/ Ours (% mean
    ± std over seeds), Δ (pp) and the paired t-test's p."""
    groups = list(dict.fromkeys(df["group"]))
    name = _group_prefix(groups)
    keys = list(dict.fromkeys(zip(df["corruption"], df["severity"])))
    out = pd.DataFrame({"corruption": [c for c, _ in keys], "severity": [s for _, s in keys]})
    for g in groups:
        d = df[df["group"] == g].set_index(["corruption", "severity"])
        get = lambda col, k: d[col].get(k, math.nan)   # noqa: E731
        out[name(g, "w/o Ours")] = [fmt_stat(get("wo_ours_mean", k), get("wo_ours_std", k), 100)
                                    for k in keys]
        out[name(g, "w/ Ours")] = [fmt_stat(get("w_ours_mean", k), get("w_ours_std", k), 100)
                                   for k in keys]
        out[name(g, "Δ")] = [fmt_num(get("delta", k) * 100, "+.2f") for k in keys]
        out[name(g, "p (paired t)")] = [fmt_num(get("p_value", k), ".3g") for k in keys]
    return out


def bim_display(df: pd.DataFrame, plain: str = "w/o Ours", spaced: str = "w/ Ours"
                ) -> pd.DataFrame:
    """Paper Table 13 layout: rows w/o Ours, w/ Ours (% mean ± std over seeds), Δ (pp) and p;
    one column per ε (× 1/255) and group."""
    groups = list(dict.fromkeys(df["group"]))
    name = _group_prefix(groups)
    cols: dict[str, list[str]] = {"": [plain, spaced, "Δ (pp)", "p (paired t)"]}
    for g in groups:
        for _, r in df[df["group"] == g].iterrows():
            cols[name(g, f"{r['epsilon_255']:g}/255")] = [
                fmt_stat(r["wo_ours_mean"], r["wo_ours_std"], 100),
                fmt_stat(r["w_ours_mean"], r["w_ours_std"], 100),
                fmt_num(r["delta"] * 100, "+.2f"), fmt_num(r["p_value"], ".3g")]
    return pd.DataFrame(cols)


def cells_summary(df: pd.DataFrame, what: str, spaced: str, plain: str,
                  alpha: float = ALPHA) -> list[str]:
    """One sentence per group of a :func:`paired_cells_table`: in how many cells the spaced
    mean is higher, and in how many the paired t-test finds a significant difference (each cell
    tested on its own, no correction for the number of cells)."""
    out = []
    for g, d in df.groupby("group", sort=False):
        n = len(d)
        higher = int((d["delta"] > 0).sum())
        sig = d[d["significant"] == True]  # noqa: E712  (None/NaN are not tests)
        up, down = int((sig["delta"] > 0).sum()), int((sig["delta"] < 0).sum())
        tested = int(d["significant"].notna().sum())
        mean_delta = 100 * float(d["delta"].mean())
        text = (f"{spaced} vs {plain} ({g}), {what}: spaced mean higher in {higher} of {n} "
                f"cells (mean Δ {mean_delta:+.2f} pp); ")
        if tested == 0:
            text += "too few paired seeds for any significance test"
        else:
            text += (f"paired t-test (α = {alpha:g}, each cell on its own, no "
                     f"multiple-comparison correction): significantly higher in {up}, "
                     f"significantly lower in {down}, NOT significant in {tested - up - down}")
            if tested < n:
                text += (f"; {n - tested} cell(s) not testable (identical paired differences, "
                         "e.g. every seed at the same accuracy, or fewer than 2 paired seeds)")
        out.append(text)
    return out
