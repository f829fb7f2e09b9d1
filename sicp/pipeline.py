"""The main job end to end: synthetic world → Dagster (ingest, dbt, protocols) → exports → reports.

``sicp demo`` (and so ``make demo``) calls :func:`run_demo`. The middle runs as one Dagster job
in-process, so what the demo does is exactly what the Dagster UI would run.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sicp.settings import Paths


@dataclass
class DemoSummary:
    paths: Paths
    stages: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = ["", "SICP demo: what was produced and where", ""]
        lines += [f"  input files (synthetic world)  {self.paths.input_dir}",
                  f"  warehouse (DuckDB)             {self.paths.warehouse}",
                  f"  results store                  {self.paths.results_dir / 'estimates.parquet'}"]
        lines += [f"  {p}" for p in self.files]
        lines += ["", "Stage timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                      self.stages.items())]
        if self.headline:
            lines += ["", "Primary estimates:"] + [f"  {h}" for h in self.headline]
        return "\n".join(lines)


def fresh_synthetic_folder(folder: Path) -> None:
    """Clear a folder the generator wrote before (it holds truth.json); never real data."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / "truth.json").exists():
            raise RuntimeError(
                f"{folder} holds files that are not a synthetic world (no truth.json); "
                "set SICP_INPUT_DIR to an empty folder for the demo")
        shutil.rmtree(folder)


class PipelineError(RuntimeError):
    """A step of the Dagster run failed; the message names each failed step and why."""


def run_pipeline(paths: Paths) -> None:
    """Materialise every asset (ingest, dbt build, every protocol) in one in-process run.

    A failed step does not stop the independent ones (one protocol's failure leaves the others
    to run, as in ``sicp analyse``); the failures are raised together at the end."""
    import dagster as dg

    from dagster_project.definitions import build_definitions

    defs = build_definitions(paths)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                    raise_on_error=False)
    if not result.success:
        failures = [f"{event.step_key}: {event.step_failure_data.error.message.strip()}"
                    if event.step_failure_data.error else str(event.step_key)
                    for event in result.all_events if event.is_step_failure]
        raise PipelineError("the Dagster run failed:\n" + "\n".join(f"  - {f}" for f in failures))


def run_demo(paths: Paths, scenario: str = "default", seed: int = 42,
             formats: tuple[str, ...] = ("html", "pdf")) -> DemoSummary:
    from analysis.protocol import load_protocols
    from analysis.store import read_results
    from sicp.export import export_marts
    from sicp.report_data import headline_rows
    from sicp.reports import render_all
    from sicp.synth import generate_world

    summary = DemoSummary(paths)

    def stage(name: str, started: float) -> None:
        summary.stages[name] = time.perf_counter() - started

    t = time.perf_counter()
    fresh_synthetic_folder(paths.input_dir)
    generate_world(scenario, seed, paths.input_dir)
    stage("generate", t)

    t = time.perf_counter()
    run_pipeline(paths)
    stage("ingest+dbt+protocols", t)

    t = time.perf_counter()
    exported = export_marts(paths.warehouse, paths.results_dir / "panels",
                            formats=("parquet", "dta"))
    summary.files += [path for files in exported.values() for path in files]
    stage("export", t)

    t = time.perf_counter()
    summary.files += render_all(paths, formats=formats)
    stage("reports", t)

    protocols = {p.id: p for p in load_protocols(paths.protocols_dir)}
    rows = headline_rows(read_results(paths.results_dir), protocols, primary_only=False)
    summary.headline = [
        f"{r.protocol_id}: {r.estimate:.4g} {r.unit} (95% CI {r.ci_low:.4g} to {r.ci_high:.4g})"
        for r in rows.itertuples()
    ]
    return summary
