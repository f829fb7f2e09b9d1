"""Loud failures for rows lost to quarantine: the data loads, but the loss cannot go unseen.

A source *loses too much* when

- it is a reference table (:data:`REFERENCE_SOURCES`) and any of its rows is quarantined: a
  missing practice, population row, study area or unit cost silently changes every result
  built on it; or
- more than the allowed share of its rows is quarantined (``SICP_MAX_QUARANTINE_SHARE``,
  default 5%; ``sicp ingest --max-quarantine-share`` overrides it).

The valid rows stay loaded and ``raw.quarantine`` holds the rest; :func:`check_quarantine`
raises :class:`QuarantineLimitError` whose message names each offending source with its rows
read and quarantined, the share and the most frequent reasons, so ``sicp ingest`` can print
its report and exit non-zero.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from sicp.contract import SOURCES
from sicp.ingest.files import IngestError
from sicp.ingest.report import IngestReport, SourceReport

MAX_QUARANTINE_SHARE_ENV = "SICP_MAX_QUARANTINE_SHARE"
DEFAULT_MAX_QUARANTINE_SHARE = 0.05

#: Sources every result leans on, which must lose no row at all: everything the contract
#: files under ``reference/`` (practices, practice_population, study_area) and the unit costs.
REFERENCE_SOURCES: frozenset[str] = frozenset(
    {s.name for s in SOURCES.values() if s.folder == "reference"} | {"unit_costs"}
)

#: How many of a source's quarantine reasons the summary lists.
TOP_REASONS = 3


def max_quarantine_share(override: float | None = None) -> float:
    """The allowed share of quarantined rows per source: ``override`` (the CLI flag) if given,
    else ``SICP_MAX_QUARANTINE_SHARE``, else 5%; a clear error unless it is within 0 to 1."""
    if override is not None:
        value, where = override, "--max-quarantine-share"
    else:
        text = os.environ.get(MAX_QUARANTINE_SHARE_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_QUARANTINE_SHARE
        where = MAX_QUARANTINE_SHARE_ENV
        try:
            value = float(text)
        except ValueError:
            raise IngestError(
                where,
                f"{text!r} is not a number; give the allowed share of "
                f"quarantined rows as a fraction, e.g. 0.05 for 5%",
            ) from None
    if not 0.0 <= value <= 1.0:
        raise IngestError(where, f"{value:g} is not a share between 0 and 1 (e.g. 0.05 for 5%)")
    return value


@dataclass(frozen=True)
class QuarantineLoss:
    """One source that lost more rows to quarantine than it may."""

    source_name: str
    rows_read: int
    rows_quarantined: int
    #: Why it is too much: a reference table lost rows, or the share exceeds the limit.
    rule: str
    #: (column, reason, rows) most frequent first, from the source report.
    top_reasons: tuple[tuple[str, str, int], ...]
    other_reasons: int

    @property
    def share(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    def __str__(self) -> str:
        lines = [
            f"{self.source_name}: {self.rows_read:,} rows read, {self.rows_quarantined:,} "
            f"quarantined ({self.share:.1%}); {self.rule}"
        ]
        lines += [
            f"    {column}: {reason} ({n:,} row{'' if n == 1 else 's'})"
            for column, reason, n in self.top_reasons
        ]
        if self.other_reasons:
            lines.append(f"    ... and {self.other_reasons} other kind(s) of problem")
        return "\n".join(lines)


def source_loss(report: SourceReport, max_share: float) -> QuarantineLoss | None:
    """The loss of one source if it breaks either rule, else None."""
    read, bad = report.rows_read, report.rows_quarantined
    if bad == 0:
        return None
    share = bad / read if read else 0.0
    if report.source_name in REFERENCE_SOURCES:
        rule = "a reference table must lose no row"
    elif share > max_share:
        rule = (
            f"more than the allowed {max_share:.1%} ({MAX_QUARANTINE_SHARE_ENV} or "
            f"--max-quarantine-share)"
        )
    else:
        return None
    top = report.quarantine_summary[:TOP_REASONS]
    return QuarantineLoss(
        report.source_name, read, bad, rule, top, len(report.quarantine_summary) - len(top)
    )


def quarantine_losses(
    reports: IngestReport | Iterable[SourceReport], max_share: float
) -> list[QuarantineLoss]:
    """Every source of ``reports`` that breaks a rule, in report order."""
    sources = reports.sources if isinstance(reports, IngestReport) else reports
    return [loss for r in sources if (loss := source_loss(r, max_share)) is not None]


class QuarantineLimitError(IngestError):
    """Rows loaded, but some sources lost more to quarantine than they may."""

    def __init__(self, losses: list[QuarantineLoss]) -> None:
        body = "\n".join("  - " + str(loss).replace("\n", "\n  ") for loss in losses)
        super().__init__(
            "quarantine limits",
            f"{len(losses)} source(s) lost too many rows to quarantine. The valid rows are "
            f"loaded and raw.quarantine holds every rejected row with its file, row, column "
            f"and reason; fix the input files and ingest again.\n{body}",
        )
        self.losses = losses


def check_quarantine(reports: IngestReport | Iterable[SourceReport], max_share: float) -> None:
    """Raise :class:`QuarantineLimitError` if any source lost too many rows."""
    losses = quarantine_losses(reports, max_share)
    if losses:
        raise QuarantineLimitError(losses)
