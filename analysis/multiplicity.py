"""Multiplicity: Holm-adjusted p-values over each declared family of primary hypotheses.

A protocol joins a family with ``multiplicity_family: <name>`` (protocols/README.md); its
hypothesis is its primary analysis's reporting term. Holm (1979) controls the family-wise
error rate under any dependence between the tests, which suits outcomes measured on the same
people and practices; statsmodels' ``multipletests`` does the arithmetic. A member without an
estimate (failed, not applicable, not run) is listed with the family but cannot be adjusted:
the others are then adjusted over the members that have one, and the row says how many of the
declared members that was, so a reader sees when the family is incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from analysis.protocol import Protocol

METHOD = "holm"
COLUMNS = (
    "multiplicity_family",
    "protocol_id",
    "protocol_hash",
    "analysis_id",
    "term",
    "p_value",
    "p_adjusted",
    "method",
    "n_declared",
    "n_adjusted",
)


def adjusted_p_values(estimates: pd.DataFrame, protocols: Mapping[str, Protocol]) -> pd.DataFrame:
    """One row per family member: its raw and Holm-adjusted p-value (NaN without an
    estimate), ordered by family and protocol."""
    rows = []
    families: dict[str, list[Protocol]] = {}
    for protocol in protocols.values():
        if protocol.multiplicity_family:
            families.setdefault(protocol.multiplicity_family, []).append(protocol)
    for family, members in sorted(families.items()):
        members = sorted(members, key=lambda p: p.id)
        p_values = []
        for protocol in members:
            hit = estimates[
                (estimates["protocol_id"] == protocol.id)
                & (estimates["protocol_hash"] == protocol.hash)
                & (estimates["analysis_id"] == "primary")
                & (estimates["term"] == protocol.reporting.term)
            ]
            p_values.append(float(hit["p_value"].iloc[0]) if len(hit) else np.nan)
        raw = np.asarray(p_values, dtype=float)
        known = ~np.isnan(raw)
        adjusted = np.full(len(raw), np.nan)
        if known.any():
            adjusted[known] = multipletests(raw[known], method=METHOD)[1]
        rows += [
            {
                "multiplicity_family": family,
                "protocol_id": p.id,
                "protocol_hash": p.hash,
                "analysis_id": "primary",
                "term": p.reporting.term,
                "p_value": raw[i],
                "p_adjusted": adjusted[i],
                "method": METHOD,
                "n_declared": len(members),
                "n_adjusted": int(known.sum()),
            }
            for i, p in enumerate(members)
        ]
    return pd.DataFrame(rows, columns=list(COLUMNS))
