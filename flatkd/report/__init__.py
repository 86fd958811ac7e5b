"""Report: tables in the paper's layout and seaborn figures from result files (SPEC §6).

``build_report(paths, out_dir)`` is the entry point of ``flatkd report`` and the notebooks.
"""
from .build import build_report
from .results import find_result_files, load_result, load_results

__all__ = ["build_report", "find_result_files", "load_result", "load_results"]
