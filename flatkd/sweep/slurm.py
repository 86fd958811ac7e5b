"""SLURM through submitit: the executor built from the sweep file's ``slurm`` section (checked
when the file is read, :func:`flatkd.sweep.parse.check_slurm_parameters`), one job array per
``flatkd sweep run --launcher slurm`` (:func:`submit`; each task is :func:`run_job`) and the
sbatch script it would write (:func:`sbatch_preview`)."""
from __future__ import annotations

import shlex
import sys
from typing import Any, Mapping

from ..errors import FlatkdError
from .launch import execute
from .parse import from_record
from .spec import Run, Sweep


def run_job(record: Mapping[str, Any], name: str, launcher: str, nproc: int) -> dict:
    """One array task: rebuild the sweep from its record and bring run ``name`` to done."""
    sweep = from_record(record)
    run = sweep.run(name)
    out = execute(sweep, run, launcher, nproc, say=lambda s: print(s, flush=True))
    if out.status == "failed":
        raise RuntimeError(f"{name}: {out.message} (log: {out.log})")
    return out.__dict__


def executor(sweep: Sweep, cluster: str = "slurm"):
    """A submitit executor for the sweep: logs under ``<out>/slurm``, parameters from the sweep
    file's ``slurm`` section (job name ``flatkd-<sweep name>`` unless given)."""
    import submitit
    params = {k: v for k, v in sweep.slurm.items() if k != "launcher"}
    params.setdefault("name", f"flatkd-{sweep.name}")
    folder = sweep.out / "slurm" / "%j"
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as e:
        raise FlatkdError(f"--launcher slurm: no SLURM cluster here ({e}); run the job array on "
                          "this machine with --cluster local, or see the sbatch script with "
                          "flatkd sweep plan --launcher slurm") from None
    ex.update_parameters(**params)
    return ex


def submit(sweep: Sweep, runs: list[Run], ex, nproc: int = 1) -> list:
    """Submit ``runs`` as one job array on executor ``ex`` (:func:`executor`, made before
    anything is written, so no cluster means nothing written); returns the submitit jobs."""
    inner = sweep.slurm.get("launcher", "local")
    n = len(runs)
    return ex.map_array(run_job, [sweep.record()] * n, [r.name for r in runs], [inner] * n,
                        [nproc] * n)


def sbatch_preview(sweep: Sweep, n: int) -> str:
    """The sbatch script submitit would write for an array of ``n`` runs (no cluster needed)."""
    try:
        import submitit
        from submitit.slurm import slurm as S
        eq = S.SlurmExecutor._equivalence_dict()
        generic = submitit.AutoExecutor._valid_parameters()
        given = {"name": f"flatkd-{sweep.name}",
                 **{k: v for k, v in sweep.slurm.items() if k != "launcher"}}
        params: dict[str, Any] = {}
        for k, v in given.items():               # generic names first, slurm_ ones win
            if k in generic:
                params[eq.get(k, k)] = S._convert_mem(v) if k == "mem_gb" else v
        for k, v in given.items():
            if k.startswith("slurm_"):
                params[k[len("slurm_"):]] = v
        cmd = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit " \
              f"{shlex.quote(str((sweep.out / 'slurm' / '%j').resolve()))}"
        return S._make_sbatch_string(command=cmd, folder=(sweep.out / "slurm" / "%j").resolve(),
                                     map_count=n, **params)
    except Exception as e:                       # noqa: BLE001 — a preview only
        return f"(no sbatch preview with this submitit version: {type(e).__name__}: {e})"
