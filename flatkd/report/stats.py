"""Statistics shared by the report's tables: mean ± sample std over seeds (:func:`describe`),
the paired t-test of a spaced method against its counterpart over common seeds
(:func:`paired_test`, :func:`scipy.stats.ttest_rel`, with its verdict as a sentence), and the
cell formats (:func:`fmt_stat`, :func:`fmt_num`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

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
        diff = f"{a} − {b} = {self.mean_diff * scale:+.{digits}f}{unit_suffix(unit, pp=True)}"
        if self.n < 2:
            return f"{diff} on {self.n} paired seed(s): too few for a significance test"
        if self.significant is None:
            return (f"{diff}: the paired differences are identical over {self.n} seeds, "
                    "so the t-test is undefined")
        verdict = "significant" if self.significant else "NOT significant"
        cmp = "<" if self.significant else "≥"
        return (f"{diff} is {verdict} (paired t-test over {self.n} seeds, "
                f"p = {self.p:.3g} {cmp} {self.alpha:g})")


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
    if len(seeds) < 2 or np.allclose(x - y, (x - y)[0], rtol=0, atol=1e-15):
        return PairedTest(len(seeds), mean_diff, math.nan, math.nan, alpha, None)
    res = stats.ttest_rel(x, y)
    return PairedTest(len(seeds), mean_diff, float(res.statistic), float(res.pvalue), alpha,
                      bool(res.pvalue < alpha))


def stat_cols(prefix: str, st: Stat | None) -> dict:
    return {f"{prefix}_mean": st.mean if st else math.nan,
            f"{prefix}_std": st.std if st and st.std is not None else math.nan,
            f"{prefix}_n": st.n if st else 0}


def fmt_stat(mean: float, std: float, scale: float = 1.0, digits: int = 2) -> str:
    """``"97.22 ± 0.48"``; just the mean when std is NaN; ``"—"`` when the mean is NaN."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def fmt_num(x: float, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


# ---------------------------------------------------------------- chance level

@dataclass(frozen=True)
class ChanceRule:
    """A cell is *at chance* when its accuracy (fraction) ≤ ``threshold``.

    ``threshold`` = 1/C + max(2·√(p(1 − p)/n), ``floor``) with p = 1/C, C classes and n test
    images: a guessing classifier's accuracy lies within two binomial standard deviations of p
    (≈ 95 %); ``floor`` (1 percentage point) is the margin when n is unknown or large.
    ``num_classes`` None: no rule (nothing is marked)."""

    num_classes: int | None
    n_test: int | None
    floor: float = 0.01

    @property
    def chance(self) -> float:
        return 1.0 / self.num_classes if self.num_classes else math.nan

    @property
    def margin(self) -> float:
        if not self.num_classes:
            return math.nan
        p = self.chance
        noise = 2.0 * math.sqrt(p * (1 - p) / self.n_test) if self.n_test else 0.0
        return max(noise, self.floor)

    @property
    def threshold(self) -> float:
        return self.chance + self.margin

    def at_chance(self, accuracy: float) -> bool:
        return bool(self.num_classes) and accuracy <= self.threshold + 1e-12

    def describe(self) -> str:
        """The rule in words with its numbers, e.g. for a caption."""
        if not self.num_classes:
            return "chance level not marked (number of classes unknown)"
        how = (f"max(2 binomial std of a guessing classifier on {self.n_test} test images, "
               f"{100 * self.floor:g} pp)" if self.n_test else
               f"{100 * self.floor:g} pp, test-set size unknown")
        return (f"at chance = mean accuracy ≤ {100 * self.threshold:.1f} % "
                f"(1/{self.num_classes} + {100 * self.margin:.1f} pp; margin = {how})")
