"""``build_report``: result files in, a report folder out (Markdown + CSV tables + PNG/PDF figures).

Layout of ``out_dir``::

    report.md                 everything, in reading order, figures embedded
    tables/<name>.csv|.md     numeric CSV (fractions, raw units) and formatted Markdown per table
    figures/<stem>.png|.pdf   one set of figures per (dataset, network) cell

Every sentence of the report that compares methods is computed from the result files (and the
checkpoints they name); nothing about which way the numbers go is written in advance.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from ..evidence import selections as Sel, stats as S
from ..evidence.convergence import LAST_K, MAX_BN_GAP, MAX_SPREAD, diagnose
from ..evidence.histories import TrainingHistory, load_histories
from ..evidence.results import FAMILIES, Result, fmt_interval, group, load_results
from ..evidence.verdicts import Verdict, stale_runs
from ..io import write_json, write_text
from . import (cells as C, density_figure as DF, figures as F, paper_layouts, robustness as R,
               robustness_figures as RF, stablekd, style as Sty, table4, tables as T)
from .measures import measures_section

MAX_LISTED = 5
NOTES = """\
## How to read this report

* Accuracy is in percent. *final* is the student's clean test accuracy from the robustness
  suite (`robustness.clean_accuracy`, whole un-augmented test split, last-epoch checkpoint);
  *best over epochs* is the maximum of the per-epoch test accuracy recorded in the checkpoint.
* With several seeds a cell is mean ± sample std (ddof = 1); "seeds" gives the number of runs.
* Spaced methods are compared with their non-spaced counterpart (spaced-online ↔ online,
  spaced-self ↔ self) by a paired t-test (scipy.stats.ttest_rel) over the seeds both have,
  α = {alpha}, with Holm's step-down correction over the comparisons of one table (`p_holm`);
  "significant" is decided on the Holm-adjusted p. "NOT significant" means the seeds do not
  show a difference at that level; `detectable` is the smallest true difference the same
  number of seeds would find with 80 % power, given the observed spread of the paired
  differences: a non-significant Δ far below it says nothing either way.
  Corruption and BIM cells are each tested on their own (no multiple-comparison correction).
* Δ = mean(w/ Ours) − mean(w/o Ours), in percentage points (pp); "†" after Δ: some run of
  that comparison has not converged (see the runs table), so it gives no verdict.
