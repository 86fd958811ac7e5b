"""flatkd: train knowledge-distillation models and measure the flatness and robustness they reach.

Python API::

    import flatkd
    ck = flatkd.load_checkpoint(path)
    model = ck.build_model("student")
    ds = flatkd.datasets.get("digits", split="train", augment=False)
    result = flatkd.evaluate(path, suite="flatness", overrides={"hessian.samples": 256})
"""
__version__ = "0.1.0"

from . import datasets  # noqa: E402
from .checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from .errors import CheckpointError, FlatkdError  # noqa: E402


def evaluate(path, suite="all", **kwargs):
    """Evaluate a checkpoint; see :func:`flatkd.evaluator.evaluate` (imported lazily)."""
    from .evaluator import evaluate as _evaluate
    return _evaluate(path, suite, **kwargs)


def train(method, arch, dataset, out_dir, **kwargs):
    """Train one run; see :func:`flatkd.training.run`. Returns the checkpoint path."""
    from .training import run
    return run(method, arch, dataset, out_dir, **kwargs)


__all__ = ["Checkpoint", "CheckpointError", "FlatkdError", "datasets", "evaluate",
           "load_checkpoint", "train", "__version__"]
