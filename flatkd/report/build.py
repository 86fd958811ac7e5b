"""``build_report``: result files in, a report folder out (Markdown + CSV tables + PNG/PDF figures).

Layout of ``out_dir``::

    report.md                 everything, in reading order, figures embedded
    tables/<name>.csv|.md     numeric CSV (fractions, raw units) and formatted Markdown per table
    figures/<stem>.png|.pdf   one set of figures per (dataset, network) cell
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..io import write_text
from ..robustness import tables as RT
from . import figures as F
from . import tables as T
from .results import (FAMILIES, GroupKey, Result, fmt_interval, group, load_results,
                      training_history)

MAX_LISTED = 5
NOTES = """\
## How to read this report

* Accuracy is the student's clean test accuracy from the robustness suite
  (`robustness.clean_accuracy`, whole un-augmented test split), in percent.
* With several seeds a cell is mean ± sample std (ddof = 1); "seeds" gives the number of runs.
* Spaced methods are compared with their non-spaced counterpart (spaced-online ↔ online,
  spaced-self ↔ self) by a paired t-test (scipy.stats.ttest_rel) over the seeds both have,
  α = {alpha}. "NOT significant" means the seeds do not show a difference at that level.
* Δ = mean(w/ Ours) − mean(w/o Ours), in percentage points (pp).
"""


def _csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), None)


def _write_table(out: Path, name: str, numeric: pd.DataFrame, display: pd.DataFrame,
                 written: dict) -> str:
    md = T.to_markdown(display)
    write_text(out / "tables" / f"{name}.csv", _csv_safe(numeric).to_csv(index=False))
    write_text(out / "tables" / f"{name}.md", md)
    written["tables"][name] = [out / "tables" / f"{name}.csv", out / "tables" / f"{name}.md"]
    return md


def _write_numeric(out: Path, name: str, df: pd.DataFrame, md: str, written: dict) -> None:
    """A table whose index carries data (multi-level rows/columns): CSV keeps the index."""
    write_text(out / "tables" / f"{name}.csv", df.to_csv())
    write_text(out / "tables" / f"{name}.md", md)
    written["tables"][name] = [out / "tables" / f"{name}.csv", out / "tables" / f"{name}.md"]


def results_index(results: Iterable[Result]) -> pd.DataFrame:
    """One row per result file: configuration, seed, headline numbers and which sections exist."""
    rows = []
    for k, rs in group(results).items():
        for r in rs:
            rows.append({"file": r.path.name, "dataset": r.dataset, "arch": r.arch,
                         "method": r.method, "interval": r.interval, "model": r.model,
                         "seed": r.seed,
                         "accuracy": T.METRICS.get("accuracy").extract(r),
                         "hessian_trace": T.METRICS.get("hessian_trace").extract(r),
                         "top_eigenvalue": T.METRICS.get("top_eigenvalue").extract(r),
                         "sections": "+".join(s for s in ("flatness", "robustness") if s in r.data)})
    return pd.DataFrame(rows)


def _index_display(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["dataset", "arch", "method", "interval", "model"], dropna=False, sort=False)
    return pd.DataFrame([{"Dataset": d, "Arch": a, "Method": m, "s": fmt_interval(s), "Model": mo,
                          "Seeds": ", ".join(str(x) for x in sub["seed"] if x is not None) or "—",
                          "Sections": ", ".join(sorted(set(sub["sections"])))}
                         for (d, a, m, s, mo), sub in g])


def mean_robustness(results: Sequence[Result]) -> dict:
    """A robustness section whose accuracies are the means over ``results`` (seeds) of each
    (corruption, severity) and (attack, ε) entry; input for :mod:`flatkd.robustness.tables`."""
    corr: dict[tuple, list[float]] = {}
    adv: dict[tuple, list[float]] = {}
    for r in results:
        rob = r.robustness or {}
        for c in rob.get("corruptions", []):
            corr.setdefault((c["corruption"], c["severity"]), []).append(c["accuracy"])
        for a in rob.get("adversarial", []):
            adv.setdefault((a["attack"], a["epsilon"]), []).append(a["accuracy"])
    return {"corruptions": [{"corruption": c, "severity": s, "accuracy": float(np.mean(v))}
                            for (c, s), v in corr.items()],
            "adversarial": [{"attack": a, "epsilon": e, "accuracy": float(np.mean(v))}
                            for (a, e), v in adv.items()]}


def robustness_groups(results: Sequence[Result]) -> dict[str, dict[str, list[dict]]]:
    """Per KD family: column group ``"<dataset>/<network> s=<interval>"`` → [mean section of
    the non-spaced method (reference), mean section of the spaced one] — the inputs of the
    robustness helper's Table 5/12 and Table 13 builders. Student models with robustness only."""
    groups = {k: [r for r in rs if r.robustness] for k, rs in group(results).items()
              if k.model == "student"}
    out: dict[str, dict[str, list[dict]]] = {}
    for family, (_, plain_m, spaced_m) in FAMILIES.items():
        for k, spaced in groups.items():
            plain = groups.get(GroupKey(k.dataset, k.network, plain_m, None, "student"))
            if k.method != spaced_m or not spaced or not plain:
                continue
            name = f"{k.dataset}/{k.network} s={fmt_interval(k.interval)}"
            sections = [mean_robustness(plain), mean_robustness(spaced)]
            sections[0]["n_seeds"], sections[1]["n_seeds"] = len(plain), len(spaced)
            out.setdefault(family, {})[name] = sections
    return out


