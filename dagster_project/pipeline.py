"""The main job end to end: synthetic world → Dagster (ingest, dbt, protocols) → exports → reports.

``sicp demo`` (and so ``make demo``) calls :func:`run_demo`. The middle runs as one Dagster job
in-process in the project's Dagster instance (``data/dagster_home``, dagster_project/instance.py),
so what the demo did is what ``make ui`` shows: the run, every materialisation and asset check.
The demo prints one line per stage and its summary; the full Dagster and dbt logs go to a log
file named at the end (``data/logs/demo-<time>.log``), or, ``verbose``, to the terminal live.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sicp.settings import Paths


@dataclass
class DemoSummary:
    paths: Paths
    dagster_home: Path
    files: list[Path] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)
    #: Where the Dagster and dbt logs went (None: shown live, ``--verbose``).
    log: Path | None = None
    run_id: str = ""

    def __str__(self) -> str:
        lines = ["", "SICP demo: what was produced and where", ""]
        lines += [
            f"  input files (synthetic world)  {self.paths.input_dir}",
            f"  warehouse (DuckDB)             {self.paths.warehouse}",
            f"  results store                  {self.paths.results_dir / 'estimates.parquet'}",
            f"  Dagster run (make ui)          {self.run_id} in {self.dagster_home}",
        ]
        lines += [f"  {p}" for p in self.files]
        if self.headline:
            lines += ["", "Primary estimates:"] + [f"  {h}" for h in self.headline]
        if self.log is not None:
            lines += ["", f"Full Dagster and dbt log: {self.log}"]
        return "\n".join(lines)


@dataclass(frozen=True)
class Console:
    """Where the demo's own lines (one per stage) go, and how."""

    stream: TextIO
    #: Rewrite the running stage's line in place: a terminal that shows nothing else.
    live: bool
    #: dbt may write colour codes: its output reaches a terminal.
    colours: bool


def demo_log(paths: Paths) -> Path:
    """A new log file for one demo, beside the warehouse: ``logs/demo-<time>.log``."""
    return paths.warehouse.parent / "logs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log"


@contextmanager
def demo_console(log: Path | None) -> Iterator[Console]:
    """With a ``log``, everything written to stdout and stderr, by this process and by its
    children (dbt, the report renderers), goes to the log while the stage lines go to the
    terminal; without (``--verbose``), all of it is shown live, stage lines included."""
    if log is None:
        yield Console(sys.stdout, live=False, colours=sys.stdout.isatty())
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with (
        open(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8") as terminal,
        open(log, "a", buffering=1, encoding="utf-8") as sink,
    ):
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with redirect_stdout(sink), redirect_stderr(sink):
                yield Console(terminal, live=terminal.isatty(), colours=False)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def fresh_synthetic_folder(folder: Path) -> None:
    """Clear a folder the generator wrote before (it holds truth.json); never real data."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / "truth.json").exists():
            raise RuntimeError(
                f"{folder} holds files that are not a synthetic world (no truth.json); "
                "set SICP_INPUT_DIR to an empty folder for the demo"
            )
        shutil.rmtree(folder)


class PipelineError(RuntimeError):
    """A step of the Dagster run failed; the message names each failed step and why."""


def run_pipeline(
    paths: Paths, progress: TextIO | None = None, live: bool = False, dbt_colours: bool = False
) -> str:
    """Materialise every asset (ingest, dbt build, every protocol) in one in-process run of the
    ``ingest_and_build`` job, recorded in the project's Dagster instance; returns the run id.

    ``progress`` gets one line per stage as it ends (and, ``live``, as it runs). A failed step
    does not stop the independent ones (one protocol's failure leaves the others to run, as in
    ``sicp analyse``); the failures are raised together at the end."""
    from dagster_project.definitions import build_definitions, everything_job
    from dagster_project.instance import project_instance
    from dagster_project.progress import RunProgress, pipeline_stages

    defs = build_definitions(paths, dbt_colours=dbt_colours)
    job = defs.resolve_job_def(everything_job.name)
    run_id = str(uuid.uuid4())
    with project_instance(paths) as instance:
        listener = None if progress is None else RunProgress(pipeline_stages(defs), progress, live)
        if listener is not None:
            instance.add_event_listener(run_id, listener)
        result = job.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
        if listener is not None:
            listener.finish()
    if not result.success:
        failures = [
            f"{event.step_key}: {event.step_failure_data.error.message.strip()}"
            if event.step_failure_data.error
            else str(event.step_key)
            for event in result.all_events
            if event.is_step_failure
        ]
        raise PipelineError("the Dagster run failed:\n" + "\n".join(f"  - {f}" for f in failures))
    return run_id


def run_demo(
    paths: Paths,
    scenario: str = "default",
    seed: int = 42,
    formats: tuple[str, ...] = ("html", "pdf"),
    verbose: bool = False,
) -> DemoSummary:
    """Generate a world and run everything on it, printing one line per stage; the Dagster and
    dbt logs go to :func:`demo_log` (``verbose``: to the terminal, live)."""
    from analysis.protocol import load_protocols
    from analysis.store import read_results
    from dagster_project.instance import dagster_home
    from dagster_project.progress import stage_line
    from sicp.export import export_marts
    from sicp.report_data import headline_rows
    from sicp.reports import render_all
    from sicp.synth import generate_world

    panel_formats = ("parquet", "dta")
    summary = DemoSummary(paths, dagster_home(paths), log=None if verbose else demo_log(paths))
    with demo_console(summary.log) as console:

        def stage(name: str, detail: str, started: float) -> None:
            console.stream.write(stage_line(name, detail, time.perf_counter() - started) + "\n")

        t = time.perf_counter()
        fresh_synthetic_folder(paths.input_dir)
        world = generate_world(scenario, seed, paths.input_dir)
        stage(
            "generate",
            f"world {scenario!r} (seed {seed}): {len(world['files'])} files, "
            f"{sum(world['files'].values()):,} rows",
            t,
        )

        try:
            summary.run_id = run_pipeline(paths, console.stream, console.live, console.colours)
        except PipelineError as exc:
            if summary.log is None:
                raise
            raise PipelineError(f"{exc}\nFull Dagster and dbt log: {summary.log}") from None

        t = time.perf_counter()
        exported = export_marts(
            paths.warehouse, paths.results_dir / "panels", formats=panel_formats
        )
        summary.files += [path for files in exported.values() for path in files]
        stage("export", f"{len(exported)} panels as {', '.join(panel_formats)}", t)

        t = time.perf_counter()
        reports = render_all(paths, formats=formats)
        summary.files += reports
        stage(
            "reports", f"{', '.join(sorted({p.stem for p in reports}))} as {', '.join(formats)}", t
        )

    protocols = {p.id: p for p in load_protocols(paths.protocols_dir)}
    rows = headline_rows(read_results(paths.results_dir), protocols, primary_only=False)
    summary.headline = [
        f"{r.protocol_id}: {r.estimate:.4g} {r.unit} (95% CI {r.ci_low:.4g} to {r.ci_high:.4g})"
        for r in rows.itertuples()
    ]
    return summary
