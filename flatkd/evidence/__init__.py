"""Evidence: reading result files and selecting what a comparison compares.

The report (:mod:`flatkd.report`), the measure study (:mod:`flatkd.study`) and the notebooks
all read result files through this package: :func:`load_results` (one entry per evaluated
network), training histories, the metrics and accuracy selections a comparison reads
(:mod:`.selections`), the convergence diagnostic of a run (:mod:`.convergence`), the statistics
of a comparison over seeds (:mod:`.stats`) and the verdicts drawn from them (:mod:`.verdicts`).
Nothing here draws a figure or formats a table.
"""
from .results import find_result_files, load_result, load_results

__all__ = ["find_result_files", "load_result", "load_results"]
