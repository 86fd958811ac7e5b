"""torch.load's refusal message, read in one place.

``torch.load(weights_only=True)`` refuses a pickle that names a Python class with a long,
multi-line ``UnpicklingError`` that carries terminal colour codes ("... you have two options,
\\x1b[1mdo those steps only if ...\\x1b[0m ... Unsupported global: GLOBAL pkg.Class was not an
allowed global by default ..."). flatkd reports the one fact a user needs, the refused global;
``tests/test_checkpoint.py`` fails if torch changes the message so that it can no longer be found.
"""
from __future__ import annotations

import re

from .errors import one_line

_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_OTHER = re.compile(r"WeightsUnpickler error: (.*?)(?:\s+Check the documentation|$)")


def refused_content(error: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` refused, as a short plain phrase:
    ``"it names the Python object fractions.Fraction"`` or torch's own reason on one line."""
    text = one_line(str(error))
    found = _GLOBAL.search(text)
    if found:
        return f"it names the Python object {found.group(1)}"
    other = _OTHER.search(text)
    return other.group(1)[:160] if other else (text[:160] or type(error).__name__)
