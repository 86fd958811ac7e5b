"""Report layouts of the paper's extra experiments, from result files (and the checkpoints they
name, for the settings a result file does not carry: the teacher, the critical period).

* Table 10 — offline KD vs spaced KD per teacher (student network fixed);
* Table 11 — constant-ahead teacher vs its lead s, next to spaced KD at the same s
  (s = 0: online KD for both);
* Fig. 3 — accuracy vs the epoch spaced KD starts (``spaced.start_epoch``), (a) for a window of
  ``spaced.window_epochs`` epochs, (b) until the end; online KD as the reference level.

Accuracy vs interval (Fig. 2 / Table 6) is :func:`flatkd.report.tables.interval_table`.
Cells are mean ± sample std over seeds of the selections of the main accuracy table
(*final*: clean test accuracy of the evaluated checkpoint; *best over epochs*); a ``†`` cell
holds runs that have not converged (``not_converged`` columns count them; figures name them).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from ..evidence import selections as Sel, stats as S
from ..evidence.results import Result, fmt_interval
from ..evidence.verdicts import stale_runs
from . import cells as C
from .style import not_converged_note

SELECTIONS = ("final", "best")
PLAIN = (0, None)        # (start_epoch, window_epochs) of a spaced run without critical period


@lru_cache(maxsize=4096)
def _setting(path: str) -> tuple[str | None, int, int | None]:
    """(teacher label, spaced.start_epoch, spaced.window_epochs) recorded in checkpoint ``path``."""
    try:
        raw = load_checkpoint(path).raw
    except CheckpointError:
        return None, 0, None
    cfg, opts = raw.get("config", {}), raw.get("state", {}).get("options", {})
    t = opts.get("teacher")
    if isinstance(t, dict) and "arch" in t:                 # offline: the teacher checkpoint's
        arch, width = t["arch"], t.get("width", 1)
    else:
        arch, width = cfg.get("teacher_arch") or raw.get("arch"), cfg.get("teacher_width", 1)
    label = arch if float(width) == 1 else f"{arch}×{float(width):g}"
    sp = cfg.get("spaced", {})
    return label, int(sp.get("start_epoch", 0) or 0), sp.get("window_epochs")


def run_setting(r: Result) -> tuple[str | None, int, int | None]:
    """:func:`_setting` of the result's checkpoint; (None, 0, None) when it cannot be found."""
    path = r.checkpoint_file()
    return _setting(str(path)) if path is not None else (None, 0, None)


def _extract(histories) -> Callable[[str], Callable[[Result], float | None]]:
    return lambda name: (lambda r: Sel.SELECTIONS[name].extract(r, (histories or {}).get(r.path)))


def _students(results, method: str) -> list[Result]:
    return [r for r in results if r.method == method and r.model == "student"]


def _stat_row(values) -> dict:
    st = S.describe(values)
    return {"mean": st.mean if st else math.nan,
            "std": st.std if st and st.std is not None else math.nan, "n": st.n if st else 0}


# ---------------------------------------------------------------- Table 10
def offline_table(results: Sequence[Result], histories=None, interval: float = 1.5) -> pd.DataFrame:
    """Offline KD vs spaced-online (at ``interval``, else the smallest interval run) for each
    (dataset, student network, teacher) that has offline results. Columns: dataset, network,
    teacher, selection, offline_{mean,std,n}, spaced_{mean,std,n}, interval, delta (spaced −
    offline), n_pairs, p_value, significant (paired t-test over seeds), not_converged (runs of
    the comparison that have not converged)."""
    ext, rows = _extract(histories), []
    offline = _students(results, "offline")
    spaced = [r for r in _students(results, "spaced-online") if run_setting(r)[1:] == PLAIN]
    cells = sorted({(r.dataset, r.network, run_setting(r)[0] or "?") for r in offline})
    for dataset, network, teacher in cells:
        off = [r for r in offline if (r.dataset, r.network, run_setting(r)[0] or "?")
               == (dataset, network, teacher)]
        sp_all = [r for r in spaced if (r.dataset, r.network, run_setting(r)[0])
                  == (dataset, network, teacher)]
        ivals = sorted({r.interval for r in sp_all if r.interval is not None})
        s = interval if interval in ivals else (ivals[0] if ivals else math.nan)
        sp = [r for r in sp_all if r.interval == s]
        for name in SELECTIONS:
            fn = ext(name)
            a, b = _stat_row(fn(r) for r in off), _stat_row(fn(r) for r in sp)
            if a["n"] == 0 and b["n"] == 0:
                continue
            test = S.paired_test(Sel.seeded(sp, fn), Sel.seeded(off, fn)) if a["n"] and b["n"] else None
            rows.append({"dataset": dataset, "network": network, "teacher": teacher,
                         "selection": name, **{f"offline_{k}": v for k, v in a.items()},
                         **{f"spaced_{k}": v for k, v in b.items()}, "interval": s,
                         "delta": b["mean"] - a["mean"] if a["n"] and b["n"] else math.nan,
                         "n_pairs": test.n if test else 0, "p_value": test.p if test else math.nan,
                         "significant": test.significant if test else None,
                         "not_converged": len(stale_runs([*off, *sp], histories))})
    return pd.DataFrame(rows, columns=["dataset", "network", "teacher", "selection",
                                       "offline_mean", "offline_std", "offline_n", "spaced_mean",
                                       "spaced_std", "spaced_n", "interval", "delta", "n_pairs",
                                       "p_value", "significant", "not_converged"])


