"""Coverage of the two area-series protocols' primary analyses on many simulated area worlds.

Only the Greater Manchester areas are simulated (``sicp.synth.areas.simulate_areas`` with the
scenario's settings and the same random stream as ``simulate_world``, so replication r is the
area part of ``sicp validate``'s world r), about 0.2 s a world instead of 5 s. Each world's
``area_month_panel`` is built from the compiled dbt project (``sicp.dbt_replay``), prepared
and fitted through ``analysis.runner.prepare_panel`` / ``analysis.methods.fit`` exactly as the
protocols state, and once more with the previous inference option for comparison. Truth: the
world's realised effect (log scale for the ITS rate ratio).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.area_inference --reps 500

(one BLAS thread: the fits use small matrices, and threads only contend on a shared machine;
500 replications of both worlds took 13 minutes that way on 2 busy cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.methods import fit
from analysis.protocol import Analysis, load_protocols
from analysis.runner import MILESTONES_MART, apply_filters, prepare_panel, with_milestones
from sicp.contract import SOURCES
from sicp.dbt_replay import CompiledProject, build_marts, compile_project
from sicp.settings import PROJECT_ROOT, Paths
from sicp.synth.areas import milestones, simulate_areas, study_area
from sicp.synth.scenario import load_scenario
from sicp.synth.write import conform
from sicp.validate import replication_seeds

PROTOCOLS = ("did_area_emergency_admissions", "its_salford_emergency_admissions")
#: The inference each protocol used before issue 6, fitted alongside for comparison.
PREVIOUS = {"did_area_emergency_admissions": "cluster", "its_salford_emergency_admissions": "ar1"}
TRUTH_KEYS = {"emergency_per_1000": "per_1000", "emergency_ratio": "ratio"}
OUT = PROJECT_ROOT / "docs" / "validation" / "area_inference.md"


def area_panel(
    scenario: dict[str, Any], world_seed: int, project: CompiledProject
) -> tuple[dict[str, pd.DataFrame], dict]:
    """One world's area_month_panel and programme_milestones (the warehouse's own models) and
    its realised area truth."""
    rng = np.random.default_rng(np.random.SeedSequence([world_seed, 3]))
    areas, truth = simulate_areas(scenario, rng)
    frames = {
        "area_month_indicators": areas,
        "study_area": study_area(scenario),
        "milestones": milestones(scenario),
    }
    frames = {k: conform(v, SOURCES[k]) for k, v in frames.items()}
    return build_marts(project, frames, ["area_month_panel", MILESTONES_MART]), truth


def _truth(truth: dict, effect: str, log_scale: bool) -> float:
    """The realised value behind a protocol truth key (comparator_salford_att_<label>)."""
    label = effect.removeprefix("comparator_salford_att_")
    value = truth["emergency_admissions_65plus"][TRUTH_KEYS[label]]
    return math.log(value) if log_scale else float(value)


def replicate(scenario_name: str, reps: int, seed: int, project: CompiledProject) -> pd.DataFrame:
    """One row per replication, protocol and inference option."""
    scenario = load_scenario(scenario_name)
    protocols = {
        p.id: p for p in load_protocols(Paths.from_env().protocols_dir) if p.id in PROTOCOLS
    }
    rows = []
    for rep, world_seed in enumerate(replication_seeds(seed, reps)):
        panels, truth = area_panel(scenario, world_seed, project)
        for pid in PROTOCOLS:
            protocol = with_milestones(protocols[pid], panels.__getitem__)
            spec = protocol.truth["primary"]
            primary = next(a for a in protocol.analyses() if a.analysis_id == "primary")
            data = apply_filters(
                prepare_panel(panels[protocol.panel], protocol.data), primary.filters
            )
            previous = dataclasses.replace(
                primary,
                method=dataclasses.replace(
                    primary.method, options={**primary.method.options, "se_type": PREVIOUS[pid]}
                ),
            )
            for label, analysis in (("protocol", primary), ("previous", previous)):
                row = _fit_row(analysis, data, protocol.outcome, str(spec["term"]))
                rows.append(
                    {
                        "scenario": scenario_name,
                        "rep": rep,
                        "protocol_id": pid,
                        "inference": label,
                        **row,
                        "truth": _truth(truth, str(spec["effect"]), spec.get("transform") == "exp"),
                    }
                )
    return pd.DataFrame(rows)


def _fit_row(analysis: Analysis, data: pd.DataFrame, outcome: str, term: str) -> dict:
    result = fit(analysis.method, data, outcome=outcome, covariates=list(analysis.covariates))
    tidy = result.row(term)
    return {
        "se_type": str(tidy["se_type"]),
        **{k: float(tidy[k]) for k in ("estimate", "std_error", "ci_low", "ci_high", "p_value")},
    }


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Bias, SD of the error, mean SE, coverage and rejection per scenario/protocol/option."""
    out = []
    for (scenario, pid, label), g in rows.groupby(
        ["scenario", "protocol_id", "inference"], sort=True
    ):
        err = g["estimate"] - g["truth"]
        cover = ((g["ci_low"] <= g["truth"]) & (g["truth"] <= g["ci_high"])).mean()
        out.append(
            {
                "scenario": scenario,
                "protocol": pid,
                "inference": label,
                "se_type": g["se_type"].iloc[0],
                "reps": len(g),
                "mean_truth": g["truth"].mean(),
                "bias": err.mean(),
                "sd_error": err.std(ddof=1),
                "mean_se": g["std_error"].mean(),
                "coverage": cover,
                "coverage_mc_se": math.sqrt(cover * (1 - cover) / len(g)),
                "rejection": (g["p_value"] < 0.05).mean(),
            }
        )
    return pd.DataFrame(out)