def _robustness_tables(results: Sequence[Result], out: Path, written: dict) -> list[str]:
    """Tables 5/12 and 13 per KD family (robustness helper's builders, seeds averaged first);
    writes their CSV/Markdown and returns the report's Markdown lines."""
    md = []
    for family, groups in robustness_groups(results).items():
        plain_m, spaced_m = FAMILIES[family][1:]
        labels = ["w/o Ours", "w/ Ours"]
        seeds = ", ".join(f"{g[0]['n_seeds']}/{g[1]['n_seeds']} seeds ({name})"
                          for name, g in groups.items())
        note = (f"w/o Ours = {plain_m}, w/ Ours = {spaced_m}; accuracy in %, mean over {seeds}; "
                "Δ = w/ − w/o in percentage points.")
        if any(g[0]["corruptions"] and g[1]["corruptions"] for g in groups.values()):
            ct = RT.corruption_table(groups, labels)
            _write_numeric(out, f"corruption_{family}", ct, RT.to_markdown(ct), written)
            md += [f"## Image corruptions, {family} KD (paper Tables 5 and 12 layout)", "", note, "",
                   RT.to_markdown(ct)]
        if any(g[0]["adversarial"] and g[1]["adversarial"] for g in groups.values()):
            bt = RT.bim_table(groups, labels)
            _write_numeric(out, f"bim_{family}", bt, RT.to_markdown(bt), written)
            md += [f"## BIM adversarial accuracy, {family} KD (paper Table 13 layout)", "", note, "",
                   RT.to_markdown(bt)]
    return md


def _figure_jobs(results: Sequence[Result]) -> list[tuple[str, str, Callable, list[Result]]]:
    """(stem, caption, builder, results) for every figure the data supports."""
    jobs = []
    for (dataset, network), rs in F.cell_results(results).items():
        cell = f"{dataset}_{network}"
        if F.keys_with(rs, "flatness", "perturbation"):
            jobs.append((f"fig4_perturbation_{cell}", "Fig. 4: loss and accuracy under Gaussian "
                         "parameter noise", F.perturbation_figure, rs))
        if any(((r.flatness or {}).get("hessian") or {}).get("density") for r in rs):
            jobs.append((f"hessian_density_{cell}", "Hessian eigenvalue density",
                         F.density_figure, rs))
        if F.keys_with(rs, "robustness", "corruptions"):
            jobs.append((f"corruption_bars_{cell}", "Accuracy under image corruptions",
                         F.corruption_bars, rs))
            jobs.append((f"corruption_heatmap_{cell}", "Accuracy under image corruptions "
                         "(heatmap)", F.corruption_heatmap, rs))
        if F.keys_with(rs, "robustness", "adversarial"):
            jobs.append((f"bim_{cell}", "Accuracy under BIM attack vs ε", F.bim_figure, rs))
    return jobs


