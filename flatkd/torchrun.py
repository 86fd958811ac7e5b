"""``flatkd train|eval --nproc-per-node N``: the same command in N processes under torchrun
(``torch.distributed.run``, standalone rendezvous on this machine), reported like one process.

Bare ``torchrun -m flatkd …`` works as well; there flatkd's processes print a refusal once
(rank 0) and leave it in torchrun's per-worker error file, but torchrun itself then adds its
failure summary and a traceback and exits 1. Launched from here the summary is reduced to
flatkd's own outcome: a refused input is the one line rank 0 printed and exit 2, an interrupt
exit 130, any other failure one line naming the rank and its exit code.
"""
from __future__ import annotations

import logging
import os
import sys

from .errors import EXIT_INTERRUPTED, EXIT_USAGE, INTERRUPTED, one_line


def strip_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` (the child processes' command)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == option:
            skip = True
        elif not token.startswith(option + "="):
            out.append(token)
    return out


def launch(argv: list[str], nproc: int) -> int:
    """Run ``python -m flatkd ARGV`` in ``nproc`` processes; the exit code flatkd's one process
    would give. Each process gets ``OMP_NUM_THREADS`` = CPUs // nproc unless it is set (torchrun
    would set 1 and print a banner about it)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    for name in ("torch.distributed.run", "torch.distributed.elastic",
                 "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)   # the summary is ours, below
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={nproc}",
                                         "-m", "flatkd", *argv])
    try:
        run(args)
    except ChildFailedError as e:
        return _outcome(e.failures)
    except (SignalException, KeyboardInterrupt):
        print(f"flatkd: {INTERRUPTED}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _outcome(failures: dict) -> int:
    """Exit code and (where rank 0 printed nothing) the one line for the failed ranks'
    ``{rank: ProcessFailure}``: a refusal on any rank is exit 2, an interrupt 130, else 1."""
    codes = {rank: f.exitcode for rank, f in failures.items()}
    refused = sorted(r for r, c in codes.items() if c == EXIT_USAGE)
    if refused:
        if 0 not in refused:                     # rank 0 did not print it: its error file did
            print(f"flatkd: error: {one_line(failures[refused[0]].message)}", file=sys.stderr)
        return EXIT_USAGE
    if any(c == EXIT_INTERRUPTED for c in codes.values()):
        return EXIT_INTERRUPTED
    rank = min(codes)
    print(f"flatkd: error: process {rank} of the launch failed with exit code {codes[rank]} "
          "(its output is above)", file=sys.stderr)
    return 1