def markdown(summary: pd.DataFrame, *, reps: int, seed: int, seconds: float) -> str:
    lines = [
        "# Area-series inference: coverage study (issue 6)",
        "",
        f"`.venv/bin/python -m bench.area_inference --reps {reps} --seed {seed}` "
        f"({seconds / 60:.0f} min, one process). Worlds: the area part of `scenarios/mc.yml` "
        "(effects) and `scenarios/mc_null.yml` (zero effects), replication seeds from "
        f"`SeedSequence({seed})` (null world: seed + 1); `area_month_panel` from the validation "
        "twin; fits through `analysis.methods.fit` as the protocols state. `protocol` = the "
        "protocols' inference now (`se_type: random_walk`); `previous` = before issue 6 "
        "(cluster-robust TWFE; latent AR(1) ITS). Truth = realised effect (log scale for the "
        "ITS). Coverage of 95% intervals; rejection = share with p < 0.05.",
        "",
        "| scenario | protocol | inference | reps | mean truth | bias | SD error | mean SE "
        "| coverage (MC SE) | rejection |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary.itertuples(index=False):
        lines.append(
            f"| {r.scenario} | {r.protocol} | {r.inference} | {r.reps} | {r.mean_truth:.4g} | "
            f"{r.bias:.4g} | {r.sd_error:.4g} | {r.mean_se:.4g} | {100 * r.coverage:.1f}% "
            f"({100 * r.coverage_mc_se:.1f}) | {100 * r.rejection:.1f}% |"
        )
    lines += ["", "Inference options (se_type column of the results):", ""]
    for (pid, label), g in summary.groupby(["protocol", "inference"], sort=True):
        lines.append(f"- {pid}, {label}: {g['se_type'].iloc[0]}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20260601)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sicp-bench-") as work:
        project = compile_project(Path(work))
        rows = pd.concat(
            [
                replicate("mc", args.reps, args.seed, project),
                replicate("mc_null", args.reps, args.seed + 1, project),
            ],
            ignore_index=True,
        )
    summary = summarise(rows)
    text = markdown(summary, reps=args.reps, seed=args.seed, seconds=time.perf_counter() - started)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