def _training_curves(results: Sequence[Result]) -> tuple[dict, list[F.Curve], list[str]]:
    """Mean optimizer steps per configuration, one curve per configuration (lowest seed with a
    checkpoint) and the reasons for every result whose checkpoint could not be read."""
    steps, curves, skipped = {}, [], []
    for k, rs in group(results).items():
        got = []
        for r in rs:
            hist, reason = training_history(r)
            if hist is None:
                skipped.append(reason)
            else:
                got.append((r, hist))
        if got:
            steps[k] = float(np.mean([h.step for _, h in got]))
            r, h = got[0]
            if h.rows:
                curves.append(F.Curve(f"{k.label}, {r.dataset}/{r.arch}, seed {r.seed}",
                                      h.rows, h.boundaries))
    return steps, curves, skipped


def build_report(result_paths: Iterable[str | Path], out_dir: str | Path,
                 progress: bool = False) -> dict:
    """Render the report of the given result files (directories are searched recursively).

    Returns ``{"markdown": Path, "tables": {name: [csv, md]}, "figures": {stem: [png, pdf]},
    "n_results": int, "skipped": [reason, ...], "files": [every path written]}``.
    """
    results = load_results(result_paths)
    out = Path(out_dir)
    written: dict = {"markdown": out / "report.md", "tables": {}, "figures": {},
                     "n_results": len(results), "skipped": []}
    steps, curves, skipped = _training_curves(results)
    jobs = _figure_jobs(results)
    bar = tqdm(total=5 + len(jobs) + bool(curves), desc="report", disable=not progress)

    md = ["# flatkd report", "",
          f"{len(results)} result files, {len(group(results))} configurations.", ""]
    index = results_index(results)
    md += ["## Runs", "", _write_table(out, "runs", index, _index_display(index), written)]
    bar.update()

    acc = T.accuracy_table(results, steps)
    if acc["wo_ours_n"].sum() + acc["w_ours_n"].sum() > 0:
        md += ["## Accuracy (paper Tables 1 and 2 layout)", "",
               "w/o KD = baseline, w/o Ours = online or self KD, w/ Ours = spaced KD.", "",
               _write_table(out, "accuracy", acc, T.accuracy_display(acc), written), ""]
        md += [f"* {s}" for s in acc["statement"]] + [""]
    else:
        written["skipped"].append("accuracy table: no clean accuracies (robustness suite not run)")
    bar.update()

    flat = T.flatness_table(results)
    if len(flat):
        md += ["## Flatness: Hessian trace and top eigenvalue", "",
               _write_table(out, "flatness", flat, T.flatness_display(flat), written)]
    bar.update()
    comp = T.comparison_table(results)
    if len(comp):
        md += ["## Spaced vs non-spaced: paired significance tests", "",
               _write_table(out, "significance", comp, T.comparison_display(comp), written)]
    bar.update()

    md += _robustness_tables(results, out, written)
    bar.update()

    md += ["## Figures", ""]
    for stem, caption, build, rs in jobs:
        written["figures"][stem] = F.save_figure(build(rs), out / "figures", stem)
        md += [f"### {caption}", "", f"![{caption}](figures/{stem}.png)", ""]
        bar.update()
    written["skipped"] += skipped
    if curves:
        stem = "training_curves"
        written["figures"][stem] = F.save_figure(F.training_curves_figure(curves),
                                                 out / "figures", stem)
        md += ["### Training curves", "", f"![training curves](figures/{stem}.png)", ""]
        bar.update()
    if skipped:
        shown = skipped[:MAX_LISTED]
        more = len(skipped) - len(shown)
        md += [f"### Training curves: {len(skipped)} run(s) left out (checkpoint not readable)", "",
               *[f"* {s}" for s in shown], *([f"* … and {more} more"] if more else []), ""]
    bar.close()
    md += [NOTES.format(alpha=T.ALPHA)]
    write_text(written["markdown"], "\n".join(md))
    written["files"] = [written["markdown"], *(f for fs in written["tables"].values() for f in fs),
                        *(f for fs in written["figures"].values() for f in fs)]
    return written
