"""Estimator speed against peer packages, on one panel from a built warehouse.

* Group-time ATT: ``analysis.did.callaway_santanna`` against ``csdid`` (a port of R's ``did``)
  and ``differences``, on the practice-quarter panel of the ``did_practice_emergency_admissions``
  protocol, never-treated controls, varying base period, no covariates (so the outcome
  regression, IPW and doubly robust 2x2 estimators coincide) and a multiplier bootstrap with the
  same number of draws in each.
* Stepped wedge: ``analysis.stepped_wedge.hussey_hughes_lmm`` against statsmodels' ``MixedLM``
  on the same model (emergency admissions per 1,000 practice-month ~ in scope + period fixed
  effects, random practice intercept, REML) on the practice-month panel.

Each fit is timed ``repeats`` times and the median kept. A peer that fails to import or run is
reported with its error rather than dropped.

    python -m bench.estimators --warehouse data/bench/default/warehouse.duckdb
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.did import callaway_santanna
from analysis.protocol import load_protocols
from analysis.runner import prepare_panel, read_panel
from analysis.stepped_wedge import hussey_hughes_lmm
from sicp.settings import PROJECT_ROOT

DID_PROTOCOL = "did_practice_emergency_admissions"
N_BOOT = 999
ATT_TOLERANCE = 1e-6


@dataclass
class Comparison:
    model: str
    implementation: str
    seconds: float | None  # median of the repeats; None when the implementation failed
    estimate: float | None  # the overall ATT, or the LMM treatment coefficient
    std_error: float | None
    max_abs_diff_cells: float | None  # largest |ATT(g,t) difference| against ours (DiD only)
    note: str = ""


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def did_panel(warehouse: Path) -> pd.DataFrame:
    """The practice-quarter panel exactly as the DiD protocol's runner prepares it."""
    protocol = next(p for p in load_protocols(PROJECT_ROOT / "protocols") if p.id == DID_PROTOCOL)
    panel = read_panel(warehouse, protocol.panel)
    frame = prepare_panel(panel, protocol.data)
    return frame[
        ["practice_code", "quarter", "start_quarter", "emergency_admissions_per_1000"]
    ].assign(unit_id=lambda d: pd.factorize(d["practice_code"])[0] + 1)


def _our_cells(result) -> pd.Series:
    tidy = result.tidy
    cells = tidy[tidy["aggregation"] == "att_gt"]
    return pd.Series(
        cells["estimate"].to_numpy(),
        index=pd.MultiIndex.from_arrays([cells["group"].astype(int), cells["time"].astype(int)]),
    )


def compare_did(panel: pd.DataFrame, repeats: int) -> list[Comparison]:
    y = "emergency_admissions_per_1000"

    def ours() -> object:
        return callaway_santanna(
            panel,
            outcome=y,
            unit="practice_code",
            time="quarter",
            cohort="start_quarter",
            control_group="never",
            base_period="varying",
            n_boot=N_BOOT,
        )

    seconds, res = _timed(ours, repeats)
    simple = res.row("simple")
    mine = _our_cells(res)
    out = [
        Comparison(
            "group-time ATT",
            "analysis.did.callaway_santanna",
            seconds,
            float(simple["estimate"]),
            float(simple["boot_se"]),
            0.0,
            f"bootstrap {N_BOOT} draws; analytic SE {float(simple['std_error']):.6g}",
        )
    ]
    out.append(_csdid(panel, y, mine, repeats))
    out.append(_differences(panel, y, mine, repeats))
    return out


def _cells_diff(mine: pd.Series, theirs: pd.Series) -> float:
    joined = pd.concat([mine.rename("ours"), theirs.rename("theirs")], axis=1, join="inner")
    if len(joined) != len(mine):
        raise ValueError(f"{len(mine)} ATT(g,t) cells here, {len(joined)} matched in the peer")
    return float((joined["ours"] - joined["theirs"]).abs().max())


def _csdid(panel: pd.DataFrame, y: str, mine: pd.Series, repeats: int) -> Comparison:
    try:
        from csdid.att_gt import ATTgt

        def fit() -> object:
            att = ATTgt(
                yname=y,
                tname="quarter",
                idname="unit_id",
                gname="start_quarter",
                data=panel,
                control_group="nevertreated",
                biters=N_BOOT,
            )
            att.fit(est_method="reg", base_period="varying", bstrap=True)
            att.aggte(typec="simple")
            return att

        seconds, att = _timed(fit, repeats)
        summary = att.results
        cells = pd.Series(
            np.asarray(summary["att"], dtype=float),
            index=pd.MultiIndex.from_arrays(
                [np.asarray(summary["group"], dtype=int), np.asarray(summary["year"], dtype=int)]
            ),
        )
        agg = att.atte  # csdid returns the overall SE as a length-1 array
        return Comparison(
            "group-time ATT",
            "csdid",
            seconds,
            float(np.ravel(agg["overall_att"])[0]),
            float(np.ravel(agg["overall_se"])[0]),
            _cells_diff(mine, cells),
            f"est_method=reg, bootstrap {N_BOOT} draws",
        )
    except Exception as exc:  # a peer's failure is a result to report, not a crash
        return Comparison(
            "group-time ATT",
            "csdid",
            None,
            None,
            None,
            None,
            f"failed: {type(exc).__name__}: {exc}",
        )


