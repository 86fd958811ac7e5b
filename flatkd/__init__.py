"""flatkd: train knowledge-distillation models and measure the flatness and robustness they reach.

Python API::

    import flatkd
    ck = flatkd.load_checkpoint(path)
    model = ck.build_model("student")
    ds = flatkd.datasets.get("digits", split="train", augment=False)
    result = flatkd.evaluate(path, suite="flatness", overrides={"hessian.samples": 256})

The attributes below are imported on first use (PEP 562), so ``import flatkd`` and
``flatkd --version`` / ``--help`` do not load PyTorch.
"""
from __future__ import annotations

import importlib

from .errors import CheckpointError, FlatkdError

__version__ = "0.1.0"

#: attribute → the submodule that holds it (None: the attribute is the submodule itself)
_LAZY = {"datasets": None, "models": None, "Checkpoint": "checkpoint",
         "load_checkpoint": "checkpoint"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'flatkd' has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def evaluate(path, suite="all", **kwargs):
    """Evaluate a checkpoint; see :func:`flatkd.evaluator.evaluate` (imported lazily)."""
    from .evaluator import evaluate as _evaluate
    return _evaluate(path, suite, **kwargs)


def train(method, arch, dataset, out_dir, **kwargs):
    """Train one run; see :func:`flatkd.training.run`. Returns the checkpoint path."""
    from .training import run
    return run(method, arch, dataset, out_dir, **kwargs)


__all__ = ["Checkpoint", "CheckpointError", "FlatkdError", "datasets", "evaluate",
           "load_checkpoint", "models", "train", "__version__"]