"""


def _csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), None)


#: tables whose numbers are accuracies (by name or name prefix): their ``*mean`` / ``*std``
#: columns are written in percent (``_pct``), ``delta`` in percentage points (``delta_pp``)
ACCURACY_TABLES = ("accuracy", "corruption_", "bim_", "table4", "offline_vs_spaced",
                   "constant_ahead", "critical_period", "stablekd_")


def in_percent(name: str, numeric: pd.DataFrame) -> pd.DataFrame:
    """Table ``name``'s numbers in the unit its Markdown shows: accuracies (fractions in the
    result files) as percent, differences of accuracies in percentage points; every converted
    column says its unit in its name. The significance table mixes metrics, so its accuracy
    rows are scaled and a ``unit`` column says which rows are percent."""
    df = numeric.copy()
    if name == "runs":
        cols = [c for c in ("accuracy", "last_epochs_spread", "final_minus_best", "bn_gap")
                if c in df]
        df[cols] = df[cols].astype(float) * 100
        return df.rename(columns={c: f"{c}_pct" if c == "accuracy" else f"{c}_pp" for c in cols})
    if name == "significance" and "metric" in df:
        scale = df["metric"].map(lambda m: Sel.METRICS.get(m).scale).astype(float)
        for c in [c for c in df.columns if c.endswith(("_mean", "_std")) or c == "delta"]:
            df[c] = df[c] * scale
        return df.assign(unit=["% (delta: pp)" if x == 100 else "" for x in scale])
    if name != "accuracy_vs_interval" and not name.startswith(ACCURACY_TABLES):
        return df
    cols = [c for c in df.columns if c.endswith(("mean", "std")) or c == "delta"]
    df[cols] = df[cols].astype(float) * 100
    return df.rename(columns={c: "delta_pp" if c == "delta" else f"{c}_pct" for c in cols})


def _write_table(out: Path, name: str, numeric: pd.DataFrame, display: pd.DataFrame,
                 written: dict) -> str:
    md = T.to_markdown(display)
    write_text(out / "tables" / f"{name}.csv",
               _csv_safe(in_percent(name, numeric)).to_csv(index=False))
    write_text(out / "tables" / f"{name}.md", md)
    written["tables"][name] = [out / "tables" / f"{name}.csv", out / "tables" / f"{name}.md"]
    return md


def results_index(results: Iterable[Result], histories: dict | None = None) -> pd.DataFrame:
    """One row per result file: configuration, seed, headline numbers, which sections exist,
    the BatchNorm mode and the convergence diagnostic (:mod:`flatkd.report.convergence`)."""
    rows = []
    for k, rs in group(results).items():
        for r in rs:
            d = diagnose(r, (histories or {}).get(r.path))
            rows.append({"file": r.path.name, "dataset": r.dataset, "arch": r.arch,
                         "method": r.method, "interval": r.interval, "model": r.model,
                         "seed": r.seed,
                         "accuracy": Sel.METRICS.get("accuracy").extract(r),
                         "hessian_trace": Sel.METRICS.get("hessian_trace").extract(r),
                         "top_eigenvalue": Sel.METRICS.get("top_eigenvalue").extract(r),
                         "sections": "+".join(s for s in ("flatness", "robustness") if s in r.data),
                         "bn": bn_mode(r),
                         "last_epochs_spread": d.spread, "final_minus_best": d.final_minus_best,
                         "bn_gap": d.bn_gap, "converged": d.converged})
    return pd.DataFrame(rows)


def bn_mode(r: Result) -> str:
    """How the result's network had its BatchNorm statistics: ``recalibrate``, ``as-saved``,
    ``none`` (no BatchNorm), or ``as-saved`` for results written before the mode was recorded."""
    return (r.data.get("bn") or {}).get("mode", "as-saved")


def bn_note(results: Iterable[Result]) -> list[str]:
    """A warning paragraph when some results measured the checkpoints' saved BatchNorm
    statistics (an average over earlier weights), naming how many."""
    stale = [r for r in results if bn_mode(r) == "as-saved"]
    if not stale:
        return []
    return [f"**BatchNorm statistics as saved in {len(stale)} of the results** (not "
            "recalibrated: written before recalibration existed, or with `bn=as-saved`). Their "
            "eval-mode numbers measure the checkpoint's running statistics — an average over "
            "earlier weights — as much as the weights; re-evaluate with the default "
            "`bn=recalibrate` before drawing conclusions from them.", ""]


def _converged_cell(sub: pd.DataFrame) -> str:
    """"yes", "unknown", or "NOT: seeds 1, 3" for one configuration's runs."""
    bad = [str(s) for s, c in zip(sub["seed"], sub["converged"]) if c is False]
    if bad:
        return "NOT: seed" + ("s " if len(bad) > 1 else " ") + ", ".join(bad)
    return "yes" if all(c is True for c in sub["converged"]) else "unknown"


def _index_display(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["dataset", "arch", "method", "interval", "model"], dropna=False, sort=False)
    return pd.DataFrame([{"Dataset": d, "Arch": a, "Method": m, "s": fmt_interval(s), "Model": mo,
                          "Seeds": ", ".join(str(x) for x in sub["seed"] if x is not None) or "—",
                          "Sections": ", ".join(sorted(set(sub["sections"]))),
                          "BatchNorm": ", ".join(sorted(set(sub["bn"]))),
                          "Converged": _converged_cell(sub)}
                         for (d, a, m, s, mo), sub in g])


def _robustness_tables(results: Sequence[Result], out: Path, written: dict) -> list[str]:
    """Corruption (Tables 5/12) and BIM (Table 13) tables per KD family, mean ± std over seeds
    with a paired t-test per cell; writes their CSV/Markdown, returns the report's Markdown."""
    md = []
    corr, bim = R.corruption_table(results), R.bim_table(results)
    constants = RF.constants_caption(results)
    for family, (_, plain_m, spaced_m) in FAMILIES.items():
        c, b = corr[corr["family"] == family], bim[bim["family"] == family]
        note = (f"w/o Ours = {plain_m}, w/ Ours = {spaced_m}; accuracy in %, mean ± std over "
                "seeds; Δ = w/ − w/o in percentage points; p = paired t-test over the seeds "
                "both have.")
        if len(c):
            groups = ", ".join(dict.fromkeys(c["group"]))
            md += [f"## Image corruptions, {family} KD (paper Tables 5 and 12 layout)", "",
                   f"{note} {groups}; {constants}.", "",
                   _write_table(out, f"corruption_{family}", c, R.corruption_display(c), written)]
            summary = R.cells_summary(c, "corruption accuracy", spaced_m, plain_m)
            written["summaries"] += summary
            md += [*[f"* {x}" for x in summary], ""]
        if len(b):
            groups = ", ".join(dict.fromkeys(b["group"]))
            md += [f"## BIM adversarial accuracy, {family} KD (paper Table 13 layout)", "",
                   f"{note} {groups}.", "",
                   _write_table(out, f"bim_{family}", b,
                                R.bim_display(b, f"w/o Ours ({plain_m})",
                                              f"w/ Ours ({spaced_m})"), written)]
            summary = R.cells_summary(b, "BIM accuracy", spaced_m, plain_m)
            written["summaries"] += summary
            md += [*[f"* {x}" for x in summary], ""]
    return md


