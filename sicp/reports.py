"""Render the two reports (evaluation report, outcome-measure audit) from the results store."""

from __future__ import annotations

from pathlib import Path

from sicp.render import render_report
from sicp.settings import PROJECT_ROOT, Paths

REPORTS = ("evaluation_report", "outcome_audit")


def report_params(paths: Paths, threshold: int, protocol_ids: tuple[str, ...] = ()
                  ) -> dict[str, object]:
    """The Quarto-style parameters every report takes: where to read, the suppression bar and
    (optionally) the subset of protocols to report."""
    return {
        "protocol_ids": ",".join(protocol_ids),
        "input_dir": str(paths.input_dir),
        "results_dir": str(paths.results_dir),
        "warehouse": str(paths.warehouse),
        "protocols_dir": str(paths.protocols_dir),
        "suppress_below": threshold,
    }


def render_all(paths: Paths, formats: tuple[str, ...] = ("html", "pdf"), threshold: int = 5,
               names: tuple[str, ...] = REPORTS, protocol_ids: tuple[str, ...] = ()
               ) -> list[Path]:
    """Render each report to ``paths.reports_dir``; returns the files written."""
    written: list[Path] = []
    for name in names:
        written += render_report(PROJECT_ROOT / "reports" / f"{name}.qmd", paths.reports_dir,
                                 params=report_params(paths, threshold, protocol_ids),
                                 formats=formats)
    return written