def _differences(panel: pd.DataFrame, y: str, mine: pd.Series, repeats: int) -> Comparison:
    try:
        from differences import ATTgt

        data = panel.assign(cohort=panel["start_quarter"].where(panel["start_quarter"] > 0))
        data = data.set_index(["unit_id", "quarter"])[[y, "cohort"]]

        def fit() -> tuple[object, pd.DataFrame]:
            att = ATTgt(data=data, cohort_column="cohort", base_period="varying")
            att.fit(
                formula=y,
                est_method="reg",
                control_group="never_treated",
                boot_iterations=N_BOOT,
                random_state=1,
                progress_bar=False,
            )
            return att, att.aggregate("simple", boot_iterations=N_BOOT, random_state=1)

        seconds, (att, simple) = _timed(fit, repeats)
        cells_frame = att.results().reset_index()
        cells_frame.columns = [
            "_".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c)
            for c in cells_frame.columns
        ]
        att_col = next(c for c in cells_frame.columns if c.endswith("ATT"))
        cells = pd.Series(
            cells_frame[att_col].to_numpy(dtype=float),
            index=pd.MultiIndex.from_arrays(
                [cells_frame["cohort"].astype(int), cells_frame["time"].astype(int)]
            ),
        )
        cols = {c[-1] if isinstance(c, tuple) else c: c for c in simple.columns}
        return Comparison(
            "group-time ATT",
            "differences",
            seconds,
            float(simple[cols["ATT"]].iloc[0]),
            float(simple[cols["std_error"]].iloc[0]),
            _cells_diff(mine, cells),
            f"est_method=reg, bootstrap {N_BOOT} draws",
        )
    except Exception as exc:  # a peer's failure is a result to report, not a crash
        return Comparison(
            "group-time ATT",
            "differences",
            None,
            None,
            None,
            None,
            f"failed: {type(exc).__name__}: {exc}",
        )


def lmm_panel(warehouse: Path) -> pd.DataFrame:
    panel = read_panel(warehouse, "practice_month_panel")
    return panel.assign(
        y=1000
        * panel["emergency_admissions"].astype(float)
        / panel["person_months_65plus"].astype(float),
        in_mdg_scope=panel["in_mdg_scope"].astype(float),
    )[["practice_code", "period", "in_mdg_scope", "y"]]


def compare_lmm(panel: pd.DataFrame, repeats: int) -> list[Comparison]:
    import statsmodels.formula.api as smf

    def ours() -> object:
        return hussey_hughes_lmm(
            panel, outcome="y", treatment="in_mdg_scope", cluster="practice_code", period="period"
        )

    seconds, res = _timed(ours, repeats)
    row = res.row("treatment")
    out = [
        Comparison(
            "stepped-wedge LMM",
            "analysis.stepped_wedge.hussey_hughes_lmm",
            seconds,
            float(row["estimate"]),
            float(row["std_error"]),
            None,
            "profiled REML (lme4's criterion)",
        )
    ]

    def plain() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return smf.mixedlm(
                "y ~ in_mdg_scope + C(period)", panel, groups=panel["practice_code"]
            ).fit(reml=True)

    seconds_sm, fit = _timed(plain, repeats)
    out.append(
        Comparison(
            "stepped-wedge LMM",
            "statsmodels MixedLM",
            seconds_sm,
            float(fit.params["in_mdg_scope"]),
            float(fit.bse["in_mdg_scope"]),
            None,
            "REML, default optimiser",
        )
    )
    return out


def compare(warehouse: Path, repeats: int = 3) -> list[Comparison]:
    return compare_did(did_panel(warehouse), repeats) + compare_lmm(lmm_panel(warehouse), repeats)


def markdown(rows: list[Comparison]) -> str:
    lines = [
        "## Estimators against peer packages",
        "",
        f"On the default world's panels ({DID_PROTOCOL} practice-quarters; "
        "practice-months for the LMM); seconds are medians of repeated fits in one process.",
        "",
        "The SE of a group-time ATT is its bootstrap SE (draws differ between packages, so "
        "SEs agree only to Monte Carlo error); the LMM SE is model-based.",
        "",
        "| model | implementation | seconds (median) | time ÷ ours | estimate | SE | "
        "max abs ATT(g,t) diff vs ours | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours = {r.model: r.seconds for r in rows if r.implementation.startswith("analysis.")}

    def num(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for r in rows:
        ratio = (r.seconds / ours[r.model]) if r.seconds and ours.get(r.model) else None
        lines.append(
            f"| {r.model} | {r.implementation} | {num(r.seconds, '.3f')} | "
            f"{num(ratio, '.2f')} | {num(r.estimate, '.8g')} | "
            f"{num(r.std_error, '.6g')} | {num(r.max_abs_diff_cells, '.2e')} | "
            f"{r.note} |"
        )
    return "\n".join(lines) + "\n"


def write_comparisons(rows: list[Comparison], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(Comparison)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def read_comparisons(path: Path) -> list[Comparison]:
    """Rows written by :func:`write_comparisons` (empty cells are the failed peers' None)."""
    numeric = {f.name for f in fields(Comparison) if "float" in str(f.type)}
    with path.open(encoding="utf-8") as fh:
        return [
            Comparison(
                **{k: (float(v) if v else None) if k in numeric else v for k, v in r.items()}
            )
            for r in csv.DictReader(fh)
        ]


def main(argv: list[str] | None = None) -> list[Comparison]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = compare(args.warehouse, args.repeats)
    if args.csv:
        write_comparisons(rows, args.csv)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
