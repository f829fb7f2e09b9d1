"""Design-matrix pieces shared by the estimators, written once."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def covariate_design(frame: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Covariates as numeric columns (categorical ones as dummies, first level omitted)."""
    parts = []
    for cov in covariates:
        col = frame[cov]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            parts.append(col.astype(float).to_frame(cov))
        else:
            parts.append(
                pd.get_dummies(
                    col.astype(str), prefix=cov, prefix_sep="=", drop_first=True, dtype=float
                )
            )
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)


def indicator(values: pd.Series, level: object | None, name: str) -> pd.Series:
    """0/1 version of an arm or uptake column (``level`` marks the 1s for labelled columns)."""
    if level is not None:
        return (values == level).astype(float)
    out = pd.to_numeric(values, errors="coerce")
    if not out.isin([0.0, 1.0]).all():
        raise ValueError(f"{name!r} must be 0/1 (or pass the level that marks 1)")
    return out.astype(float)
