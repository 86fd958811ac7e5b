"""User-facing errors: the CLI turns them into one line on stderr and exit code 2."""
import contextlib
import difflib
import os
import re
import sys


#: exit codes of every flatkd command: a refused input, an interrupt (the last checkpoint kept)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted; the last checkpoint is kept (continue with --resume)"


class FlatkdError(Exception):
    """Bad input from the user (unknown name, out-of-range value, bad file).

    The message is one line that names the valid choices; the CLI prints it and exits 2.
    """


class CheckpointError(FlatkdError):
    """A file that is missing, truncated, not a flatkd checkpoint, or unsafe to load."""


class TrainingDiverged(FlatkdError):
    """A loss became NaN/Inf; the message names the step. The last good checkpoint stays."""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(text: str) -> str:
    """``text`` as one plain line: terminal colour codes removed, line breaks and runs of
    whitespace collapsed to single spaces (third-party messages often carry both)."""
    return " ".join(_ANSI.sub("", text).split())


def did_you_mean(name: str, choices: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid choices to a mistyped ``name``, or ""."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def main_process() -> bool:
    """True in a single process and in rank 0 of a launch (from the launcher's ``RANK``): the
    process that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def report_error(message: str) -> None:
    """``flatkd: error: MESSAGE`` as one line on stderr from the reporting process (rank 0 under
    torchrun, so a launch of N processes prints it once); every rank also leaves it in the error
    file torchrun gives each worker (``TORCHELASTIC_ERROR_FILE``), from which torchrun's failure
    summary and ``flatkd … --nproc-per-node`` read it."""
    line = one_line(message)
    if main_process():
        print(f"flatkd: error: {line}", file=sys.stderr, flush=True)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        import json
        import time
        with contextlib.suppress(OSError):
            with open(error_file, "w") as f:
                json.dump({"message": line, "timestamp": int(time.time())}, f)


def warn(message: str) -> None:
    """One ``flatkd: warning:`` line on stderr (from rank 0 only under torchrun)."""
    if main_process():
        print(f"flatkd: warning: {one_line(message)}", file=sys.stderr, flush=True)