def offline_display(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "Dataset": df["dataset"], "Student": df["network"], "Teacher": df["teacher"],
        "accuracy": df["selection"].map(lambda n: Sel.SELECTIONS[n].label),
        "Offline KD": [C.fmt_stat(m, s, 100) for m, s in zip(df["offline_mean"], df["offline_std"])],
        "Spaced KD": [C.fmt_stat(m, s, 100) for m, s in zip(df["spaced_mean"], df["spaced_std"])],
        "s (epochs)": df["interval"].map(fmt_interval),
        "Δ (pp)": [C.fmt_num(d * 100, "+.2f") + C.stale_mark(k)
                   for d, k in zip(df["delta"], df["not_converged"])],
        "seeds (offline, spaced)": [f"{a}, {b}" for a, b in zip(df["offline_n"], df["spaced_n"])],
        "p (paired t)": [C.fmt_num(p, ".3g") for p in df["p_value"]],
    })


# ---------------------------------------------------------------- Table 11
def constant_ahead_table(results: Sequence[Result], histories=None) -> pd.DataFrame:
    """Accuracy vs lead/interval s of constant-ahead and (plain) spaced-online, s = 0 = online
    KD for both, for each (dataset, network) with constant-ahead results. Long form: dataset,
    network, selection, method, interval, mean, std, n, not_converged."""
    ext, rows = _extract(histories), []
    ahead = _students(results, "constant-ahead")
    spaced = [r for r in _students(results, "spaced-online") if run_setting(r)[1:] == PLAIN]
    online = _students(results, "online")
    for dataset, network in sorted({(r.dataset, r.network) for r in ahead}):
        def cell(rs):
            return [r for r in rs if (r.dataset, r.network) == (dataset, network)]
        for name in SELECTIONS:
            fn = ext(name)
            for method, rs in (("constant-ahead", cell(ahead)), ("spaced-online", cell(spaced))):
                entries = [(0.0, cell(online))] + [
                    (s, [r for r in rs if r.interval == s])
                    for s in sorted({r.interval for r in rs if r.interval})]
                for s, group in entries:
                    st = _stat_row(fn(r) for r in group)
                    if st["n"]:
                        rows.append({"dataset": dataset, "network": network, "selection": name,
                                     "method": method, "interval": s, **st,
                                     "not_converged": len(stale_runs(group, histories))})
    return pd.DataFrame(rows, columns=["dataset", "network", "selection", "method", "interval",
                                       "mean", "std", "n", "not_converged"])


