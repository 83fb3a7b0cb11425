"""The comparison report: results.json files -> Markdown, LaTeX, CSV, PNG figures, one HTML page.

``python -m benchmark.report --runs runs/<suite> --out reports --reference <csv>`` or
:func:`write_report`.
"""

from benchmark.report.build import write_report
from benchmark.report.collect import Expected, ResultsError, load_expected, load_results

__all__ = ["Expected", "ResultsError", "load_expected", "load_results", "write_report"]
