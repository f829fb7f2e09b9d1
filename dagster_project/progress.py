"""One line per stage of a pipeline run, read from its Dagster events as they are stored.

``sicp demo`` prints these (ingest by source, dbt by model, protocols by count) instead of the
Dagster and dbt logs, which go to its log file. On a terminal that shows nothing else the line
of the running stage is rewritten in place as the stage advances; elsewhere (a pipe, a file,
CI) each stage prints once, when it is done.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

import dagster as dg

from dagster_project.assets.dbt import SEED_GROUP
from dagster_project.assets.ingest import GROUP as INGEST_GROUP
from dagster_project.assets.ingest import raw_key
from dagster_project.assets.protocols import GROUP as RESULTS_GROUP
from sicp.contract import SOURCES

#: Materialisation metadata summed over a stage, with the words its line uses.
_SUMS = {"rows_loaded": "rows loaded", "rows_quarantined": "quarantined", "warnings": "warnings"}
_STEP_ENDS = {
    dg.DagsterEventType.STEP_SUCCESS: "ok",
    dg.DagsterEventType.STEP_FAILURE: "failed",
    dg.DagsterEventType.STEP_SKIPPED: "skipped",
}


def stage_line(name: str, detail: str, seconds: float | None) -> str:
    """The line a stage prints: its name, what it did and how long it took (if it ran)."""
    return f"{name:<10} {detail}" + ("" if seconds is None else f" ({seconds:.1f} s)")


@dataclass
class Stage:
    """What one stage (a set of steps) of the run has done so far, counted from its events."""

    name: str
    #: Materialisation metadata whose values are tallied (a protocol's ``status``).
    tally: str | None = None
    #: The asset keys a stage counts (a source, a model, a protocol) and what each one is.
    kinds: dict[dg.AssetKey, str] = field(default_factory=dict)
    steps: set[str] = field(default_factory=set)
    done: Counter[str] = field(default_factory=Counter)
    sums: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None

    @property
    def finished(self) -> bool:
        return sum(self.ended.values()) == len(self.steps)

    def handle(self, entry: dg.EventLogEntry) -> None:
        """Count one event of the stage's steps (the run announces every planned
        materialisation and check at its start: those do not start the stage)."""
        event = entry.get_dagster_event()
        if event.event_type == dg.DagsterEventType.STEP_START and self.first is None:
            self.first = entry.timestamp
        if self.first is not None:
            self.last = entry.timestamp
        if (materialization := entry.asset_materialization) is not None:
            if kind := self.kinds.get(materialization.asset_key):
                self.done[kind] += 1
            metadata = materialization.metadata
            for name in _SUMS.keys() & metadata.keys():
                value = metadata[name].value
                self.sums[name] += len(value) if isinstance(value, list) else value
            if self.tally in metadata:
                self.statuses[str(metadata[self.tally].value)] += 1
        elif (check := entry.asset_check_evaluation) is not None:
            self.checks[
                "passed"
                if check.passed
                else "warned"
                if check.severity == dg.AssetCheckSeverity.WARN
                else "failed"
            ] += 1
        elif event.event_type in _STEP_ENDS:
            self.ended[_STEP_ENDS[event.event_type]] += 1

    def detail(self) -> str:
        totals = Counter(self.kinds.values())
        parts = [", ".join(f"{self.done[k]}/{n} {k}" for k, n in sorted(totals.items()))]
        parts += [", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))]
        parts += [
            ", ".join(f"{self.sums[s]:,} {words}" for s, words in _SUMS.items() if self.sums[s])
        ]
        if self.checks:
            parts += ["checks " + ", ".join(f"{n} {c}" for c, n in sorted(self.checks.items()))]
        parts += [
            ", ".join(
                f"{n} step{'s' * (n != 1)} {e}"
                for e in ("failed", "skipped")
                if (n := self.ended[e])
            )
        ]
        if self.first is None and not self.ended:
            parts.append("not run")
        return "; ".join(p for p in parts if p)

    def line(self) -> str:
        seconds = self.last - self.first if self.first and self.last else None
        return stage_line(self.name, self.detail(), seconds)


def pipeline_stages(defs: dg.Definitions) -> list[Stage]:
    """The stages of a run of every asset: ingest (counting sources), dbt (models and seeds)
    and protocols, each with the steps that belong to it."""
    ingest, dbt, protocols = Stage("ingest"), Stage("dbt"), Stage("protocols", tally="status")
    sources = {raw_key(name) for name in SOURCES}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        for key, group in assets_def.group_names_by_key.items():
            if group == INGEST_GROUP:
                stage, kind = ingest, "sources" if key in sources else None
            elif group == RESULTS_GROUP:
                stage, kind = protocols, "protocols"
            else:
                stage, kind = dbt, "seeds" if group == SEED_GROUP else "models"
            stage.steps.add(assets_def.op.name)
            if kind:
                stage.kinds[key] = kind
    return [ingest, dbt, protocols]


class RunProgress:
    """Listens to a run's events (``DagsterInstance.add_event_listener``) and writes each
    stage's line to ``out`` when the stage is done; with ``live``, also while it runs."""

    def __init__(self, stages: list[Stage], out: TextIO, live: bool = False) -> None:
        self._stages = stages
        self._by_step = {step: stage for stage in stages for step in stage.steps}
        self._out, self._live = out, live
        self._printed: set[str] = set()
        self._blocked: set[str] = set()  # pools a step has waited for, said once each
        self._shown = 0  # width of the line being rewritten in place

    def __call__(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        stage = self._by_step.get(event.step_key or "") if event else None
        if stage is None:
            return
        engine = event.engine_event_data if event.is_engine_event else None
        pool = engine.metadata.get("pool") if engine is not None else None
        if pool is not None and pool.value not in self._blocked:
            self._blocked.add(pool.value)
            self._say(
                f"{stage.name:<10} waiting: another run holds the pool {pool.value} (one "
                f"writer of the warehouse at a time); if that run was killed, free its "
                f"slot in the Dagster UI under Deployment > Concurrency"
            )
        stage.handle(entry)
        if stage.finished:
            self._print(stage)
        elif self._live and stage.first is not None:
            self._rewrite(stage.line())

    def finish(self) -> None:
        """Print the line of every stage not printed yet: one that did not finish (an
        interrupted run) or did not run (Dagster does not run what follows a failed step)."""
        for stage in self._stages:
            if stage.steps:
                self._print(stage)

    def _print(self, stage: Stage) -> None:
        if stage.name in self._printed:
            return
        self._printed.add(stage.name)
        self._say(stage.line())

    def _say(self, line: str) -> None:
        if self._live:
            self._rewrite("")
            self._out.write("\r")
        self._out.write(line + "\n")
        self._out.flush()

    def _rewrite(self, text: str) -> None:
        text = text[: shutil.get_terminal_size().columns - 1]
        self._out.write("\r" + text.ljust(self._shown))
        self._out.flush()
        self._shown = len(text)
