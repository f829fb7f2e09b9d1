"""Monte Carlo validation of the protocols' estimators (``sicp validate --reps N``).

Each replication simulates a fresh world (``sicp.synth.simulate_world``) with its own seed,
builds the analysis panels in memory and fits every protocol analysis that names a truth
(``truth:`` in the protocol). Across replications it reports, per analysis, the bias against
the world's realised truth, the empirical SE, the mean model SE, the 95% CI coverage and the
rejection rate at 5% (power on effect worlds, type I error on the ``null`` world).

The panels are the warehouse's own marts: the project is compiled once per study and each
world's delivery is ingested and replayed through the compiled models (:mod:`sicp.dbt_replay`),
so the study fits exactly what ``sicp analyse`` would fit on that world, without a second
implementation of any definition, and without dbt's per-node work and tests, which made a real
``dbt build`` take about a minute per world.

Replications depend on their seed alone, so a study can be *updated*: :func:`update_monte_carlo`
(``sicp validate --update --protocol ID ...``) reruns only the named protocols on the study's
replication seeds and replaces only their rows. When every selected protocol reads
``area_month_panel`` only, a replication simulates just the comparator areas
(``sicp.synth.world.simulate_area_world``), which have their own random stream.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.protocol import Protocol, load_protocols
from analysis.runner import MILESTONES_MART, attempt_protocol
from sicp.contract import SOURCES
from sicp.dbt_replay import CompiledProject, build_marts, compile_project
from sicp.settings import Paths
from sicp.synth.areas import milestones, study_area
from sicp.synth.scenario import load_scenario
from sicp.synth.world import World, simulate_area_world, simulate_world
from sicp.synth.write import conform

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --- the Monte Carlo study ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One protocol analysis with a truth: what is fitted and what it is compared with."""

    protocol_id: str
    analysis_id: str
    term: str
    effect: str
    log_scale: bool


def _targets(protocols: Sequence[Protocol]) -> list[Target]:
    return [
        Target(
            p.id,
            analysis_id,
            str(spec["term"]),
            str(spec["effect"]),
            spec.get("transform") == "exp",
        )
        for p in protocols
        for analysis_id, spec in p.truth.items()
    ]


def truth_protocols(ids: Sequence[str] | None) -> list[Protocol]:
    """The protocols with a truth (all, or those named), read once by the parent process and
    handed to the replications: protocol files edited during a study do not change it."""
    protocols = [p for p in load_protocols(Paths.from_env().protocols_dir) if p.truth]
    if ids is not None:
        unknown = set(ids) - {p.id for p in protocols}
        if unknown:
            raise ValueError(f"no protocol with a truth named {sorted(unknown)}")
        protocols = [p for p in protocols if p.id in set(ids)]
    return protocols


def replication_seeds(seed: int, reps: int) -> list[int]:
    """Per-replication world seeds, a deterministic function of ``seed`` alone."""
    states = np.random.SeedSequence(seed).generate_state(reps, dtype=np.uint32)
    return [int(s) for s in states]


#: The sources of an area-only world (:func:`area_world`): the comparator areas' indicators
#: and what the scenario declares about the study area and its milestones.
AREA_SOURCES = frozenset({"area_month_indicators", "study_area", "milestones"})


def area_world(scenario: str, world_seed: int) -> World:
    """The comparator areas of a world (``simulate_area_world``) with the scenario's
    ``study_area`` and ``milestones`` frames."""
    world = simulate_area_world(scenario, world_seed)
    scn = load_scenario(scenario)
    declared = {"study_area": study_area(scn), "milestones": milestones(scn)}
    frames = {**{k: conform(v, SOURCES[k]) for k, v in declared.items()}, **world.frames}
    assert set(frames) == AREA_SOURCES
    return World(frames, world.truth)


