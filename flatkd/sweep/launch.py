"""Launching a sweep's runs: ``flatkd train`` / ``flatkd eval`` as subprocesses (local), under
``torchrun`` (one ``torchrun --nproc_per_node N -m flatkd train ...`` per run), or as a SLURM job
array through submitit (each job runs one run the local or torchrun way).

Every run is guarded by a lock file (``<out>/locks/<name>.lock``, ``flock``) that its child
processes inherit: a second sweep on the same folder, or a re-run after the sweep process was
killed while a child still trains, skips the run instead of training it twice at once.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import yaml

from ..errors import FlatkdError
from ..io import file_mode
from .spec import Run, Sweep
from .state import RunState, ShaCache, inspect

LAUNCHERS = ("local", "torchrun", "slurm")
CLUSTERS = ("slurm", "local", "debug")


@dataclass
class Outcome:
    """What happened to one run: ``status`` done | failed | busy, and the steps taken."""

    name: str
    status: str
    did: list[str]
    message: str = ""
    log: str = ""
    seconds: float = 0.0


# ---------------------------------------------------------------- commands

def prefix(launcher: str, nproc: int) -> list[str]:
    """How flatkd is started: ``python -m flatkd`` or ``torchrun ... -m flatkd``."""
    if launcher == "torchrun":
        # python -m torch.distributed.run is the torchrun entry point, from this interpreter
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", "-m", "flatkd"]
    return [sys.executable, "-m", "flatkd"]


def train_config_path(sweep: Sweep, run: Run) -> Path:
    return sweep.out / "configs" / f"{run.name}.yaml"


def eval_config_path(sweep: Sweep) -> Path:
    return sweep.out / "configs" / "eval.yaml"


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless ``path`` holds it; a private temporary file and one rename, so
    concurrent writers of the same content (parallel runs, array tasks) never disturb each
    other."""
    import tempfile
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, file_mode())               # as any file the process creates (umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_configs(sweep: Sweep, runs: list[Run]) -> None:
    """The YAML files the commands read: one per run (its training keys) and the evaluation's
    (every evaluation setting, resolved)."""
    from ..config import to_plain
    for run in runs:
        text = yaml.safe_dump(run.overrides(), sort_keys=False) if run.overrides() else "{}\n"
        _write_if_changed(train_config_path(sweep, run), text)
    if sweep.eval.suite != "none":
        _write_if_changed(eval_config_path(sweep),
                          yaml.safe_dump(to_plain(sweep.eval.resolved()), sort_keys=False))


def train_argv(sweep: Sweep, run: Run, launcher: str, nproc: int, resume: bool) -> list[str]:
    argv = prefix(launcher, nproc) + [
        "train", "--method", run.method, "--arch", run.arch, "--dataset", run.dataset,
        "--seed", str(run.seed)]
    if run.interval is not None:
        argv += ["--interval", repr(run.interval)]
    argv += ["--config", str(train_config_path(sweep, run).resolve()),
             "--out", str(sweep.run_dir(run).resolve()), "--quiet"]
    return argv + (["--resume"] if resume else [])


def eval_argv(sweep: Sweep, run: Run, model: str, launcher: str, nproc: int) -> list[str]:
    """Run from ``sweep.out``: the result records the checkpoint as ``runs/<name>/checkpoint.pt``,
    so the report finds it from ``<out>/results`` wherever the sweep folder is moved."""
    use = launcher if launcher == "torchrun" and sweep.torchrun.get("eval", False) else "local"
    return prefix(use, nproc) + [
        "eval", "--ckpt", f"runs/{run.name}/checkpoint.pt", "--suite", sweep.eval.suite,
        "--model", model, "--config", str(eval_config_path(sweep).resolve()),
        "--device", sweep.eval.device, "--out", f"results/{sweep.eval.result_name(run, model)}",
        "--quiet"]


def default_nproc(sweep: Sweep, given: int | None) -> int:
    if given is not None:
        return given
    if sweep.torchrun.get("nproc_per_node"):
        return int(sweep.torchrun["nproc_per_node"])
    try:
        import torch
        return max(1, torch.cuda.device_count())
    except Exception:                     # noqa: BLE001 — no CUDA build: one process
        return 1


# ---------------------------------------------------------------- one run

class RunLock:
    """An exclusive ``flock`` on ``<out>/locks/<name>.lock``; ``fd`` is passed to the children so
    the lock lives as long as any of them (None where flock is unavailable)."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:                # not POSIX: no lock
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if isinstance(e, BlockingIOError):      # another process holds the run
                os.close(fd)
                return False
            # any other error: a file system without flock; go on unguarded
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Children:
    """The live child processes of this sweep process (to stop them on an interrupt)."""

    def __init__(self):
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def call(self, argv: list[str], log: Path, cwd: Path | None, env: Mapping[str, str] | None,
             pass_fds: tuple[int, ...]) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"$ {shlex.join(argv)}\n")
            f.flush()
            with self.lock:
                if self.stopping:
                    return -signal.SIGTERM
                proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=cwd,
                                        env=None if env is None else dict(env),
                                        pass_fds=pass_fds, stdin=subprocess.DEVNULL)
                self.procs.add(proc)
            try:
                rc = proc.wait()
            finally:
                with self.lock:
                    self.procs.discard(proc)
            f.write(f"# exit code {rc}\n")
        return rc

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every child, SIGKILL those still alive after ``grace_s``."""
        with self.lock:
            self.stopping = True
            procs = list(self.procs)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + grace_s
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()


