"""Tables in the paper's layout: accuracy (Tables 1/2), flatness per method, spaced-vs-counterpart
tests, accuracy vs interval (Table 6). The statistics they share are in
:mod:`flatkd.report.stats`; corruption and BIM tables over seeds in
:mod:`flatkd.report.robustness`.

Every table is built twice: a numeric :class:`pandas.DataFrame` (what the CSV holds and the tests
check) and a display frame of formatted strings (what the Markdown shows). Across seeds a cell is
``mean ± std`` (sample std, ddof = 1); a spaced method is compared with its non-spaced counterpart
(spaced-online ↔ online, spaced-self ↔ self) by a paired t-test over the seeds both have
(:func:`flatkd.evidence.stats.paired_test`, Holm-adjusted over the rows of one table), and the
verdict is written out in words (:class:`flatkd.evidence.verdicts.Verdict`).

Accuracy comes in *selections* (:data:`SELECTIONS`): the final model's clean test accuracy (from
the robustness suite), the best test accuracy over the training epochs (from the checkpoint's
per-epoch metrics), and for self KD the ensemble of all exits (final and best), when the
checkpoint's metrics carry ``ensemble_test_acc``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..evidence.histories import Histories
from ..evidence.results import (COUNTERPART, FAMILIES, GroupKey, Result, dataset_facts,
                                fmt_interval, group, method_label)
from ..evidence.selections import (METRICS, SELECTIONS, Metric, by_seed, hessian_section,
                                   hessian_trace, history_of, seeded, top_eigenvalue)
from ..evidence.stats import PairedTest, describe, holm_adjusted, paired_test
from ..evidence.verdicts import Verdict, budgets_differ, stale_runs
from .cells import fmt_num, fmt_stat, stale_mark, stat_cols


def _test_cols(test: PairedTest | None, a: str, b: str, metric: Metric,
               missing: str = "") -> dict:
    """Paired-test columns; with no test, ``missing`` (or a generic reason) is the statement."""
    if test is None:
        return {"n_pairs": 0, "t": math.nan, "p_value": math.nan, "p_holm": math.nan,
                "detectable": math.nan, "significant": None,
                "statement": missing or f"cannot compare {a} with {b}: no {metric.label} "
                                        "on one side"}
    return {"n_pairs": test.n, "t": test.t, "p_value": test.p, "p_holm": test.p_holm,
            "detectable": test.detectable, "significant": test.significant,
            "statement": test.statement(a, b, metric.unit, metric.scale, metric.digits)}


#: what the paper's Tables 1/2 report, for the report text.
PAPER_SELECTION_NOTE = (
    "*final* is the clean test accuracy of the evaluated (last-epoch) checkpoint; *best over "
    "epochs* is the highest per-epoch test accuracy recorded during training (the checkpoint's "
    "`student_test_acc` column), i.e. an epoch chosen on the test set, which is optimistic. "
    "The paper does not say which of the two its Tables 1 and 2 report (it says results are "
    "averaged over three repeats); the official training scripts print the best test accuracy "
    "over epochs, so the paper's numbers are most likely *best over epochs*. *best over epochs, "
    "BatchNorm recalibrated* (runs trained with `metrics.bn_recalibrated=true` only) takes "
    "the maximum of the per-epoch accuracies after re-estimating the BatchNorm statistics, "
    "so a stale-statistics dip cannot pick the epoch. For self KD the "
    "student is the deepest exit; *exit ensemble* averages the softmax of all exits.")


def _holm_over_table(pending: list[tuple[PairedTest | None, dict]]
                     ) -> list[tuple[PairedTest | None, dict]]:
    """``(test, verdict fields)`` of one table's rows with the tests Holm-adjusted over the
    table."""
    tests = holm_adjusted([t for t, _ in pending])
    return [(t, kw) for t, (_, kw) in zip(tests, pending)]


def _with_verdicts(df: pd.DataFrame, verdicts: list[Verdict | None]) -> pd.DataFrame:
    """``df`` with its rows' :class:`Verdict` objects (None: nothing to compare) in
    ``df.attrs["verdicts"]``, one per row: what the report and the notebooks read."""
    df.attrs["verdicts"] = verdicts
    return df


def holm_within(df: pd.DataFrame, keep: pd.Series) -> pd.DataFrame:
    """The rows of a verdict table (:func:`accuracy_table`, :func:`comparison_table`) where
    ``keep`` holds, as a table of their own: Holm's correction redone over these rows' tests,
    and their ``p_holm``, ``significant`` and ``verdict`` columns and verdict objects with it."""
    verdicts = [v for v, k in zip(df.attrs.get("verdicts", [None] * len(df)), keep) if k]
    sub = df[keep.to_numpy()].copy()
    tests = holm_adjusted([v.test if v is not None else None for v in verdicts])
    verdicts = [v if v is None else replace(v, test=t) for v, t in zip(verdicts, tests)]
    sub["p_holm"] = [t.p_holm if t is not None else math.nan for t in tests]
    sub["significant"] = [t.significant if t is not None else None for t in tests]
    sub["verdict"] = [v.sentence if v is not None else st
                      for v, st in zip(verdicts, sub["statement"])]
    return _with_verdicts(sub, verdicts)


def _mean_steps(results: Sequence[Result], histories: Histories | None) -> float:
    steps = [h.step for h in (history_of(histories, r) for r in results) if h is not None]
    return float(np.mean(steps)) if steps else math.nan


def accuracy_table(results: Iterable[Result], histories: Histories | None = None
                   ) -> pd.DataFrame:
    """Tables 1/2 layout: one row per (KD family, dataset, network, spaced interval, selection).

    ``histories`` maps a result's path to its :class:`TrainingHistory` (None when its
    checkpoint is unreadable); without it only the *final* selection can be computed.
    Columns (accuracies are fractions): ``family, dataset, network, interval, selection``, then
    ``wo_kd_*`` (baseline), ``wo_ours_*`` (online or self), ``w_ours_*`` (spaced) with
    ``_mean/_std/_n``, ``delta`` = w_ours_mean − wo_ours_mean, the paired test columns
    ``n_pairs, t, p_value, p_holm, detectable, significant, statement`` (``p_holm``: Holm over
    the table's tests; ``detectable``: smallest difference found with 80 % power),
    ``verdict`` (a full sentence with means ±
    std), and ``wo_ours_steps``/``w_ours_steps`` (mean student optimizer steps from the
    checkpoints; NaN without them). Student models only. The *final* row is always present;
    the other selections only where some value exists.
    """
    metric = METRICS.get("accuracy")
    groups = {k: v for k, v in group(results).items() if k.model == "student"}
    rows, pending = [], []
    for family, (base_m, plain_m, spaced_m) in FAMILIES.items():
        cells = sorted({(k.dataset, k.network) for k in groups if k.method in (plain_m, spaced_m)})
        for dataset, network in cells:
            def pick(method, interval=None):
                return groups.get(GroupKey(dataset, network, method, interval, "student"), [])
            intervals = sorted({k.interval for k in groups if k.method == spaced_m
                                and (k.dataset, k.network) == (dataset, network)}) or [None]
            base, plain = pick(base_m), pick(plain_m)
            for s in intervals:
                spaced = pick(spaced_m, s) if s is not None else []
                for sel in SELECTIONS.values():
                    if sel.families is not None and family not in sel.families:
                        continue

                    def fn(r, sel=sel):
                        return sel.extract(r, history_of(histories, r))
                    a_st = describe(fn(r) for r in spaced)
                    b_st = describe(fn(r) for r in plain)
                    k_st = describe(fn(r) for r in base)
                    if sel.name != "final" and not (a_st or b_st):
                        continue
                    test = paired_test(seeded(spaced, fn), seeded(plain, fn)) \
                        if a_st and b_st else None
                    row = {"family": family, "dataset": dataset, "network": network,
                           "interval": s, "selection": sel.name}
                    row |= stat_cols("wo_kd", k_st)
                    row |= stat_cols("wo_ours", b_st)
                    row |= stat_cols("w_ours", a_st)
                    row["delta"] = a_st.mean - b_st.mean if a_st and b_st else math.nan
                    missing = "".join(f"no {m} results; " for m, rs in ((spaced_m, spaced),
                                                                          (plain_m, plain))
                                      if not rs)
                    row["missing"] = missing.rstrip("; ") + (" to compare" if missing else "")
                    row["wo_ours_steps"] = _mean_steps(plain, histories)
                    row["w_ours_steps"] = _mean_steps(spaced, histories)
                    rows.append(row)
                    pending.append((test, dict(
                        spaced=method_label(spaced_m, s), plain=plain_m,
                        what=f"accuracy ({sel.label})", a=a_st, b=b_st,
                        n_test=dataset_facts(dataset)[1],
                        stale=stale_runs(spaced + plain, histories),
                        steps=(row["w_ours_steps"], row["wo_ours_steps"]))))
    verdicts = []
    for row, (test, kw) in zip(rows, _holm_over_table(pending)):
        missing = row.pop("missing")
        row |= _test_cols(test, kw["spaced"], kw["plain"], metric, missing)
        v = None if missing else Verdict(test=test, **kw)
        row["verdict"] = row["statement"] if v is None else v.sentence
        row["not_converged"] = len(kw["stale"])
        verdicts.append(v)
    return _with_verdicts(pd.DataFrame(rows, columns=_ACC_COLUMNS), verdicts)


_ACC_COLUMNS = (["family", "dataset", "network", "interval", "selection"]
                + [f"{p}_{s}" for p in ("wo_kd", "wo_ours", "w_ours") for s in ("mean", "std", "n")]
                + ["delta", "n_pairs", "t", "p_value", "p_holm", "detectable", "significant",
                   "statement", "verdict", "not_converged",
                   "wo_ours_steps", "w_ours_steps"])


def flatness_table(results: Iterable[Result]) -> pd.DataFrame:
    """Hessian trace and top eigenvalue per configuration (mean ± std over seeds).

    Columns: ``dataset, network, method, interval, model, label``, ``trace_*`` and
    ``top_eig_*`` with ``_mean/_std/_n``, ``trace_stderr`` (mean of the estimator's own standard
    errors), ``n_samples`` and ``backend`` (from the first seed). Configurations without a
    flatness section are left out.
    """
    rows = []
    for k, rs in group(results).items():
        hs = [hessian_section(r) for r in rs if hessian_section(r)]
        if not hs:
            continue
        row = {"dataset": k.dataset, "network": k.network, "method": k.method,
               "interval": k.interval, "model": k.model, "label": k.label}
        row |= stat_cols("trace", describe(hessian_trace(r) for r in rs))
        row |= stat_cols("top_eig", describe(top_eigenvalue(r) for r in rs))
        se = [h.get("trace", {}).get("stderr") for h in hs]
        row["trace_stderr"] = float(np.mean(se)) if all(s is not None for s in se) else math.nan
        row["n_samples"] = hs[0].get("n_samples")
        row["backend"] = hs[0].get("backend")
        rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "network", "method", "interval", "model", "label",
                                       *[f"{p}_{s}" for p in ("trace", "top_eig")
                                         for s in ("mean", "std", "n")],
                                       "trace_stderr", "n_samples", "backend"])


_COMPARISON_COLUMNS = [
    "dataset", "network", "model", "metric", "spaced", "counterpart",
    *[f"{p}_{s}" for p in ("spaced", "base") for s in ("mean", "std", "n")],
    "delta", "n_pairs", "t", "p_value", "p_holm", "detectable", "significant", "statement",
    "verdict", "spaced_steps", "base_steps"]


def _metric_rows(k: GroupKey, spaced: Sequence[Result], plain_label: str,
                 plain: Sequence[Result], metrics: Sequence[str], histories: Histories | None,
                 steps: tuple[float, float]) -> tuple[list[dict], list[tuple]]:
    """One :func:`comparison_table` row per metric with values on both sides, and its
    ``(paired test, verdict fields)``; ``steps`` = both sides' mean optimizer steps."""
    rows, pending = [], []
    for name in metrics:
        m = METRICS.get(name)
        a_st = describe(m.extract(r) for r in spaced)
        b_st = describe(m.extract(r) for r in plain)
        if a_st is None or b_st is None:
            continue
        row = {"dataset": k.dataset, "network": k.network, "model": k.model, "metric": name,
               "spaced": k.label, "counterpart": plain_label}
        row |= stat_cols("spaced", a_st) | stat_cols("base", b_st)
        row["delta"] = a_st.mean - b_st.mean
        row["spaced_steps"], row["base_steps"] = steps
        rows.append(row)
        what = m.label + (" (lower = flatter)" if not m.higher_is_better else "")
        pending.append((paired_test(by_seed(spaced, m), by_seed(plain, m)), dict(
            spaced=k.label, plain=plain_label, what=what, a=a_st, b=b_st,
            scale=m.scale, unit=m.unit, digits=m.digits, higher_is_better=m.higher_is_better,
            n_test=dataset_facts(k.dataset)[1] if name == "accuracy" else None,
            stale=stale_runs([*spaced, *plain], histories), steps=steps)))
    return rows, pending


def _tested(rows: list[dict], pending: list[tuple]) -> pd.DataFrame:
    """``rows`` with their tests Holm-adjusted over the table, the test columns and verdicts."""
    verdicts = []
    for row, (test, kw) in zip(rows, _holm_over_table(pending)):
        m = METRICS.get(row["metric"])
        row |= _test_cols(test, kw["spaced"], kw["plain"], m)
        verdicts.append(Verdict(test=test, **kw))
        row["verdict"] = verdicts[-1].sentence
    return _with_verdicts(pd.DataFrame(rows, columns=_COMPARISON_COLUMNS), verdicts)


def comparison_table(results: Iterable[Result], metrics: Sequence[str] = (
        "accuracy", "hessian_trace", "top_eigenvalue"), histories: Histories | None = None
                     ) -> pd.DataFrame:
    """Every spaced configuration vs its non-spaced counterpart, per metric, with a paired test.

    Columns: ``dataset, network, model, metric, spaced, counterpart``, ``spaced_*`` and
    ``base_*`` (``_mean/_std/_n``, in the metric's raw units), ``delta`` (difference of means),
    ``n_pairs, t, p_value, p_holm, detectable, significant, statement, verdict``
    (:class:`~flatkd.evidence.verdicts.Verdict`, also in ``df.attrs["verdicts"]``; for the
    flatness metrics a gain is a decrease), ``spaced_steps, base_steps`` (mean student
    optimizer steps; NaN without histories). Rows without values on both sides are left out.
    """
    groups = group(results)
    rows, pending = [], []
    for k, spaced in groups.items():
        if k.method not in COUNTERPART:
            continue
        base_key = GroupKey(k.dataset, k.network, COUNTERPART[k.method], None, k.model)
        base = groups.get(base_key)
        if not base:
            continue
        r, p = _metric_rows(k, spaced, base_key.label, base, metrics, histories,
                            (_mean_steps(spaced, histories), _mean_steps(base, histories)))
        rows += r
        pending += p
    return _tested(rows, pending)


def step_matched_table(results: Iterable[Result], controls: Iterable[Result],
                       histories: Histories | None = None, metrics: Sequence[str] = (
                           "accuracy", "hessian_trace", "top_eigenvalue")) -> pd.DataFrame:
    """Every spaced configuration whose students took more (or fewer) optimizer steps than its
    counterpart's, against a *step-matched control*: the counterpart method trained for the
    spaced method's number of steps (Alg. 4's spaced self-KD takes two steps per batch, so
    self KD for twice the epochs), from ``controls``, paired by seed.

    Same columns as :func:`comparison_table` (``counterpart`` names the control and its steps,
    ``base_steps`` its steps). ``histories`` must cover both ``results`` and ``controls``.
    ``df.attrs["unmatched"]`` says, per spaced configuration with unequal budgets, why it has
    no control row (no control of its counterpart, or one with other step counts).
    """
    groups, cgroups = group(results), group(controls)
    rows, pending, unmatched = [], [], []
    for k, spaced in groups.items():
        if k.method not in COUNTERPART:
            continue
        base_key = GroupKey(k.dataset, k.network, COUNTERPART[k.method], None, k.model)
        steps_s = _mean_steps(spaced, histories)
        steps_b = _mean_steps(groups.get(base_key, []), histories)
        if not budgets_differ((steps_s, steps_b)):
            continue
        ctrl = cgroups.get(base_key, [])
        steps_c = _mean_steps(ctrl, histories)
        if not ctrl or budgets_differ((steps_s, steps_c)) or math.isnan(steps_c):
            have = (f"the control runs of {base_key.label} took {steps_c:,.0f}" if ctrl else
                    f"no control runs of {base_key.label} were given")
            unmatched.append(f"{k.label} ({steps_s:,.0f} steps) vs {base_key.label} "
                             f"({steps_b:,.0f}): {have}")
            continue
        r, p = _metric_rows(k, spaced, f"{base_key.label} ({steps_c:,.0f} steps)", ctrl,
                            metrics, histories, (steps_s, steps_c))
        rows += r
        pending += p
    df = _tested(rows, pending)
    df.attrs["unmatched"] = unmatched
    return df


def step_matched_display(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`step_matched_table` as formatted strings: :func:`comparison_display` with the
    control named and both sides' optimizer steps."""
    out = comparison_display(df).rename(columns={"Counterpart": "Control"})
    out.insert(3, "Control run", df["counterpart"].to_numpy())
    out.insert(6, "optimizer steps (spaced, control)",
               [f"{fmt_num(a, ',.0f')}, {fmt_num(b, ',.0f')}"
                for a, b in zip(df["spaced_steps"], df["base_steps"])])
    return out


# ---------------------------------------------------------------- accuracy vs interval (Table 6)

def interval_table(results: Iterable[Result], histories: Histories | None = None,
                   selections: Sequence[str] = ("final", "best")) -> pd.DataFrame:
    """Accuracy vs spaced interval s (paper Fig. 2 / Table 6), for every (dataset, network,
    spaced method) whose results span at least two intervals.

    One row per (dataset, network, family, selection, method, interval): ``method`` is the
    spaced method (``interval`` = s), its non-spaced counterpart (``interval`` = 0) or the
    baseline (``interval`` NaN, a reference level), with ``mean, std, n`` over seeds (fractions),
    ``delta`` (vs the counterpart), the paired test ``n_pairs, p_value, significant`` of each
    spaced interval against the counterpart and ``not_converged`` (how many of the cell's runs
    have not converged). Empty when no method spans two intervals.
    """
    groups = {k: v for k, v in group(results).items() if k.model == "student"}
    rows = []
    for family, (base_m, plain_m, spaced_m) in FAMILIES.items():
        cells = sorted({(k.dataset, k.network) for k in groups if k.method == spaced_m})
        for dataset, network in cells:
            ivals = sorted(k.interval for k in groups if k.method == spaced_m
                           and (k.dataset, k.network) == (dataset, network)
                           and k.interval is not None)
            if len(ivals) < 2:
                continue
            plain = groups.get(GroupKey(dataset, network, plain_m, None, "student"), [])
            base = groups.get(GroupKey(dataset, network, base_m, None, "student"), [])
            for name in selections:
                sel = SELECTIONS[name]

                def fn(r, sel=sel):
                    return sel.extract(r, history_of(histories, r))
                b_st = describe(fn(r) for r in plain)
                entries = [(base_m, math.nan, base), (plain_m, 0.0, plain)]
                entries += [(spaced_m, s, groups[GroupKey(dataset, network, spaced_m, s,
                                                          "student")]) for s in ivals]
                block = []
                for method, s, rs in entries:
                    st = describe(fn(r) for r in rs)
                    if st is None:
                        continue
                    row = {"dataset": dataset, "network": network, "family": family,
                           "selection": name, "method": method, "interval": s}
                    row |= {"mean": st.mean, "std": st.std if st.std is not None else math.nan,
                            "n": st.n}
                    test = (paired_test(seeded(rs, fn), seeded(plain, fn))
                            if method == spaced_m and b_st else None)
                    row["delta"] = st.mean - b_st.mean if method == spaced_m and b_st else math.nan
                    row |= {"n_pairs": test.n if test else 0,
                            "p_value": test.p if test else math.nan,
                            "significant": test.significant if test else None,
                            "not_converged": len(stale_runs(rs, histories))}
                    block.append(row)
                if sum(r["method"] == spaced_m for r in block) >= 2:
                    rows += block
    return pd.DataFrame(rows, columns=["dataset", "network", "family", "selection", "method",
                                       "interval", "mean", "std", "n", "delta", "n_pairs",
                                       "p_value", "significant", "not_converged"])


def interval_display(df: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 6 layout: one row per (dataset, network, family, selection); columns w/o KD,
    w/o (s = 0) and w/<s> per interval, each % mean ± std over seeds; ``*`` marks an interval
    whose paired t-test against s = 0 is significant."""
    ivals = sorted({s for s in df["interval"] if s == s and s > 0})
    out = []
    for (d, n, fam, sel), sub in df.groupby(["dataset", "network", "family", "selection"],
                                            sort=False):
        row = {"Dataset": d, "Network": n, "KD": fam, "accuracy": SELECTIONS[sel].label}
        cell = {(r["method"], r["interval"]): r for _, r in sub.iterrows()}
        base = [r for (m, s), r in cell.items() if s != s]
        row["w/o KD"] = (fmt_stat(base[0]["mean"], base[0]["std"], 100)
                         + stale_mark(base[0]["not_converged"]) if base else "—")
        plain = [r for (m, s), r in cell.items() if s == 0.0]
        row["w/o (s=0)"] = (fmt_stat(plain[0]["mean"], plain[0]["std"], 100)
                            + stale_mark(plain[0]["not_converged"]) if plain else "—")
        for s in ivals:
            r = [r for (m, si), r in cell.items() if si == s]
            row[f"w/{fmt_interval(s)}"] = (fmt_stat(r[0]["mean"], r[0]["std"], 100)
                                          + (" *" if r[0]["significant"] is True else "")
                                          + stale_mark(r[0]["not_converged"])
                                          if r else "—")
        out.append(row)
    return pd.DataFrame(out)


def accuracy_display(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1/2 columns as formatted strings (percent, mean ± std over seeds)."""
    out = pd.DataFrame({
        "KD": df["family"], "Dataset": df["dataset"], "Network": df["network"],
        "s (epochs)": df["interval"].map(fmt_interval),
        "accuracy": df["selection"].map(lambda n: SELECTIONS[n].label),
        "w/o KD": [fmt_stat(m, s, 100) for m, s in zip(df["wo_kd_mean"], df["wo_kd_std"])],
        "w/o Ours": [fmt_stat(m, s, 100) for m, s in zip(df["wo_ours_mean"], df["wo_ours_std"])],
        "w/ Ours": [fmt_stat(m, s, 100) for m, s in zip(df["w_ours_mean"], df["w_ours_std"])],
        "Δ": [fmt_num(d * 100, "+.2f") + stale_mark(k)
              for d, k in zip(df["delta"], df["not_converged"])],
        "seeds (w/o KD, w/o Ours, w/ Ours)": [
            f"{a}, {b}, {c}" for a, b, c in zip(df["wo_kd_n"], df["wo_ours_n"], df["w_ours_n"])],
        "p (paired t)": [fmt_num(p, ".3g") for p in df["p_value"]],
        "p (Holm)": [fmt_num(p, ".3g") for p in df["p_holm"]],
        "detectable Δ (80 % power)": [fmt_num(d * 100, ".2f") for d in df["detectable"]],
    })
    if df["wo_ours_steps"].notna().any() or df["w_ours_steps"].notna().any():
        out["optimizer steps (w/o Ours, w/ Ours)"] = [f"{fmt_num(a, ',.0f')}, {fmt_num(b, ',.0f')}"
                                      for a, b in zip(df["wo_ours_steps"], df["w_ours_steps"])]
    return out


def flatness_display(df: pd.DataFrame) -> pd.DataFrame:
    """Flatness per method as formatted strings."""
    return pd.DataFrame({
        "Dataset": df["dataset"], "Network": df["network"], "Method": df["label"],
        "Hessian trace": [fmt_stat(m, s) for m, s in zip(df["trace_mean"], df["trace_std"])],
        "top eigenvalue": [fmt_stat(m, s, digits=3) for m, s in zip(df["top_eig_mean"],
                                                                   df["top_eig_std"])],
        "seeds": df["trace_n"],
        "estimator stderr": [fmt_num(x, ".2f") for x in df["trace_stderr"]],
        "samples": df["n_samples"], "backend": df["backend"],
    })


def comparison_display(df: pd.DataFrame) -> pd.DataFrame:
    """Spaced-vs-counterpart tests as formatted strings (metric in display units)."""
    scale = df["metric"].map(lambda n: METRICS.get(n).scale)
    return pd.DataFrame({
        "Dataset": df["dataset"], "Network": df["network"],
        "Metric": df["metric"].map(lambda n: METRICS.get(n).label),
        "Spaced": [fmt_stat(m, s, k) for m, s, k in zip(df["spaced_mean"], df["spaced_std"], scale)],
        "Counterpart": [fmt_stat(m, s, k) for m, s, k in zip(df["base_mean"], df["base_std"],
                                                             scale)],
        "p (paired t)": [fmt_num(p, ".3g") for p in df["p_value"]],
        "Verdict": df["statement"],
    })


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (all cells rendered with ``str``)."""
    def cell(x) -> str:
        s = "—" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)
        return s.replace("|", "\\|").replace("\n", " ")
    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"
