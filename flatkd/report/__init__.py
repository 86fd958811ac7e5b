"""Report: tables in the paper's layout and seaborn figures from the result files written by
``flatkd eval``.

``build_report(paths, out_dir)`` is the entry point of ``flatkd report`` and the notebooks.
"""
from .build import build_report
from .results import find_result_files, load_result, load_results

__all__ = ["build_report", "find_result_files", "load_result", "load_results"]
