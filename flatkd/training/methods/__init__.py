"""Training methods, one registered class each (``METHODS.get(name)``)."""
from . import online, selfkd  # noqa: F401  (registration side effects)
from . import constant_ahead, offline  # noqa: F401  (paper Tables 10, 11)
from . import chain, peers, selftargets, shake  # noqa: F401  (paper Table 4 / App. A.3)
from . import frozen, stablekd  # noqa: F401  (StableKD, its ablation kd-mse, baselines DKD, AT)
from .base import Method, Networks, Update
from .registry import METHODS
from ..addons import register_variants

register_variants()                       # HOST+lskd, HOST+ctkd (paper Table 4 add-ons)

__all__ = ["METHODS", "Method", "Networks", "Update"]