def _simulate(scenario: str, world_seed: int, sources: set[str]) -> World:
    """The world a replication needs. When the marts read only what an area-only world holds
    (the area protocols), only the comparator areas are simulated: they have their own random
    stream, so the frames and truth are the whole world's, in a fraction of a second."""
    if sources <= AREA_SOURCES:
        return area_world(scenario, world_seed)
    return simulate_world(scenario, world_seed)


def run_replication(
    rep: int,
    world_seed: int,
    scenario: str,
    protocols: Sequence[Protocol],
    project: CompiledProject,
) -> list[dict[str, Any]]:
    """Simulate one world, build its marts (:func:`sicp.dbt_replay.build_marts`) and run each
    protocol's truth-bearing analyses through :func:`analysis.runner.attempt_protocol`, the
    path of every run (milestones resolved, prepare, filter, fit); one row per target.
    Sensitivity analyses such as permutation tests have no truth to be checked against and
    are not fitted."""
    names = sorted({p.panel for p in protocols} | {MILESTONES_MART})
    world = _simulate(scenario, world_seed, project.sources(names))
    panels = build_marts(project, world.frames, names)
    effects = world.truth["effects"]
    rows = []
    for protocol in protocols:
        targets = _targets([protocol])
        outcome = attempt_protocol(
            protocol,
            panels.__getitem__,
            fingerprint=f"simulated {scenario} world {world_seed}",
            version="monte carlo",
            analyses={t.analysis_id for t in targets},
        )
        for target in targets:
            truth = float(effects[target.effect]["value"])
            row: dict[str, Any] = {
                "rep": rep,
                "world_seed": world_seed,
                "protocol_id": protocol.id,
                "analysis_id": target.analysis_id,
                "term": target.term,
                "truth_key": target.effect,
                "truth": math.log(truth) if target.log_scale else truth,
                "estimate": math.nan,
                "std_error": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "p_value": math.nan,
                "error": outcome.reason,
            }
            if outcome.run is not None:
                tidy = outcome.run.results[target.analysis_id].tidy.set_index("term")
                if target.term in tidy.index:
                    row.update(
                        {
                            k: float(tidy.at[target.term, k])
                            for k in ("estimate", "std_error", "ci_low", "ci_high", "p_value")
                        }
                    )
                else:
                    row["error"] = f"KeyError: {target.term!r}"
            rows.append(row)
    return rows


def summarise(replications: pd.DataFrame) -> pd.DataFrame:
    """Per target: bias, empirical SE, mean model SE, coverage and rejection with MC errors."""
    out = []
    keys = ["protocol_id", "analysis_id", "term", "truth_key"]
    for key, group in replications.groupby(keys, sort=True):
        ok = group.loc[
            group["error"].eq("") & group["estimate"].notna() & group["std_error"].notna()
        ]
        n = len(ok)
        error = ok["estimate"] - ok["truth"]
        covered = (ok["ci_low"] <= ok["truth"]) & (ok["truth"] <= ok["ci_high"])
        coverage = float(covered.mean()) if n else math.nan
        rejection = float((ok["p_value"] < 0.05).mean()) if n else math.nan
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "reps": n,
                "failed": len(group) - n,
                "mean_truth": ok["truth"].mean(),
                "mean_estimate": ok["estimate"].mean(),
                "bias": error.mean(),
                "bias_mcse": error.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan,
                "empirical_se": ok["estimate"].std(ddof=1),
                "sd_error": error.std(ddof=1),
                "model_se": ok["std_error"].mean(),
                "coverage": coverage,
                "coverage_mcse": math.sqrt(coverage * (1 - coverage) / n) if n else math.nan,
                "rejection": rejection,
            }
        )
    return pd.DataFrame(out)


