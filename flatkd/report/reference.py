"""Fresh single-seed runs beside a shipped multi-seed reference set of the same recipe.

One seed gives no verdict (a paired test needs ≥ 2 seeds, and a difference is only a property
of the methods if it survives the seeds' spread). ``flatkd demo`` trains one seed of each
method; :func:`beside_reference` puts each of its values next to the reference set's mean ± std
over seeds and takes the verdicts from the reference set — the same verdict objects
``flatkd report`` computes — saying which numbers come from where.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..evidence import selections as Sel
from ..evidence.histories import load_histories
from ..evidence.results import Result, group, load_results
from ..evidence.stats import describe
from . import tables as T
from .build import report_verdicts
from .cells import fmt_num, fmt_stat


def reference_results_dir() -> Path | None:
    """``checkpoints/reference/results`` of the repository flatkd was installed from (an
    editable install or a checkout), None when there is none (a wheel ships no results)."""
    here = Path(__file__).resolve().parents[2] / "checkpoints" / "reference" / "results"
    return here if here.is_dir() and any(here.glob("*.json")) else None


def _cells(own: Sequence[Result], ref: Sequence[Result], hist, ref_hist) -> list[str]:
    """Markdown rows: per configuration of ``own``, its value and the reference's stat."""
    ref_groups = group(ref)
    final = Sel.SELECTIONS["final"]
    rows = ["| configuration | your run: accuracy (%) | reference: accuracy (%) | "
            "your run: Hessian trace | reference: Hessian trace |", "|---|---|---|---|---|"]
    for key, rs in group(own).items():
        theirs = ref_groups.get(key, [])
        acc = describe(final.extract(r, hist.get(r.path)) for r in theirs)
        tr = describe(Sel.hessian_trace(r) for r in theirs)
        mine_acc = final.extract(rs[0], hist.get(rs[0].path))
        mine_tr = Sel.hessian_trace(rs[0])
        rows.append(f"| {key.label} (seed {rs[0].seed}) | "
                    f"{fmt_num(None if mine_acc is None else 100 * mine_acc, '.2f')} | "
                    + (f"{fmt_stat(acc.mean, acc.std, 100)} ({acc.n} seeds)" if acc else "—")
                    + f" | {fmt_num(mine_tr, '.2f')} | "
                    + (f"{fmt_stat(tr.mean, tr.std)} ({tr.n} seeds)" if tr else "—") + " |")
    return rows


def beside_reference(own_paths: Sequence[Path], reference: Path | None) -> list[str]:
    """Markdown of the section: the runs of ``own_paths`` beside ``reference``'s results, and
    the reference's verdicts (or why there are none)."""
    md = ["## Verdicts: from the shipped reference set, not from these runs", ""]
    if reference is None:
        return md + ["These runs are one seed each: too few for any verdict, and no shipped "
                     "reference set was found beside this installation (it is in a repository "
                     "checkout, `checkpoints/reference/results`). Train more seeds "
                     "(`flatkd sweep`) and run `flatkd report` on them.", ""]
    own, ref = load_results(list(own_paths)), load_results([reference])
    hist, _ = load_histories(own)
    ref_hist, _ = load_histories(ref)
    acc = T.accuracy_table(ref, ref_hist)
    comp = T.comparison_table(ref, histories=ref_hist)
    md += [f"Your runs are one seed each, too few for a paired test. Beside each is the shipped "
           f"reference set (`{reference}`: the same recipe, {len(ref)} result files, 3–5 seeds "
           "per method; final accuracy with BatchNorm recalibrated, Hessian trace of the same "
           "evaluation settings), and the verdicts below are the reference set's.", "",
           *_cells(own, ref, hist, ref_hist), "",
           "Reference verdicts (mean ± std over seeds, paired t-test, Holm within its table, "
           "smallest detectable difference, convergence):", ""]
    md += [f"* {v.sentence}" for v in report_verdicts(acc, comp)]
    controls = reference.parent / "controls" / "results"
    if controls.is_dir():
        ctrl = load_results([controls])
        ctrl_hist, _ = load_histories(ctrl)
        matched = T.step_matched_table(ref, ctrl, {**ref_hist, **ctrl_hist})
        if len(matched):
            md += ["", f"Step-matched controls of the reference set (`{controls}`: the "
                   "counterpart trained for the spaced method's optimizer steps):", ""]
            md += [f"* {v.sentence}" for v in matched.attrs["verdicts"]]
    return md + [""]