def _figure_jobs(results: Sequence[Result], rules: dict
                 ) -> list[tuple[str, str, Callable, list[Result]]]:
    """(stem, caption, builder, results) for every figure the data supports."""
    jobs = []
    for (dataset, network), rs in F.cell_results(results).items():
        cell = f"{dataset}_{network}"
        if F.keys_with(rs, "flatness", "perturbation"):
            jobs.append((f"fig4_perturbation_{cell}", "Fig. 4: loss and accuracy under Gaussian "
                         "parameter noise, each non-spaced method beside its spaced counterpart",
                         F.perturbation_figure, rs))
        if any(((r.flatness or {}).get("hessian") or {}).get("density") for r in rs):
            jobs.append((f"hessian_density_{cell}", "Hessian eigenvalue density, one line per "
                         "method (mean over seeds; thin lines: single seeds)",
                         DF.density_figure, rs))
        if F.keys_with(rs, "robustness", "corruptions"):
            rule = rules[dataset]
            consts = RF.constants_caption(rs)
            jobs.append((f"corruption_bars_{cell}", f"Accuracy under image corruptions "
                         f"({consts})", RF.corruption_bars, rs))
            jobs.append((f"corruption_heatmap_{cell}", f"Accuracy under image corruptions, "
                         f"heatmap ({consts}; hatched cells: {rule.describe()})",
                         lambda x, rule=rule: RF.corruption_heatmap(x, rule), rs))
        if F.keys_with(rs, "robustness", "adversarial"):
            jobs.append((f"bim_{cell}", "Accuracy under BIM attack vs ε", RF.bim_figure, rs))
    return jobs


def _curves(results: Sequence[Result], histories: dict[Path, TrainingHistory | None]
            ) -> list[F.Curve]:
    """One curve per configuration over every seed whose checkpoint could be read (replay
    points: the union over those seeds)."""
    curves = []
    for k, rs in group(results).items():
        got = [(r, histories[r.path]) for r in rs if histories.get(r.path) is not None]
        got = [(r, h) for r, h in got if h.rows]
        if got:
            bounds = sorted({round(b, 9) for _, h in got for b in h.boundaries})
            curves.append(F.Curve(f"{k.label}, {k.dataset}/{got[0][0].arch}",
                                  [h.rows for _, h in got], bounds))
    return curves


def _rules(results: Sequence[Result], histories: dict) -> dict[str, C.ChanceRule]:
    """Chance-level rule per dataset (classes from the registry, else from a checkpoint)."""
    out = {}
    for d in sorted({r.dataset for r in results}):
        n_cls = next((h.num_classes for r in results if r.dataset == d
                      for h in [histories.get(r.path)] if h is not None and h.num_classes), None)
        out[d] = RF.chance_rule([r for r in results if r.dataset == d], n_cls)
    return out


def report_verdicts(acc: pd.DataFrame, comp: pd.DataFrame) -> list[Verdict]:
    """The report's answers to "does spaced KD's gain survive?": the accuracy table's verdicts,
    then the flatness metrics' of the significance table."""
    flat = [v for v, m in zip(comp.attrs.get("verdicts", []), comp["metric"]) if m != "accuracy"]
    return [v for v in acc.attrs.get("verdicts", []) if v is not None] + flat