def constant_ahead_display(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, network, selection, method), one column per s (s = 0: online KD)."""
    if df.empty:
        return df
    cells = df.assign(cell=[f"{C.fmt_stat(m, s, 100)} ({n}){C.stale_mark(k)}"
                            for m, s, n, k in zip(df["mean"], df["std"], df["n"],
                                                  df["not_converged"])],
                      s=df["interval"].map(lambda s: "s = 0 (online)" if s == 0 else f"s = {s:g}"))
    order = list(dict.fromkeys(cells.sort_values("interval")["s"]))
    wide = cells.pivot_table(index=["dataset", "network", "selection", "method"], columns="s",
                             values="cell", aggfunc="first").reindex(columns=order).reset_index()
    wide["selection"] = wide["selection"].map(lambda n: Sel.SELECTIONS[n].label)
    wide.columns.name = None
    return wide.rename(columns={"dataset": "Dataset", "network": "Network",
                                "selection": "accuracy", "method": "Method"})


# ---------------------------------------------------------------- Fig. 3
def critical_period_table(results: Sequence[Result], histories=None) -> pd.DataFrame:
    """Accuracy vs the epoch spaced KD starts, per (dataset, network, interval, variant):
    variant ``window N`` (Fig. 3a) or ``to the end`` (Fig. 3b; its start 0 is plain
    spaced-online).
    Online KD is added as variant ``online`` (start NaN), the reference level. Long form:
    dataset, network, interval, selection, variant, start_epoch, mean, std, n, not_converged
    (runs of the row that have not converged). Empty unless
    some spaced-online result has a start epoch > 0 or a window."""
    ext, rows = _extract(histories), []
    spaced = _students(results, "spaced-online")
    crit = [r for r in spaced if run_setting(r)[1:] != PLAIN]
    online = _students(results, "online")
    for dataset, network, s in sorted({(r.dataset, r.network, r.interval) for r in crit}):
        mine = [r for r in spaced if (r.dataset, r.network, r.interval) == (dataset, network, s)]
        groups: dict[tuple, list[Result]] = {}
        for r in mine:                  # plain spaced-online is Fig. 3b's start-0 point
            _, e0, w = run_setting(r)
            groups.setdefault(("to the end" if w is None else f"window {w}", e0), []).append(r)
        base = [r for r in online if (r.dataset, r.network) == (dataset, network)]
        for name in SELECTIONS:
            fn = ext(name)
            for (variant, e0), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
                st = _stat_row(fn(r) for r in rs)
                if st["n"]:
                    rows.append({"dataset": dataset, "network": network, "interval": s,
                                 "selection": name, "variant": variant, "start_epoch": e0, **st,
                                 "not_converged": len(stale_runs(rs, histories))})
            st = _stat_row(fn(r) for r in base)
            if st["n"]:
                rows.append({"dataset": dataset, "network": network, "interval": s,
                             "selection": name, "variant": "online", "start_epoch": math.nan, **st,
                             "not_converged": len(stale_runs(base, histories))})
    return pd.DataFrame(rows, columns=["dataset", "network", "interval", "selection", "variant",
                                       "start_epoch", "mean", "std", "n", "not_converged"])


def critical_period_display(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "Dataset": df["dataset"], "Network": df["network"], "s (epochs)": df["interval"].map(fmt_interval),
        "accuracy": df["selection"].map(lambda n: Sel.SELECTIONS[n].label), "Spaced KD": df["variant"],
        "start epoch": df["start_epoch"].map(lambda e: "—" if math.isnan(e) else f"{e:g}"),
        "accuracy (%)": [C.fmt_stat(m, s, 100) + C.stale_mark(k)
                         for m, s, k in zip(df["mean"], df["std"], df["not_converged"])],
        "seeds": df["n"]})


def critical_period_figure(df: pd.DataFrame, title: str = "", stale: Sequence[str] = ()):
    """Fig. 3: accuracy (%) vs start epoch, one line per variant, online KD as a dashed level;
    ``stale`` (runs drawn that have not converged) are named under it."""
    import matplotlib.pyplot as plt

    sel = df[df["selection"] == "final"] if (df["selection"] == "final").any() else df
    fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    for variant, d in sel[sel["variant"] != "online"].groupby("variant", sort=True):
        d = d.sort_values("start_epoch")
        ax.errorbar(d["start_epoch"], d["mean"] * 100, yerr=d["std"].fillna(0) * 100, marker="o",
                    capsize=3, label=f"spaced KD, {variant}")
    ref = sel[sel["variant"] == "online"]
    if len(ref):
        ax.axhline(float(ref["mean"].iloc[0]) * 100, color="0.4", linestyle="--", label="online KD")
    ax.set_xlabel("epoch spaced KD starts (spaced.start_epoch)")
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title(title or "Critical period of spaced KD (paper Fig. 3)")
    ax.legend(fontsize=8)
    return not_converged_note(fig, stale)


# ---------------------------------------------------------------- report sections
def sections(results: Sequence[Result], histories, out: Path, written: dict,
             write_table: Callable, save_figure: Callable) -> list[str]:
    """Markdown for the Table 10, Table 11 and Fig. 3 layouts the results support (none
    otherwise); tables and figures are written through the report's own writers."""
    md: list[str] = []
    off = offline_table(results, histories)
    if len(off):
        md += ["## Offline vs spaced KD (paper Table 10 layout)", "",
               "Offline KD (frozen pretrained teacher) against spaced-online with the same teacher "
               "architecture; Δ = spaced − offline (pp), paired t-test over seeds.", "",
               write_table(out, "offline_vs_spaced", off, offline_display(off), written), ""]
    ahead = constant_ahead_table(results, histories)
    if len(ahead):
        md += ["## Constant-ahead teacher vs interval (paper Table 11 layout)", "",
               "Accuracy (%) mean ± std (seeds) of a teacher kept s epochs ahead (constant-ahead) "
               "next to spaced KD at the same s; s = 0 is online KD for both.", "",
               write_table(out, "constant_ahead", ahead, constant_ahead_display(ahead), written), ""]
    crit = critical_period_table(results, histories)
    if len(crit):
        md += ["## Critical period (paper Fig. 3 layout)", "",
               write_table(out, "critical_period", crit, critical_period_display(crit), written), ""]
        for (dataset, network, s), d in crit.groupby(["dataset", "network", "interval"]):
            stem = f"critical_period_{dataset}_{network}_s{s:g}"
            drawn = [r for r in results if (r.dataset, r.network) == (dataset, network)
                     and r.model == "student" and (r.method == "online" or (
                         r.method == "spaced-online" and r.interval == s))]
            written["figures"][stem] = save_figure(
                critical_period_figure(d, f"{dataset} / {network}, s = {s:g}",
                                       stale_runs(drawn, histories)), out / "figures", stem)
            md += [f"![critical period](figures/{stem}.png)", ""]
    return md
