"""``flatkd sweep``: a sweep file expands to named runs; ``plan`` lists them with their state,
``run`` trains what is not finished (resuming interrupted runs), evaluates every finished
checkpoint whose result is missing or stale, and leaves the results in ``<out>/results`` for
``flatkd report``.

Layout of a sweep folder::

    sweep.yaml                 the sweep file as run (after --set overrides)
    runs/<name>/               checkpoint.pt, metrics.csv, config.yaml of each run
    results/<name>.json        its evaluation (results/<name>.teacher.json for the teacher)
    configs/<name>.yaml        the training keys each run was launched with; configs/eval.yaml
    logs/<name>.log            the output of its flatkd train / flatkd eval processes
    slurm/                     submitit's job files and logs (--launcher slurm)
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

import yaml

from ..errors import FlatkdError
from ..io import writable_target, write_text
from .launch import (CLUSTERS, LAUNCHERS, Outcome, default_nproc, eval_argv, run_local, states,
                     summarize, train_argv)
from .parse import load
from .slurm import executor, sbatch_preview, submit
from .spec import Run, Sweep, fmt_value, preset_names

__all__ = ["CLUSTERS", "LAUNCHERS", "Outcome", "Run", "Sweep", "load", "plan_text",
           "preset_names", "run_sweep"]


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def _axes_line(sweep: Sweep) -> str:
    parts = []
    for key, vals in sweep.axes.items():
        shown = ",".join(fmt_value(v) if isinstance(v, float) else str(v) for v in vals)
        parts.append(f"{key} {shown}")
    return "; ".join(parts)


def plan_text(sweep: Sweep, launcher: str = "local", nproc: int | None = None,
              commands: bool = False) -> str:
    """The runs of the sweep, one a line with their state (todo, resume, evaluate, done), and
    with ``commands`` the exact commands a run would start."""
    st = states(sweep)
    counts: dict[str, int] = {}
    for s in st.values():
        counts[s.label] = counts.get(s.label, 0) + 1
    n = default_nproc(sweep, nproc)
    ev = sweep.eval
    lines = [f"sweep {sweep.name}: {_runs(len(sweep.runs))} ({_axes_line(sweep)})",
             f"out: {sweep.out}",
             "evaluation: " + ("none" if ev.suite == "none" else
                               f"--suite {ev.suite} of the {', '.join(ev.models)}"
                               + (f", config {ev.config}" if ev.config else "")
                               + (", " + ", ".join(f"{k}={v}" for k, v in ev.set.items())
                                  if ev.set else "")),
             "state: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), ""]
    width = max(len(s.label) for s in st.values()) if st else 4
    for run in sweep.runs:
        s = st[run.name]
        lines.append(f"  {s.label:<{width}}  {run.name}")
        if commands and not s.finished:
            if launcher == "slurm":
                continue
            if s.train != "done":
                lines.append("      " + shlex.join(train_argv(sweep, run, launcher, n,
                                                              s.train == "partial")))
            if ev.suite != "none":
                for model in ev.models:
                    lines.append(f"      (cd {shlex.quote(str(sweep.out))} && "
                                 + shlex.join(eval_argv(sweep, run, model, launcher, n)) + ")")
    if launcher == "slurm":
        todo = sum(1 for s in st.values() if not s.finished)
        lines += ["", f"slurm: one job array of {todo} task(s); each runs "
                  f"{sweep.slurm.get('launcher', 'local')} inside its job.",
                  sbatch_preview(sweep, max(todo, 1))]
    return "\n".join(lines)


def run_sweep(sweep: Sweep, launcher: str = "local", jobs: int = 1, nproc: int | None = None,
              cluster: str = "slurm", wait: bool = False, report: bool = False,
              say: Callable[[str], None] = print) -> dict:
    """Run what is not finished; returns ``{"outcomes": [...], "results": Path, "jobs": [...],
    "report": Path | None}``. Raises FlatkdError (after the other runs went on) if any run
    failed; nothing is started if a run's existing checkpoint belongs to another experiment."""
    if launcher not in LAUNCHERS:
        raise FlatkdError(f"unknown launcher {launcher!r}; valid choices: {', '.join(LAUNCHERS)}")
    if cluster not in CLUSTERS:
        raise FlatkdError(f"unknown cluster {cluster!r}; valid choices: {', '.join(CLUSTERS)}")
    if jobs < 1:
        raise FlatkdError(f"--jobs must be ≥ 1, got {jobs}")
    writable_target(sweep.out, "sweep directory")
    st = states(sweep)                      # refuses foreign checkpoints before any work
    todo = [r for r in sweep.runs if not st[r.name].finished]
    ex = executor(sweep, cluster) if launcher == "slurm" and todo else None   # no cluster: refused
    sweep.out.mkdir(parents=True, exist_ok=True)
    write_text(sweep.out / "sweep.yaml", yaml.safe_dump(sweep.data, sort_keys=False))
    n = default_nproc(sweep, nproc)
    results = sweep.out / "results"
    say(f"sweep {sweep.name}: {_runs(len(sweep.runs))}, {len(todo)} to do "
        f"({len(sweep.runs) - len(todo)} already finished); out {sweep.out}")
    outcome: dict = {"outcomes": [], "results": results, "jobs": [], "report": None}
    if launcher == "slurm":
        if not todo:
            outcome["outcomes"] = [Outcome(r.name, "done", []) for r in sweep.runs]
        else:
            jobs_ = submit(sweep, todo, ex, n)
            outcome["jobs"] = jobs_
            say(f"submitted {len(jobs_)} array task(s): {jobs_[0].job_id.split('_')[0]} "
                f"(logs in {sweep.out / 'slurm'})")
            if not (wait or cluster in ("local", "debug")):
                say(f"re-run this command when the jobs have ended (finished runs are skipped), "
                    f"then: flatkd report {results} --out {sweep.out / 'report'}")
                return outcome
            for job, run in zip(jobs_, todo):
                try:
                    job.result()
                    outcome["outcomes"].append(Outcome(run.name, "done", ["job"]))
                except Exception as e:     # noqa: BLE001 — submitit wraps the job's exception
                    last = (str(e).strip().splitlines() or [type(e).__name__])[-1]
                    outcome["outcomes"].append(Outcome(run.name, "failed", ["job"], last,
                                                       str(sweep.out / "logs" / f"{run.name}.log")))
                    say(f"{run.name}: failed ({last})")
    else:
        outcome["outcomes"] = run_local(sweep, todo, launcher, jobs, n, say) if todo else []
    line, bad = summarize(outcome["outcomes"] + [Outcome(r.name, "done", []) for r in sweep.runs
                                                 if st[r.name].finished])
    say(line)
    if bad:
        listed = "; ".join(f"{o.name}: {o.status} ({o.message})" for o in bad[:5])
        more = f"; … and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise FlatkdError(f"{len(bad)} of {len(sweep.runs)} runs did not finish: {listed}{more}; "
                          f"logs in {sweep.out / 'logs'}; re-run the sweep to continue")
    if report and sweep.eval.suite != "none":
        from ..report import build_report
        build_report([results], sweep.out / "report")
        outcome["report"] = sweep.out / "report"
        say(f"report: {sweep.out / 'report'}")
    elif sweep.eval.suite != "none":
        say(f"results: {results}  (report: flatkd report {results} --out "
            f"{Path(sweep.out) / 'report'})")
    return outcome