def _step_matched(results: list[Result], histories, controls: list, out: Path,
                  written: dict) -> tuple[list[str], list[Verdict]]:
    """The step-matched control section (Markdown lines) and its verdicts; with no
    ``controls``, a note naming the comparisons whose budgets differ (nothing when none do)."""
    ctrl = load_results(controls) if controls else []
    ctrl_histories, skipped = load_histories(ctrl)
    written["skipped"] += skipped
    table = T.step_matched_table(results, ctrl, {**histories, **ctrl_histories})
    unmatched = table.attrs["unmatched"]
    if not len(table) and not unmatched:
        return [], []
    md = ["## Step-matched controls", "",
          "A spaced method whose students take more optimizer steps than its counterpart's "
          "(Alg. 4: spaced self-KD steps twice per batch) is compared here with the "
          "counterpart trained for as many steps, paired by seed, Holm-corrected over this "
          "table: what remains is the effect of spacing, not of training longer. Control "
          "runs are passed with `flatkd report … --controls DIR`.", ""]
    if len(table):
        md += [_write_table(out, "step_matched", table, T.step_matched_display(table), written),
               ""]
    md += [f"* no step-matched control: {u}" for u in unmatched]
    return md + [""], list(table.attrs["verdicts"])


def _verdicts_md(verdicts: list[Verdict]) -> list[str]:
    md = ["## Does spaced KD's gain over its counterpart survive?", "",
          "Each sentence is computed from the result files: mean ± std over seeds, the test-set "
          f"size, Δ and the paired t-test (α = {S.ALPHA:g}) with Holm's correction over the "
          "comparisons of its table, and the smallest difference the seeds could detect with "
          "80 % power (from the observed paired standard deviation). Every field is in "
          "`verdicts.json`.", ""]
    md += [f"* {v.sentence}" for v in verdicts if v.higher_is_better]
    flat = [v for v in verdicts if not v.higher_is_better]
    if flat:
        md += ["", "Flatness (the paper's explanation: spaced KD should find flatter minima):", ""]
        md += [f"* {v.sentence}" for v in flat]
    return md + [""]


class _NoBar:
    """The progress bar of a quiet report: it shows nothing."""

    def update(self, n: int = 1) -> None:
        """Count ``n`` finished steps (nothing to show)."""

    def close(self) -> None:
        """End the bar (nothing to show)."""


def _progress(total: int, show: bool):
    """A tqdm bar when asked for; otherwise tqdm is not even imported (``tqdm.auto`` warns in a
    notebook kernel without ipywidgets, and a report built from a notebook shows no bar)."""
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="report")