def _markdown(summary: pd.DataFrame, *, reps: int, seed: int, scenario: str) -> str:
    """The committed table: settings and one line per target, no dates or timings."""
    lines = [
        "# Monte Carlo validation of the protocol estimators",
        "",
        f"Scenario `{scenario}`, {reps} replications, master seed {seed} (replication seeds "
        "from `numpy.random.SeedSequence(seed)`). Truth: the realised effect of each world "
        "(`truth.json`), on the log scale for ratio estimands. Bias = mean(estimate - truth); "
        "empirical SE = SD of the estimates; SD error = SD of estimate - truth; model SE = mean "
        "reported SE; coverage = share of 95% CIs containing the truth (MC SE in brackets); "
        "rejection = share with p < 0.05. Generated by `sicp validate`; rerunning with the "
        "same settings reproduces this file byte for byte.",
        "",
        "| protocol | analysis | term | reps | failed | truth | bias (MC SE) | empirical SE "
        "| SD error | model SE | coverage (MC SE) | rejection |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def g(x: float) -> str:
        return "NA" if pd.isna(x) else f"{x:.4g}"

    for r in summary.itertuples(index=False):
        lines.append(
            f"| {r.protocol_id} | {r.analysis_id} | {r.term} | {r.reps} | {r.failed} "
            f"| {g(r.mean_truth)} | {g(r.bias)} ({g(r.bias_mcse)}) | {g(r.empirical_se)} "
            f"| {g(r.sd_error)} | {g(r.model_se)} "
            f"| {g(100 * r.coverage)}% ({g(100 * r.coverage_mcse)}) | {g(100 * r.rejection)}% |"
        )
    return "\n".join(lines) + "\n"


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS thread per worker process (inherited by spawned workers): with as many workers
    as cores, threaded BLAS would only oversubscribe them."""
    saved = {k: os.environ.get(k) for k in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _replicate(
    args: Sequence[tuple[int, int, str, list[Protocol], CompiledProject]], workers: int
) -> Iterator[list[dict[str, Any]]]:
    """Replication rows in replication order, as they finish."""
    if workers <= 1:
        yield from (run_replication(*a) for a in args)
        return
    with (
        _single_threaded_blas(),
        ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool,
    ):
        yield from pool.map(run_replication, *zip(*args, strict=True))


def read_replications(path: Path) -> pd.DataFrame:
    """A replications.csv as written (an empty ``error`` is an empty string, not NaN)."""
    replications = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"error": str})
    replications["error"] = replications["error"].fillna("")
    return replications


def write_replications(frame: pd.DataFrame, path: Path, *, append: bool = False) -> None:
    """The one CSV format of replications (10 significant digits, which read back and
    rewritten give the same text)."""
    frame.to_csv(
        path,
        mode="a" if append else "w",
        header=not (append and path.exists()),
        index=False,
        float_format="%.10g",
    )


def write_tables(out: Path, *, seed: int, scenario: str) -> pd.DataFrame:
    """Summarise ``out/replications.csv`` into ``monte_carlo.csv`` and ``monte_carlo.md``.

    Also tables an interrupted study from the replications it completed; the Markdown states
    how many that was."""
    replications = read_replications(out / "replications.csv")
    summary = summarise(replications)
    summary.to_csv(out / "monte_carlo.csv", index=False, float_format="%.10g")
    (out / "monte_carlo.md").write_text(
        _markdown(summary, reps=int(replications["rep"].nunique()), seed=seed, scenario=scenario)
    )
    return summary


def _run_into(
    path: Path,
    reps: Sequence[tuple[int, int]],
    scenario: str,
    protocols: list[Protocol],
    workers: int,
    *,
    resume: bool,
    project: CompiledProject | None,
) -> None:
    """Run replications (rep, world seed) of ``protocols``, appending their rows to ``path``
    as each finishes, in replication order. The file is started afresh, or with ``resume``
    the replications it already holds (a stopped run's) are kept and not run again."""
    done: set[int] = set()
    if resume and path.exists():
        held = read_replications(path)
        seeds = dict(reps)
        if set(held["protocol_id"]) != {p.id for p in protocols} or any(
            seeds.get(r) != s for r, s in zip(held["rep"], held["world_seed"], strict=True)
        ):
            raise ValueError(f"{path} holds other protocols or seeds; cannot resume it")
        done = set(held["rep"])
    else:
        path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="sicp-validate-") as work:
        project = project or compile_project(Path(work))
        args = [
            (rep, world_seed, scenario, protocols, project)
            for rep, world_seed in reps
            if rep not in done
        ]
        for rows in _replicate(args, workers):
            write_replications(pd.DataFrame(rows), path, append=True)


def run_monte_carlo(
    reps: int,
    seed: int,
    out: Path,
    scenario: str = "mc",
    protocols: list[str] | None = None,
    workers: int = 2,
    resume: bool = False,
    project: CompiledProject | None = None,
) -> pd.DataFrame:
    """Run ``reps`` replications on ``scenario`` with ``workers`` processes and return the
    summary. ``out/replications.csv`` (one row per replication and target) grows as
    replications finish, so an interrupted study keeps them (see :func:`write_tables`) and
    ``resume`` continues it; ``out/monte_carlo.csv`` and ``out/monte_carlo.md`` are the
    summary. ``project``: the compiled dbt project (:func:`sicp.dbt_replay.compile_project`),
    compiled here when not given."""
    if reps < 2:
        raise ValueError("a Monte Carlo study needs at least 2 replications")
    selected = truth_protocols(protocols)
    out.mkdir(parents=True, exist_ok=True)
    _run_into(
        out / "replications.csv",
        list(enumerate(replication_seeds(seed, reps), start=1)),
        scenario,
        selected,
        workers,
        resume=resume,
        project=project,
    )
    return write_tables(out, seed=seed, scenario=scenario)


def merge_replications(
    existing: pd.DataFrame, rerun: pd.DataFrame, protocol_ids: Sequence[str]
) -> pd.DataFrame:
    """``existing`` with every row of ``protocol_ids`` replaced by ``rerun``'s rows, which
    must cover the same replications; rows stay ordered by replication, then protocol (the
    order a full run writes them in)."""
    if set(rerun["protocol_id"]) - set(protocol_ids):
        raise ValueError("the rerun has rows of protocols it was not asked to replace")
    if set(rerun["rep"]) != set(existing["rep"]):
        raise ValueError("the rerun does not cover the study's replications")
    kept = existing.loc[~existing["protocol_id"].isin(protocol_ids)]
    merged = pd.concat([kept, rerun[list(existing.columns)]], ignore_index=True)
    return merged.sort_values(["rep", "protocol_id"], kind="stable").reset_index(drop=True)


def update_monte_carlo(
    seed: int,
    out: Path,
    protocols: list[str],
    scenario: str = "mc",
    workers: int = 2,
    resume: bool = False,
    project: CompiledProject | None = None,
) -> pd.DataFrame:
    """Rerun only ``protocols`` on the replications of the study in ``out`` (same scenario and
    master seed; its replication seeds are checked against ``seed``), replace their rows in
    ``out/replications.csv``, keep every other row as it is, and re-summarise.

    The rerun rows go to ``out/replications.update.csv`` as replications finish; the study's
    file is rewritten only when all are done; ``resume`` continues a stopped update from
    the replications that file holds."""
    path = out / "replications.csv"
    existing = read_replications(path)
    reps = int(existing["rep"].max())
    seeds = dict(enumerate(replication_seeds(seed, reps), start=1))
    recorded = existing.drop_duplicates("rep").set_index("rep")["world_seed"]
    if set(recorded.index) != set(seeds) or any(seeds[r] != s for r, s in recorded.items()):
        raise ValueError(f"{path} is not a study of replications 1-{reps} from master seed {seed}")
    selected = truth_protocols(protocols)
    ids = [p.id for p in selected]
    partial = out / "replications.update.csv"
    _run_into(
        partial, sorted(seeds.items()), scenario, selected, workers, resume=resume, project=project
    )
    write_replications(merge_replications(existing, read_replications(partial), ids), path)
    partial.unlink()
    return write_tables(out, seed=seed, scenario=scenario)
