"""Report: tables in the paper's layout and seaborn figures from the result files written by
``flatkd eval`` (read through :mod:`flatkd.evidence`).

``build_report(paths, out_dir)`` is the entry point of ``flatkd report`` and the notebooks.
"""
from .build import build_report

__all__ = ["build_report"]
