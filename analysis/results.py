"""The result object every estimator returns.

As in linearmodels and pyfixest, one tidy DataFrame is the single source of truth for the
estimates; ``summary()``, report tables and the results store all derive from it. Auxiliary
tables an estimator produces (an event-study path, a counterfactual series, synthetic-control
weights, permutation draws) travel beside it in ``tables`` and never restate the estimates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats

#: Columns of the tidy estimates table, in order. Estimators may add more after these.
TIDY_COLUMNS: tuple[str, ...] = (
    "term",
    "estimate",
    "std_error",
    "ci_low",
    "ci_high",
    "p_value",
    "n_obs",
    "n_clusters",
    "method",
    "se_type",
    "scale",
)


def inference_row(
    term: str,
    estimate: float,
    std_error: float,
    *,
    df: float | None = None,
    level: float = 0.95,
    **extra: object,
) -> dict[str, object]:
    """One tidy row with a Wald CI and two-sided p-value (t with ``df`` or normal)."""
    # The distributions' functions, not frozen objects: freezing one per row was most of the
    # time of estimators that report hundreds of rows (group-time ATTs).
    if df is not None and np.isfinite(df):
        ppf, sf = partial(stats.t.ppf, df=df), partial(stats.t.sf, df=df)
    else:
        ppf, sf = stats.norm.ppf, stats.norm.sf
    crit = float(ppf(0.5 + level / 2))
    if std_error is None or not np.isfinite(std_error) or std_error <= 0:
        ci_low = ci_high = p_value = float("nan")
    else:
        ci_low = estimate - crit * std_error
        ci_high = estimate + crit * std_error
        p_value = float(2 * sf(abs(estimate / std_error)))
    return {
        "term": term,
        "estimate": float(estimate),
        "std_error": float(std_error) if std_error is not None else float("nan"),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "p_value": p_value,
        **extra,
    }


def tidy_frame(rows: Sequence[Mapping[str, object]], **common: object) -> pd.DataFrame:
    """Assemble rows into a tidy frame with the standard columns first."""
    frame = pd.DataFrame([{**common, **r} for r in rows])
    for col in TIDY_COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.NA
    rest = [c for c in frame.columns if c not in TIDY_COLUMNS]
    return frame[list(TIDY_COLUMNS) + rest].reset_index(drop=True)


@dataclass
class EstimationResult:
    """Estimates of one fitted model, as a tidy table plus auxiliary tables and diagnostics."""

    method: str
    tidy: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    diagnostics: dict[str, float | int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in TIDY_COLUMNS if c not in self.tidy.columns]
        if missing:
            raise ValueError(f"tidy table of {self.method} lacks columns {missing}")

    def row(self, term: str) -> pd.Series:
        hits = self.tidy[self.tidy["term"] == term]
        if len(hits) != 1:
            known = ", ".join(map(str, self.tidy["term"]))
            raise KeyError(f"{self.method}: no single term {term!r} (terms: {known})")
        return hits.iloc[0]

    def estimate(self, term: str) -> float:
        return float(self.row(term)["estimate"])

    def std_error(self, term: str) -> float:
        return float(self.row(term)["std_error"])

    def summary(self) -> str:
        """A plain-text table of the estimates and the diagnostics, derived from ``tidy``."""
        cols = [
            "term",
            "estimate",
            "std_error",
            "ci_low",
            "ci_high",
            "p_value",
            "n_obs",
            "n_clusters",
        ]
        body = self.tidy[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        diag = "\n".join(f"  {k}: {v}" for k, v in sorted(self.diagnostics.items()))
        head = f"{self.method}  (SE: {', '.join(map(str, self.tidy['se_type'].dropna().unique()))})"
        return f"{head}\n{body}" + (f"\nDiagnostics:\n{diag}" if diag else "")

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()
