"""Statistics of a comparison over seeds: mean ± sample std (:func:`describe`) and the paired
t-test of a spaced method against its counterpart over common seeds (:func:`paired_test`,
:func:`scipy.stats.ttest_rel`, with its verdict as a sentence), Holm's correction over the
comparisons of one table (:func:`holm_adjusted`) and the smallest difference a design detects
with 80 % power (:func:`detectable_difference`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05


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

    ``t``/``p`` are NaN when undefined (n < 2, or all paired differences equal); ``sd`` is the
    sample std (ddof = 1) of the paired differences (NaN for n < 2). ``p_holm`` is the
    Holm-adjusted p over the ``family`` comparisons of one table (:func:`holm_adjusted`; equal
    to ``p`` until adjusted, ``family`` = 1). ``significant`` (``p_holm`` < α) is None when no
    test was possible.
    """

    n: int
    mean_diff: float
    t: float
    p: float
    alpha: float
    significant: bool | None
    sd: float = math.nan
    p_holm: float = math.nan
    family: int = 1

    @property
    def detectable(self) -> float:
        """The smallest true mean difference this design detects with 80 % power
        (:func:`detectable_difference` of ``sd`` and ``n``; NaN below 2 pairs)."""
        return detectable_difference(self.sd, self.n, self.alpha)

    def p_text(self) -> str:
        """``"p = 0.031"``, with the Holm-adjusted value when the table holds several tests."""
        if self.family <= 1:
            return f"p = {self.p:.3g}"
        return f"p = {self.p:.3g}, Holm-adjusted over {self.family} comparisons p = {self.p_holm:.3g}"

    def statement(self, a: str, b: str, unit: str = "", scale: float = 1.0,
                  digits: int = 2) -> str:
        """One plain sentence with the verdict, e.g. ``"... is NOT significant (p = 0.31 ≥ 0.05)"``."""
        diff = f"{a} − {b} = {self.mean_diff * scale:+.{digits}f}{unit_suffix(unit, pp=True)}"
        if self.n < 2:
            return f"{diff} on {self.n} paired seed(s): too few for a significance test"
        if self.significant is None:
            return (f"{diff}: the paired differences are identical over {self.n} seeds, "
                    "so the t-test is undefined")
        verdict = "significant" if self.significant else "NOT significant"
        cmp = "<" if self.significant else "≥"
        return (f"{diff} is {verdict} (paired t-test over {self.n} seeds, "
                f"{self.p_text()} {cmp} {self.alpha:g})")


def unit_suffix(unit: str, pp: bool = False) -> str:
    """" %" / " pp" (a difference of percentages) / " <unit>" / "" after a number."""
    if unit == "%":
        return " pp" if pp else "%"
    return f" {unit}" if unit else ""


def paired_test(a: Mapping[int, float], b: Mapping[int, float], alpha: float = ALPHA) -> PairedTest:
    """Paired t-test of ``a[seed] − b[seed]`` over the common seeds (``scipy.stats.ttest_rel``)."""
    seeds = sorted(set(a) & set(b))
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    mean_diff = float(np.mean(x - y)) if seeds else math.nan
    sd = float(np.std(x - y, ddof=1)) if len(seeds) >= 2 else math.nan
    if len(seeds) < 2 or np.allclose(x - y, (x - y)[0], rtol=0, atol=1e-15):
        return PairedTest(len(seeds), mean_diff, math.nan, math.nan, alpha, None, sd)
    res = stats.ttest_rel(x, y)
    p = float(res.pvalue)
    return PairedTest(len(seeds), mean_diff, float(res.statistic), p, alpha, bool(p < alpha),
                      sd, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values of one family of tests, in input order
    (``statsmodels.stats.multitest.multipletests(method="holm")``); NaN entries (no test) stay
    NaN and do not count in the family."""
    from statsmodels.stats.multitest import multipletests
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return [float(x) for x in out]


def holm_adjusted(tests: Sequence[PairedTest | None]) -> list[PairedTest | None]:
    """The tests of one table with ``p_holm``, ``family`` and ``significant`` set by Holm's
    correction over those that could be run (None and undefined tests pass through)."""
    adjusted = holm([t.p if t is not None else math.nan for t in tests])
    family = sum(math.isfinite(p) for p in adjusted)
    return [t if t is None or not math.isfinite(q) else
            replace(t, p_holm=q, family=family, significant=bool(q < t.alpha))
            for t, q in zip(tests, adjusted)]


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest true mean paired difference |δ| that a two-sided paired t-test over ``n``
    pairs with difference std ``sd`` finds at level ``alpha`` with probability ``power``:
    δ = d·sd, where the standardised effect d solves power = P(|T| > t₁₋α/₂,ₙ₋₁) for T
    noncentral t with n − 1 degrees of freedom and noncentrality d·√n
    (``statsmodels.stats.power.TTestPower.solve_power``). NaN for n < 2 or an undefined sd."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    from statsmodels.stats.power import TTestPower
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                 alternative="two-sided")
    return float(np.asarray(d).item()) * sd
