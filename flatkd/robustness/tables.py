"""The paper's robustness tables from result files: Table 5/12 and Table 13.

Inputs are *groups*: a column-group name (e.g. ``"ResNet-18"``) → a sequence of results whose
first entry is the reference ("w/o", e.g. online KD) and the others are compared with it
("w/", e.g. spaced KD); Δ = compared − reference, in percentage points. A result is a path to
a result JSON file, a full result dict, or its ``"robustness"`` section. Accuracies are
shown in % as in the paper.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..errors import FlatkdError

ResultLike = str | Path | Mapping[str, Any]


def robustness_section(result: ResultLike) -> Mapping[str, Any]:
    """The ``"robustness"`` section of a result (path, full dict, or the section itself)."""
    source = str(result) if isinstance(result, (str, Path)) else "result"
    if isinstance(result, (str, Path)):
        try:
            result = json.loads(Path(result).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise FlatkdError(f"{source}: cannot read a result file ({e})") from None
    section = result.get("robustness", result) if isinstance(result, Mapping) else None
    if not isinstance(section, Mapping) or "corruptions" not in section:
        raise FlatkdError(f"{source}: has no robustness section (run --suite robustness)")
    return section


def _labels(n: int, labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        labels = ["w/o", "w/"] if n == 2 else ["w/o"] + [f"w/ #{i}" for i in range(1, n)]
    if len(labels) != n:
        raise FlatkdError(f"{len(labels)} labels given for {n} results per group")
    return list(labels)


def _compare(groups: Mapping[str, Sequence[ResultLike]], labels: Sequence[str] | None,
             rows_of) -> pd.DataFrame:
    """One column per (group, label) plus (group, Δ …) columns; ``rows_of(section)`` → {row: %}."""
    if not groups:
        raise FlatkdError("no results given; pass at least one group of two or more results")
    columns: dict[tuple[str, str], dict] = {}
    index: list = []
    for group, results in groups.items():
        if len(results) < 2:
            raise FlatkdError(f"group {group!r} needs two or more results (reference first)")
        names = _labels(len(results), labels)
        values = [rows_of(robustness_section(r)) for r in results]
        for v in values:
            index += [k for k in v if k not in index]
        for name, v in zip(names, values):
            columns[group, name] = v
        for name, v in zip(names[1:], values[1:]):
            delta = "Δ" if len(names) == 2 else f"Δ {name}"
            columns[group, delta] = {k: v[k] - values[0][k] for k in v if k in values[0]}
    df = pd.DataFrame({c: [v.get(k, math.nan) for k in index] for c, v in columns.items()})
    df.columns = pd.MultiIndex.from_tuples(columns)
    return df.set_axis(index, axis=0)


def corruption_table(groups: Mapping[str, Sequence[ResultLike]],
                     labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Tables 5 and 12: rows (corruption, severity), columns (group, w/o | w/ | Δ), in %."""
    df = _compare(groups, labels, lambda sec: {
        (r["corruption"], r["severity"]): 100 * r["accuracy"] for r in sec["corruptions"]})
    df.index = pd.MultiIndex.from_tuples(df.index, names=["corruption", "severity"])
    return df


def epsilon_label(epsilon: float) -> str:
    """An absolute ε as the paper writes it: 2/255 → ``"2/255"``."""
    return f"{round(epsilon * 255, 6):g}/255"


def bim_table(groups: Mapping[str, Sequence[ResultLike]],
              labels: Sequence[str] | None = None, attack: str = "BIM") -> pd.DataFrame:
    """Table 13: BIM accuracy (%) — rows w/o, w/, Δ per group; columns (group, ε). The same
    layout for another attack's rows with ``attack="FGSM"`` or ``"PGD"``."""
    df = _compare(groups, labels, lambda sec: {
        epsilon_label(r["epsilon"]): 100 * r["accuracy"] for r in sec["adversarial"]
        if r["attack"] == attack})
    out = pd.concat({group: df[group].T for group in groups}, axis=1)
    out.columns.names = ["group", "ε"]
    out.index.name = "model"
    return out


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A DataFrame as a Markdown table: multi-level headers joined by spaces, numbers to
    ``digits`` decimals, Δ values signed, missing values as —."""
    index_names = [n or "" for n in df.index.names]
    headers = index_names + [" ".join(str(p) for p in (c if isinstance(c, tuple) else (c,)))
                             for c in df.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    delta_column = ["Δ" in str(c) for c in df.columns]
    for key, row in df.iterrows():
        keys = list(key) if isinstance(key, tuple) else [key]
        signed = [d or str(key).startswith("Δ") for d in delta_column]
        cells = ["—" if pd.isna(v) else f"{v:+.{digits}f}" if s else f"{v:.{digits}f}"
                 for v, s in zip(row, signed)]
        lines.append("| " + " | ".join([str(k) for k in keys] + cells) + " |")
    return "\n".join(lines) + "\n"
