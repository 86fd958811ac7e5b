"""Table cells: ``mean ± std`` and number formats (:func:`fmt_stat`, :func:`fmt_num`), the
``_mean/_std/_n`` columns of a :class:`~flatkd.evidence.stats.Stat` (:func:`stat_cols`), the
not-converged mark (:func:`stale_mark`) and the chance-level rule that marks accuracy cells (:class:`ChanceRule`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..evidence.stats import Stat


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


def stale_mark(k: int) -> str:
    """``" † (k not converged)"`` after a cell drawn from k runs that have not converged (the
    report's convergence diagnostic: they give no verdict); "" when k is 0."""
    return f" † ({int(k)} not converged)" if k else ""


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
