"""Training methods, one registered class each (``METHODS.get(name)``)."""
from . import online, selfkd  # noqa: F401  (registration side effects)
from . import constant_ahead, offline  # noqa: F401  (paper Tables 10, 11)
from .base import Method, Networks, Update
from .registry import METHODS

__all__ = ["METHODS", "Method", "Networks", "Update"]
