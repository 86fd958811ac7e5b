"""The measure-vs-generalization study: for every measure, Kendall's τ with the generalization
gap and with test accuracy (bootstrap CI), the granulated τ per varied hyper-parameter, and a
plain verdict per measure.

Verdict (on the gap, the quantity sharpness measures claim to predict): a measure *tracks the
gap* on this set when the bootstrap interval of τ lies above 0 (sharper ↔ larger gap), *tracks
it inversely* when the interval lies below 0, and *does not track it* when the interval contains
0; a measure (or target) with a single value is *constant*; with fewer than
:data:`MIN_NETWORKS` networks no verdict is given.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .. import provenance
from ..errors import FlatkdError
from ..io import writable_target, write_json
from .measures import family_of, load, read_json, rows as study_rows, source_rank
from .tau import bootstrap_ci, granulated, kendall

STUDY_FORMAT, STUDY_VERSION = "flatkd.study", 1
MIN_NETWORKS = 4
TARGET_NAMES = ("gap", "test_accuracy")


#: the most bootstrap resamples a study draws (each resample re-ranks every measure)
MAX_RESAMPLES = 1_000_000


@dataclass
class StudySettings:
    """n_resamples: bootstrap resamples; confidence: interval level; seed: bootstrap seed."""

    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def validate(self) -> None:
        """Raise FlatkdError for a setting no bootstrap can use."""
        n = self.n_resamples
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RESAMPLES:
            raise FlatkdError(f"resamples must be an integer in [1, {MAX_RESAMPLES:,}], got {n!r}")
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
            raise FlatkdError(f"confidence must lie in (0, 1), got {c!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise FlatkdError(f"seed must be an integer ≥ 0, got {self.seed!r}")


def verdict(tau: float, ci: Sequence[float], n: int) -> str:
    """``tracks`` / ``tracks inversely`` / ``does not track`` / ``constant`` (τ undefined: the
    measure or the target takes one value) / ``too few networks``."""
    if n < MIN_NETWORKS or any(math.isnan(v) for v in ci):
        return "too few networks"
    if math.isnan(tau):
        return "constant"
    if ci[0] > 0:
        return "tracks"
    if ci[1] < 0:
        return "tracks inversely"
    return "does not track"


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def measure_taus(table: Sequence[Mapping], settings: StudySettings) -> list[dict]:
    """One entry per measure present in at least two networks: {measure, family, n,
    gap: {tau, p_value, ci, n}, test_accuracy: {...}, granulated: {axes, overall} (vs the gap),
    verdict}."""
    names: list[str] = []
    for row in table:
        names += [m for m in row["measures"] if m not in names]
    out = []
    for i, name in enumerate(names):
        entry: dict = {"measure": name, "family": family_of(name)}
        for target in TARGET_NAMES:
            used = [r for r in table if name in r["measures"] and target in r["targets"]]
            if used:                                # one source per target, the best present
                best = min(source_rank(r["target_sources"][target]) for r in used)
                used = [r for r in used if source_rank(r["target_sources"][target]) == best]
            x = [r["measures"][name] for r in used]
            y = [r["targets"][target] for r in used]
            tau, p = kendall(x, y)
            ci = bootstrap_ci(x, y, n_resamples=settings.n_resamples,
                              confidence=settings.confidence, seed=settings.seed + i)
            entry[target] = {"tau": _clean(tau), "p_value": _clean(p),
                             "ci": [_clean(ci[0]), _clean(ci[1])], "n": len(used),
                             "source": used[0]["target_sources"][target] if used else None}
            if target == "gap":
                g = granulated(used, x, y)
                entry["granulated"] = {
                    "axes": {a: {"psi": _clean(v["psi"]), "groups": v["groups"]}
                             for a, v in g["axes"].items()},
                    "overall": _clean(g["overall"]), "configurations": g["configurations"]}
                entry["verdict"] = verdict(tau, ci, len(used))
        entry["n"] = entry["gap"]["n"]
        if entry["n"] >= 2 or entry["test_accuracy"]["n"] >= 2:
            out.append(entry)
    return out


def sentences(taus: Sequence[Mapping], confidence: float) -> list[str]:
    """The study's answer, one sentence per verdict class, computed from the numbers."""
    pct = f"{100 * confidence:g} %"
    groups: dict[str, list[str]] = {}
    for t in taus:
        groups.setdefault(t["verdict"], []).append(
            f"{t['measure']} (τ = {t['gap']['tau']:+.2f})" if t["gap"]["tau"] is not None
            else t["measure"])
    text = {
        "tracks": f"Track the generalization gap on this set (the {pct} bootstrap interval of "
                  "Kendall's τ lies above 0: sharper ↔ larger gap): ",
        "tracks inversely": "Track the gap inversely (interval below 0: sharper ↔ smaller "
                            "gap): ",
        "does not track": f"Do not track the gap on this set (the {pct} interval contains 0): ",
        "constant": "Take one value on this set (τ undefined): ",
        "too few networks": f"No verdict (fewer than {MIN_NETWORKS} networks): ",
    }
    out = [text[k] + ", ".join(v) + "." for k, v in groups.items() if k in text]
    if not taus:
        out.append("No measure was found in two or more networks.")
    return out


SETTING_SECTIONS = {"flatness": ("hessian", "perturbation"),
                    "sharpness": ("sharpness", "pacbayes", "layers")}
"""Suite → the settings sections its measures depend on (recorded per study)."""


def run_study(paths: Iterable[str | Path], settings: StudySettings | None = None,
              out: str | Path | None = None) -> dict:
    """The study of the results under ``paths`` (files or folders; one network's sections may
    be spread over several files). Returns (and writes to ``out``) the study dict."""
    settings = settings or StudySettings()
    settings.validate()
    if out is not None:
        writable_target(out, "study file")
    merged = load(paths)
    table = study_rows(merged)
    if not any(r["targets"] for r in table):
        raise FlatkdError("no result holds a generalization gap or test accuracy (run "
                          "--suite sharpness, or flatness and robustness)")
    taus = measure_taus(table, settings)
    sources = sorted({f"{k}: {t[k]['source']}" for t in taus for k in TARGET_NAMES
                      if t[k]["source"]})
    used: list[dict] = []
    for e in merged:                        # the evaluation settings the measures came from
        keep: dict = {}
        for f in e["files"]:
            prov = read_json(f).get("provenance") or {}
            for suite in prov.get("suites") or []:
                for key in SETTING_SECTIONS.get(suite, ()):
                    if key in (prov.get("settings") or {}):
                        keep[key] = prov["settings"][key]
        if keep not in used:
            used.append(keep)
    prov = provenance.collect(seed=settings.seed, settings=asdict(settings))
    for volatile in ("created_utc", "command"):
        prov.pop(volatile)
    study = {"format": STUDY_FORMAT, "version": STUDY_VERSION, "n_networks": len(table),
             "target_sources": sources, "eval_settings": used, "rows": table, "taus": taus,
             "summary": sentences(taus, settings.confidence),
             "inputs": [{"path": f, "sha256": provenance.sha256_of(f)}
                        for r in table for f in r["files"]],
             "provenance": prov}
    if out is not None:
        write_json(out, study)
    return study
