"""Which flatness/sharpness measures track generalization on a set of results: Kendall's τ with
the generalization gap and test accuracy (bootstrap CI), granulated τ (Jiang et al. 2020).

``run_study(paths, out=...)`` is the entry point (also ``python -m flatkd.study``); ``flatkd
report`` shows the same table when its results hold a target and measures.
"""
from .study import StudySettings, run_study

__all__ = ["StudySettings", "run_study"]