def build_report(result_paths: Iterable[str | Path], out_dir: str | Path,
                 progress: bool = False, controls: Iterable[str | Path] = ()) -> dict:
    """Render the report of the given result files (directories are searched recursively).
    ``controls``: result files of step-matched control runs (a counterpart method trained for
    its spaced method's optimizer-step budget), compared with the spaced runs in a section of
    their own.

    Returns ``{"markdown": Path, "tables": {name: [csv, md]}, "figures": {stem: [png, pdf]},
    "n_results": int, "skipped": [reason, ...], "verdicts": [Verdict, ...] (does spaced KD's
    gain survive, per accuracy selection and flatness metric; also in ``verdicts.json``), "summaries": [sentence, ...]
    (corruption and BIM cells), "files": [every path written]}``.
    """
    results = load_results(result_paths)
    out = Path(out_dir)
    written: dict = {"markdown": out / "report.md", "tables": {}, "figures": {},
                     "n_results": len(results), "skipped": [], "verdicts": [], "summaries": []}
    histories, skipped = load_histories(results)
    curves = _curves(results, histories)
    jobs = _figure_jobs(results, _rules(results, histories))
    intervals = T.interval_table(results, histories)
    cells = list(dict.fromkeys(zip(intervals["dataset"], intervals["network"])))
    bar = _progress(6 + len(jobs) + len(cells) + bool(curves), progress)

    md = ["# flatkd report", "",
          f"{len(results)} result files, {len(group(results))} configurations.", "",
          *bn_note(results)]
    index = results_index(results, histories)
    md += ["## Runs", "",
           f"*Converged*: the student's test accuracy over its last {LAST_K} epochs spans ≤ "
           f"{100 * MAX_SPREAD:g} pp and its final network's as-saved and BatchNorm-recalibrated "
           f"test accuracies differ by ≤ {100 * MAX_BN_GAP:g} pp (`runs.csv`: "
           "`last_epochs_spread_pp`, `final_minus_best_pp`, `bn_gap_pp`). A comparison that "
           "involves a run that has not converged gives no verdict.", "",
           _write_table(out, "runs", index, _index_display(index), written)]
    bar.update()

    acc = T.accuracy_table(results, histories)
    has_acc = acc[["wo_ours_n", "w_ours_n"]].to_numpy().sum() > 0
    if has_acc:
        md += ["## Accuracy (paper Tables 1 and 2 layout)", "",
               "w/o KD = baseline, w/o Ours = online or self KD, w/ Ours = spaced KD. "
               + T.PAPER_SELECTION_NOTE, "",
               _write_table(out, "accuracy", acc, T.accuracy_display(acc), written), ""]
        if not (acc["selection"] == "best").any():
            md += ["(No *best over epochs* rows: no checkpoint with per-epoch metrics was "
                   "found next to the results.)", ""]
    else:
        written["skipped"].append("accuracy table: no clean accuracies (robustness suite not "
                                  "run) and no checkpoints with per-epoch accuracies")
    bar.update()

    flat = T.flatness_table(results)
    if len(flat):
        md += ["## Flatness: Hessian trace and top eigenvalue", "",
               _write_table(out, "flatness", flat, T.flatness_display(flat), written)]
    bar.update()
    comp = T.comparison_table(results, histories=histories)
    if len(comp):
        md += ["## Spaced vs non-spaced: paired significance tests", "",
               _write_table(out, "significance", comp, T.comparison_display(comp), written)]
    bar.update()
    control_md, control_verdicts = _step_matched(results, histories, list(controls), out,
                                                 written)
    if has_acc or len(comp):
        written["verdicts"] = report_verdicts(acc, comp) + control_verdicts
        write_json(out / "verdicts.json", [v.as_row() for v in written["verdicts"]])
        md += _verdicts_md(written["verdicts"])
    md += control_md
    bar.update()

    md += _robustness_tables(results, out, written)
    md += measures_section(results, out, written)      # sharpness, landscape, mCE (if any)
    bar.update()

    if len(intervals):
        md += ["## Accuracy vs spaced interval (paper Fig. 2 / Table 6 layout)", "",
               "Each spaced interval s against the non-spaced counterpart (s = 0); % mean ± std "
               f"over seeds; `*`: paired t-test against s = 0 significant at α = {S.ALPHA:g}.",
               "", _write_table(out, "accuracy_vs_interval", intervals,
                                T.interval_display(intervals), written), ""]

    md += paper_layouts.sections(results, histories, out, written, _write_table, Sty.save_figure)
    md += table4.section(results, histories,
                         lambda name, num, disp: _write_table(out, name, num, disp, written))
    md += stablekd.section(results, out, written, _write_table, Sty.save_figure, histories)
    md += ["## Figures", ""]
    for stem, caption, build, rs in jobs:
        fig = Sty.not_converged_note(build(rs), stale_runs(rs, histories))
        written["figures"][stem] = Sty.save_figure(fig, out / "figures", stem)
        md += [f"### {caption}", "", f"![{caption}](figures/{stem}.png)", ""]
        bar.update()
    for dataset, network in cells:
        stem = f"accuracy_vs_interval_{dataset}_{network}"
        d = intervals[(intervals["dataset"] == dataset) & (intervals["network"] == network)]
        drawn = [r for r in results if (r.dataset, r.network) == (dataset, network)
                 and r.model == "student" and r.method in set(d["method"])]
        fig = Sty.not_converged_note(F.interval_figure(d, f"{dataset} / {network}"),
                                     stale_runs(drawn, histories))
        written["figures"][stem] = Sty.save_figure(fig, out / "figures", stem)
        caption = "Accuracy vs spaced interval s (s = 0: non-spaced counterpart)"
        md += [f"### {caption}", "", f"![{caption}](figures/{stem}.png)", ""]
        bar.update()
    written["skipped"] += skipped
    if curves:
        stem = "training_curves"
        drawn = [r for r in results if histories.get(r.path) is not None]
        fig = Sty.not_converged_note(F.training_curves_figure(curves),
                                     stale_runs(drawn, histories))
        written["figures"][stem] = Sty.save_figure(fig, out / "figures", stem)
        md += ["### Training curves (mean ± std over seeds; red marks: spaced replays)", "",
               f"![training curves](figures/{stem}.png)", ""]
        bar.update()
    if skipped:
        shown = skipped[:MAX_LISTED]
        more = len(skipped) - len(shown)
        md += [f"### Training curves: {len(skipped)} run(s) left out (checkpoint not readable)", "",
               *[f"* {s}" for s in shown], *([f"* … and {more} more"] if more else []), ""]
    bar.close()
    md += [NOTES.format(alpha=S.ALPHA)]
    write_text(written["markdown"], "\n".join(md))
    written["files"] = [written["markdown"], *(f for fs in written["tables"].values() for f in fs),
                        *(f for fs in written["figures"].values() for f in fs),
                        *([out / "verdicts.json"] if written["verdicts"] else [])]
    return written
