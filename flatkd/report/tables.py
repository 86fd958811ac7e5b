"""Tables in the paper's layout: accuracy (Tables 1/2), flatness per method, spaced-vs-counterpart tests.

Every table is built twice: a numeric :class:`pandas.DataFrame` (what the CSV holds and the tests
check) and a display frame of formatted strings (what the Markdown shows). Across seeds a cell is
``mean ± std`` (sample std, ddof = 1); a spaced method is compared with its non-spaced counterpart
(spaced-online ↔ online, spaced-self ↔ self) by a paired t-test over the seeds both have
(:func:`scipy.stats.ttest_rel`), and the verdict is written out in words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..registry import Registry
from .results import COUNTERPART, FAMILIES, GroupKey, Result, fmt_interval, group, method_label

ALPHA = 0.05


@dataclass(frozen=True)
class Metric:
    """A scalar read from one result. ``scale`` converts to display units (100 → percent)."""

    name: str
    label: str
    unit: str
    scale: float
    digits: int
    extract: Callable[[Result], float | None]


METRICS: Registry[Metric] = Registry("metric")


def _register(metric: Metric) -> Metric:
    return METRICS.register(metric.name)(metric)


def _clean_accuracy(r: Result) -> float | None:
    return (r.robustness or {}).get("clean_accuracy")


def _hessian(r: Result) -> Mapping:
    return (r.flatness or {}).get("hessian") or {}


def _trace(r: Result) -> float | None:
    return (_hessian(r).get("trace") or {}).get("mean")


def _top_eig(r: Result) -> float | None:
    eigs = _hessian(r).get("top_eigenvalues") or []
    return max(eigs) if eigs else None


_register(Metric("accuracy", "test accuracy", "%", 100.0, 2, _clean_accuracy))
_register(Metric("hessian_trace", "Hessian trace", "", 1.0, 2, _trace))
_register(Metric("top_eigenvalue", "top Hessian eigenvalue", "", 1.0, 2, _top_eig))


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof = 1; None for one value) of ``n`` values."""

    mean: float
    std: float | None
    n: int


