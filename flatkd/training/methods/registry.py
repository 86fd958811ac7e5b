"""The table of training methods (``flatkd train --method NAME``)."""
from ...registry import Registry

METHODS = Registry("method")