def execute(sweep: Sweep, run: Run, launcher: str = "local", nproc: int = 1,
            children: Children | None = None, env: Mapping[str, str] | None = None,
            cache: ShaCache | None = None,
            say: Callable[[str], None] = lambda s: None) -> Outcome:
    """Bring one run to done: train (or resume) unless complete, then evaluate each model whose
    result is missing or stale. Train/eval run as child processes; their output goes to
    ``<out>/logs/<name>.log``."""
    children = children or Children()
    log = sweep.out / "logs" / f"{run.name}.log"
    start = time.perf_counter()
    lock = RunLock(sweep.out / "locks" / f"{run.name}.lock")
    if not lock.acquire():
        return Outcome(run.name, "busy", [], "another process holds its lock (still training "
                       "from an earlier sweep process?); re-run the sweep once it has ended",
                       str(log))
    fds = (lock.fd,) if lock.fd is not None else ()
    did: list[str] = []
    try:
        write_configs(sweep, [run])
        state = inspect(sweep, run, cache)
        if state.train != "done":
            resume = state.train == "partial"
            did.append("resume" if resume else "train")
            say(f"{run.name}: {'resume from epoch ' + str(state.epoch) if resume else 'train'}")
            rc = children.call(train_argv(sweep, run, launcher, nproc, resume), log, None, env, fds)
            if rc != 0:
                return Outcome(run.name, "failed", did, f"training exited with code {rc}",
                               str(log), time.perf_counter() - start)
            state = inspect(sweep, run, cache)
            if state.train != "done":
                return Outcome(run.name, "failed", did, "training ended without a complete "
                               "checkpoint", str(log), time.perf_counter() - start)
        for model, s in state.results.items():
            if s == "done":
                continue
            did.append(f"eval {model}")
            say(f"{run.name}: evaluate {model} ({sweep.eval.suite})")
            if s == "stale":                     # computed from another checkpoint or settings
                sweep.result_path(run, model).unlink(missing_ok=True)
            rc = children.call(eval_argv(sweep, run, model, launcher, nproc), log, sweep.out,
                               env, fds)
            if rc != 0:
                return Outcome(run.name, "failed", did, f"evaluation of the {model} exited with "
                               f"code {rc}", str(log), time.perf_counter() - start)
        if not inspect(sweep, run, cache).finished:
            return Outcome(run.name, "failed", did, "results do not match the checkpoint after "
                           "evaluation", str(log), time.perf_counter() - start)
        return Outcome(run.name, "done", did, "", str(log), time.perf_counter() - start)
    except FlatkdError as e:
        return Outcome(run.name, "failed", did, str(e), str(log), time.perf_counter() - start)
    finally:
        lock.release()


# ---------------------------------------------------------------- local / torchrun

def run_local(sweep: Sweep, runs: list[Run], launcher: str = "local", jobs: int = 1,
              nproc: int = 1, say: Callable[[str], None] = print) -> list[Outcome]:
    """Run ``runs`` as child processes, ``jobs`` runs at a time (threads waiting on children).

    With ``jobs > 1`` every child gets ``OMP_NUM_THREADS`` = cores // jobs unless it is set.
    SIGINT/SIGTERM stop the children (each keeps its last checkpoint) and raise
    KeyboardInterrupt."""
    env = None
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}
    children = Children()
    cache = ShaCache(sweep.out)
    total, counter, count_lock = len(runs), [0], threading.Lock()

    def one(run: Run) -> Outcome:
        with count_lock:
            counter[0] += 1
            k = counter[0]
        out = execute(sweep, run, launcher, nproc, children, env, cache,
                      say=lambda s: say(f"[{k}/{total}] {s}"))
        tail = f" ({out.message}; log: {out.log})" if out.status != "done" else \
            f" in {out.seconds:.0f} s" if out.did else " (already finished)"
        say(f"[{k}/{total}] {run.name}: {out.status}{tail}")
        return out

    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum, frame):
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, on_term)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures: list = []
    try:
        futures = [pool.submit(one, r) for r in runs]
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        for f in futures:
            f.cancel()
        say("interrupted: stopping the runs (each keeps its last checkpoint); run the same "
            "command again to continue the sweep")
        children.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        cache.save()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def summarize(outcomes: list[Outcome]) -> tuple[str, list[Outcome]]:
    done = [o for o in outcomes if o.status == "done"]
    bad = [o for o in outcomes if o.status != "done"]
    worked = sum(1 for o in done if o.did)
    return (f"{len(done)}/{len(outcomes)} runs done ({worked} trained or evaluated now, "
            f"{len(done) - worked} already finished)"), bad


def states(sweep: Sweep, runs: list[Run] | None = None) -> dict[str, RunState]:
    cache = ShaCache(sweep.out)
    try:
        return {r.name: inspect(sweep, r, cache) for r in (runs or sweep.runs)}
    finally:
        cache.save()