def describe(values: Iterable[float]) -> Stat | None:
    """``Stat`` of the finite values, None when there are none."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return None
    return Stat(float(v.mean()), float(v.std(ddof=1)) if v.size >= 2 else None, int(v.size))


@dataclass(frozen=True)
class PairedTest:
    """Paired t-test of ``a − b`` over the seeds both have (``n`` pairs).

    ``t``/``p`` are NaN when undefined (n < 2, or all paired differences equal).
    ``significant`` is None when no test was possible.
    """

    n: int
    mean_diff: float
    t: float
    p: float
    alpha: float
    significant: bool | None

    def statement(self, a: str, b: str, unit: str = "", scale: float = 1.0,
                  digits: int = 2) -> str:
        """One plain sentence with the verdict, e.g. ``"... is NOT significant (p = 0.31 ≥ 0.05)"``."""
        diff = f"{a} − {b} = {self.mean_diff * scale:+.{digits}f}{_unit(unit, pp=True)}"
        if self.n < 2:
            return f"{diff} on {self.n} paired seed(s): too few for a significance test"
        if self.significant is None:
            return (f"{diff}: the paired differences are identical over {self.n} seeds, "
                    "so the t-test is undefined")
        verdict = "significant" if self.significant else "NOT significant"
        cmp = "<" if self.significant else "≥"
        return (f"{diff} is {verdict} (paired t-test over {self.n} seeds, "
                f"p = {self.p:.3g} {cmp} {self.alpha:g})")


def _unit(unit: str, pp: bool = False) -> str:
    if unit == "%":
        return " pp" if pp else "%"
    return f" {unit}" if unit else ""


def paired_test(a: Mapping[int, float], b: Mapping[int, float], alpha: float = ALPHA) -> PairedTest:
    """Paired t-test of ``a[seed] − b[seed]`` over the common seeds (``scipy.stats.ttest_rel``)."""
    seeds = sorted(set(a) & set(b))
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    mean_diff = float(np.mean(x - y)) if seeds else math.nan
    if len(seeds) < 2 or np.allclose(x - y, (x - y)[0], rtol=0, atol=1e-15):
        return PairedTest(len(seeds), mean_diff, math.nan, math.nan, alpha, None)
    res = stats.ttest_rel(x, y)
    return PairedTest(len(seeds), mean_diff, float(res.statistic), float(res.pvalue), alpha,
                      bool(res.pvalue < alpha))


def by_seed(results: Sequence[Result], metric: Metric) -> dict[int, float]:
    """``{seed: value}`` of results that have a seed and a value for ``metric``."""
    out = {}
    for r in results:
        v = metric.extract(r)
        if r.seed is not None and v is not None:
            out[r.seed] = float(v)
    return out


def _stat_cols(prefix: str, st: Stat | None) -> dict:
    return {f"{prefix}_mean": st.mean if st else math.nan,
            f"{prefix}_std": st.std if st and st.std is not None else math.nan,
            f"{prefix}_n": st.n if st else 0}


def _test_cols(test: PairedTest | None, a: str, b: str, metric: Metric,
               missing: str = "") -> dict:
    """Paired-test columns; with no test, ``missing`` (or a generic reason) is the statement."""
    if test is None:
        return {"n_pairs": 0, "t": math.nan, "p_value": math.nan, "significant": None,
                "statement": missing or f"cannot compare {a} with {b}: no {metric.label} "
                                        "on one side"}
    return {"n_pairs": test.n, "t": test.t, "p_value": test.p, "significant": test.significant,
            "statement": test.statement(a, b, metric.unit, metric.scale, metric.digits)}


def accuracy_table(results: Iterable[Result], steps: Mapping[GroupKey, float] | None = None
                   ) -> pd.DataFrame:
    """Tables 1/2 layout: one row per (KD family, dataset, network, spaced interval).

    Columns (accuracies are fractions): ``family, dataset, network, interval``, then
    ``wo_kd_*`` (baseline), ``wo_ours_*`` (online or self), ``w_ours_*`` (spaced) with
    ``_mean/_std/_n``, ``delta`` = w_ours_mean − wo_ours_mean, the paired test columns
    ``n_pairs, t, p_value, significant, statement``, and ``w_ours_steps``/``wo_ours_steps``
    (mean optimizer steps, when ``steps`` gives them; NaN otherwise). Student models only.
    """
    metric = METRICS.get("accuracy")
    groups = {k: v for k, v in group(results).items() if k.model == "student"}
    steps = steps or {}
    rows = []
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
                a_st = describe(metric.extract(r) for r in spaced)
                b_st = describe(metric.extract(r) for r in plain)
                test = (paired_test(by_seed(spaced, metric), by_seed(plain, metric))
                        if a_st and b_st else None)
                row = {"family": family, "dataset": dataset, "network": network, "interval": s}
                row |= _stat_cols("wo_kd", describe(metric.extract(r) for r in base))
                row |= _stat_cols("wo_ours", b_st)
                row |= _stat_cols("w_ours", a_st)
                row["delta"] = a_st.mean - b_st.mean if a_st and b_st else math.nan
                missing = "".join(f"no {m} results; " for m, rs in ((spaced_m, spaced),
                                                                      (plain_m, plain)) if not rs)
                row |= _test_cols(test, method_label(spaced_m, s), plain_m, metric,
                                  missing.rstrip("; ") + (" to compare" if missing else ""))
                row["wo_ours_steps"] = steps.get(GroupKey(dataset, network, plain_m, None,
                                                          "student"), math.nan)
                row["w_ours_steps"] = steps.get(GroupKey(dataset, network, spaced_m, s,
                                                         "student"), math.nan)
                rows.append(row)
    return pd.DataFrame(rows, columns=_ACC_COLUMNS)


_ACC_COLUMNS = (["family", "dataset", "network", "interval"]
                + [f"{p}_{s}" for p in ("wo_kd", "wo_ours", "w_ours") for s in ("mean", "std", "n")]
                + ["delta", "n_pairs", "t", "p_value", "significant", "statement",
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
        hs = [_hessian(r) for r in rs if _hessian(r)]
        if not hs:
            continue
        row = {"dataset": k.dataset, "network": k.network, "method": k.method,
               "interval": k.interval, "model": k.model, "label": k.label}
        row |= _stat_cols("trace", describe(_trace(r) for r in rs))
        row |= _stat_cols("top_eig", describe(_top_eig(r) for r in rs))
        se = [h.get("trace", {}).get("stderr") for h in hs]
        row["trace_stderr"] = float(np.mean(se)) if all(s is not None for s in se) else math.nan
        row["n_samples"] = hs[0].get("n_samples")
        row["backend"] = hs[0].get("backend")
        rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "network", "method", "interval", "model", "label",
                                       *[f"{p}_{s}" for p in ("trace", "top_eig")
                                         for s in ("mean", "std", "n")],
                                       "trace_stderr", "n_samples", "backend"])


def comparison_table(results: Iterable[Result], metrics: Sequence[str] = (
        "accuracy", "hessian_trace", "top_eigenvalue")) -> pd.DataFrame:
    """Every spaced configuration vs its non-spaced counterpart, per metric, with a paired test.

    Columns: ``dataset, network, model, metric, spaced, counterpart``, ``spaced_*`` and
    ``base_*`` (``_mean/_std/_n``, in the metric's raw units), ``delta`` (difference of means),
    ``n_pairs, t, p_value, significant, statement``. Rows without values on both sides are left out.
    """
    groups = group(results)
    rows = []
    for k, spaced in groups.items():
        if k.method not in COUNTERPART:
            continue
        base_key = GroupKey(k.dataset, k.network, COUNTERPART[k.method], None, k.model)
        base = groups.get(base_key)
        if not base:
            continue
        for name in metrics:
            m = METRICS.get(name)
            a_st = describe(m.extract(r) for r in spaced)
            b_st = describe(m.extract(r) for r in base)
            if a_st is None or b_st is None:
                continue
            row = {"dataset": k.dataset, "network": k.network, "model": k.model, "metric": name,
                   "spaced": k.label, "counterpart": base_key.label}
            row |= _stat_cols("spaced", a_st) | _stat_cols("base", b_st)
            row["delta"] = a_st.mean - b_st.mean
            test = paired_test(by_seed(spaced, m), by_seed(base, m))
            row |= _test_cols(test, k.label, base_key.label, m)
            rows.append(row)
    return pd.DataFrame(rows, columns=[
        "dataset", "network", "model", "metric", "spaced", "counterpart",
        *[f"{p}_{s}" for p in ("spaced", "base") for s in ("mean", "std", "n")],
        "delta", "n_pairs", "t", "p_value", "significant", "statement"])


def fmt_stat(mean: float, std: float, scale: float = 1.0, digits: int = 2) -> str:
    """``"97.22 ± 0.48"``; just the mean when std is NaN; ``"—"`` when the mean is NaN."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _fmt_num(x: float, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def accuracy_display(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1/2 columns as formatted strings (percent, mean ± std over seeds)."""
    out = pd.DataFrame({
        "KD": df["family"], "Dataset": df["dataset"], "Network": df["network"],
        "s (epochs)": df["interval"].map(fmt_interval),
        "w/o KD": [fmt_stat(m, s, 100) for m, s in zip(df["wo_kd_mean"], df["wo_kd_std"])],
        "w/o Ours": [fmt_stat(m, s, 100) for m, s in zip(df["wo_ours_mean"], df["wo_ours_std"])],
        "w/ Ours": [fmt_stat(m, s, 100) for m, s in zip(df["w_ours_mean"], df["w_ours_std"])],
        "Δ": [_fmt_num(d * 100, "+.2f") for d in df["delta"]],
        "seeds (w/o KD, w/o Ours, w/ Ours)": [
            f"{a}, {b}, {c}" for a, b, c in zip(df["wo_kd_n"], df["wo_ours_n"], df["w_ours_n"])],
        "p (paired t)": [_fmt_num(p, ".3g") for p in df["p_value"]],
    })
    if df["wo_ours_steps"].notna().any() or df["w_ours_steps"].notna().any():
        out["optimizer steps (w/o Ours, w/ Ours)"] = [f"{_fmt_num(a, '.0f')}, {_fmt_num(b, '.0f')}"
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
        "estimator stderr": [_fmt_num(x, ".2f") for x in df["trace_stderr"]],
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
        "p (paired t)": [_fmt_num(p, ".3g") for p in df["p_value"]],
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
