"""Render the two reports (evaluation report, outcome-measure audit) and the results explorer
from the results store."""

from __future__ import annotations

from pathlib import Path

from sicp.explorer import EXPLORER_FILE, write_explorer
from sicp.render import render_report
from sicp.report_data import ReportInputs
from sicp.settings import PROJECT_ROOT, Paths

REPORTS = ("evaluation_report", "outcome_audit")
#: The name under which :func:`render_all` writes the results explorer (HTML only).
EXPLORER = "explorer"


def report_params(
    paths: Paths, threshold: int, protocol_ids: tuple[str, ...] = ()
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


def render_all(
    paths: Paths,
    formats: tuple[str, ...] = ("html", "pdf"),
    threshold: int = 5,
    names: tuple[str, ...] = (*REPORTS, EXPLORER),
    protocol_ids: tuple[str, ...] = (),
) -> list[Path]:
    """Render each report to ``paths.reports_dir``, and the results explorer beside them when
    HTML is among the formats; returns the files written."""
    params = report_params(paths, threshold, protocol_ids)
    written: list[Path] = []
    for name in names:
        if name == EXPLORER:
            if "html" in formats:
                written.append(
                    write_explorer(
                        ReportInputs.from_params(params),
                        paths.reports_dir / EXPLORER_FILE,
                        threshold,
                        subset=",".join(protocol_ids),
                    )
                )
            continue
        written += render_report(
            PROJECT_ROOT / "reports" / f"{name}.qmd",
            paths.reports_dir,
            params=params,
            formats=formats,
        )
    return written
