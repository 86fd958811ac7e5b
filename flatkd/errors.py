"""User-facing errors: the CLI turns them into one line on stderr and exit code 2."""


class FlatkdError(Exception):
    """Bad input from the user (unknown name, out-of-range value, bad file).

    The message is one line that names the valid choices; the CLI prints it and exits 2.
    """


class CheckpointError(FlatkdError):
    """A file that is missing, truncated, not a flatkd checkpoint, or unsafe to load."""


class TrainingDiverged(FlatkdError):
    """A loss became NaN/Inf; the message names the step. The last good checkpoint stays."""
