"""Generate a whole synthetic world: chunks of practices, then cohort, trial, programme, areas.

``simulate_world`` keeps every file in memory (Monte Carlo validation); ``generate_world``
streams the record files to disk chunk by chunk (GM scale) and writes truth.json beside them.
Both run the same pipeline on the same random streams, so they describe the same world.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sicp.contract import SOURCES, survey_wave_filename
from sicp.synth.areas import milestones, simulate_areas, study_area
from sicp.synth.assemble import assemble_chunk
from sicp.synth.population import Chunk
from sicp.synth.practices import build_practices
from sicp.synth.programme import asset_dose, coaching_calls, community_assets, unit_costs
from sicp.synth.scenario import check_scenario, load_scenario
from sicp.synth.surveys import simulate_surveys
from sicp.synth.timeline import Timeline, to_month
from sicp.synth.truth import build_truth, comparator_effects
from sicp.synth.write import ParquetStream, conform, write_frame

RECORD_SOURCES = tuple(n for n, s in SOURCES.items() if s.folder == "records")


@dataclass
class World:
    """Every contract file as a DataFrame (survey waves stacked, with ``wave``) and the truth."""

    frames: dict[str, pd.DataFrame]
    truth: dict[str, Any]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _areas(scn: dict[str, Any], seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The comparator areas, on their own random stream: independent of everything else."""
    return simulate_areas(scn, _rng(seed, 3))


def _run(
    scenario: str | Path, seed: int, emit: Callable[[str, pd.DataFrame], None]
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], int]:
    """Simulate; record frames go to ``emit`` chunk by chunk, the rest are returned with the
    truth and the number of person-months simulated (people x months, the simulation's work)."""
    scn = load_scenario(scenario)
    tl = Timeline(to_month(scn["calendar"]["start"]), to_month(scn["calendar"]["end"]))
    prs = build_practices(scn, tl, _rng(seed, 0))
    check_scenario(scn, tl, prs)
    size = int(scn["chunk_practices"])
    agg: dict[str, np.ndarray] = {}
    simulated = 0
    keep: dict[str, list[pd.DataFrame]] = {
        k: [] for k in ("practice_population", "cohort", "waves", "moves", "calls")
    }
    for c, first in enumerate(range(0, len(prs), size)):
        block = prs.iloc[first : first + size]
        chunk = Chunk(scn, tl, block, _rng(seed, 1, c))
        out = assemble_chunk(chunk, chunk.run(), c)
        simulated += chunk.n * chunk.T
        for name in RECORD_SOURCES:
            emit(name, out.records[name])
        keep["calls"].append(out.records["contact_centre_calls"])
        keep["practice_population"].append(out.practice_population)
        keep["cohort"].append(out.cohort)
        keep["waves"].append(out.waves)
        keep["moves"].append(out.moves)
        for key, arr in out.agg.items():
            if arr.ndim == 2:
                full = agg.setdefault(key, np.zeros((len(prs), tl.n)))
                full[first : first + len(block)] += arr
            else:
                agg[key] = agg.get(key, 0) + arr
        del chunk, out
    cohort = pd.concat(keep["cohort"], ignore_index=True).sort_values("person_id")
    linked = set(cohort.loc[cohort["consent_linkage"] == 1, "person_id"])
    pp = pd.concat(keep["practice_population"], ignore_index=True)
    rng = _rng(seed, 2)
    assets = community_assets(scn, tl, list(prs["neighbourhood"].unique()), rng)
    hood = pp.merge(prs[["practice_code", "neighbourhood"]], on="practice_code")
    pop65 = (
        hood[hood["age_band"] != "0-64"]
        .groupby(["month", "neighbourhood"])["registered"]
        .sum()
        .unstack()
        .sort_index()
    )
    waves = (
        pd.concat(keep["waves"], ignore_index=True)
        .sort_values(["person_id", "wave"], kind="stable")
        .reset_index(drop=True)
    )
    dose = asset_dose(
        assets, pop65, tl, waves["neighbourhood"].to_numpy(), waves["month"].to_numpy()
    )
    surveys = simulate_surveys(cohort, waves, dose, scn, rng)
    coach = coaching_calls(surveys.arms, linked, tl, rng)
    inbound = pd.concat(keep["calls"], ignore_index=True)
    calls = (
        pd.concat([inbound, coach], ignore_index=True)
        .sort_values(["person_id", "called_on", "direction", "reason"], kind="stable")
        .reset_index(drop=True)
    )
    calls.insert(0, "call_id", [f"C{k:08d}" for k in range(1, len(calls) + 1)])
    areas, area_truth = _areas(scn, seed)
    practices = prs[list(SOURCES["practices"].column_names)].copy()
    frames = {
        "practices": practices,
        "practice_population": pp,
        "recruitment": cohort[list(SOURCES["recruitment"].column_names)],
        "practice_moves": pd.concat(keep["moves"], ignore_index=True).sort_values("person_id"),
        "survey_wave": surveys.waves.sort_values(["wave", "person_id"], kind="stable"),
        "coaching_randomisation": surveys.randomisation,
        "coaching_uptake": surveys.uptake,
        "community_assets": assets,
        "contact_centre_calls": calls,
        "unit_costs": unit_costs(scn),
        "area_month_indicators": areas,
        "study_area": study_area(scn),
        "milestones": milestones(scn),
    }
    truth = build_truth(scn, seed, tl, prs, agg, surveys.effects, area_truth, surveys.arms)
    return frames, truth, simulated


def simulate_world(scenario: str | Path, seed: int) -> World:
    """The world in memory: every contract source as a DataFrame, plus the truth dict."""
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in RECORD_SOURCES}
    frames, truth, _ = _run(scenario, seed, lambda name, df: parts[name].append(df))
    for name, chunks in parts.items():
        frames[name] = pd.concat(chunks, ignore_index=True)
    return World({k: conform(v, SOURCES[k]) for k, v in frames.items()}, truth)


def simulate_area_world(scenario: str | Path, seed: int) -> World:
    """Only the comparator areas of the world ``simulate_world(scenario, seed)``: its
    ``area_month_indicators`` frame (identical, as the areas have their own random stream) and
    a truth holding just their effects (the study area's frame is ``areas.study_area(scn)``).
    For Monte Carlo runs of area-level protocols, which need nothing else and take a fraction
    of a second instead of seconds."""
    scn = load_scenario(scenario)
    areas, area_truth = _areas(scn, seed)
    name = "area_month_indicators"
    return World(
        {name: conform(areas, SOURCES[name])},
        {"scenario": scn["name"], "seed": seed, "effects": comparator_effects(scn, area_truth)},
    )


def _path(out: Path, name: str) -> Path:
    src = SOURCES[name]
    folder = out / src.folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{src.stem}.{src.formats[0]}"


def write_frames(frames: Mapping[str, pd.DataFrame], out: Path) -> dict[str, int]:
    """Write each source's frame under ``out`` as a delivery holds it (its first contract
    format, one file per survey wave); returns rows written per relative path."""
    files: dict[str, int] = {}
    for name, df in frames.items():
        if name == "survey_wave":
            for wave, part in df.groupby("wave"):
                path = out / SOURCES[name].folder / survey_wave_filename(int(wave))
                path.parent.mkdir(parents=True, exist_ok=True)
                files[str(path.relative_to(out))] = write_frame(part, path, name)
            continue
        path = _path(out, name)
        files[str(path.relative_to(out))] = write_frame(df, path, name)
    return files


def generate_world(scenario: str | Path, seed: int, out: Path) -> dict[str, Any]:
    """Write every contract file and truth.json under ``out``; return a summary."""
    began = time.perf_counter()
    out = Path(out)
    streams: dict[str, ParquetStream] = {}

    def emit(name: str, df: pd.DataFrame) -> None:
        if name not in streams:
            streams[name] = ParquetStream(_path(out, name), SOURCES[name])
        streams[name].write(df)

    frames, truth, simulated = _run(scenario, seed, emit)
    files: dict[str, int] = {}
    for name, stream in streams.items():
        stream.close()
        files[str(_path(out, name).relative_to(out))] = stream.rows
    files |= write_frames(frames, out)
    (out / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return {
        "scenario": truth["scenario"],
        "seed": seed,
        "out": str(out),
        "files": dict(sorted(files.items())),
        "simulated_person_months": simulated,
        "seconds": round(time.perf_counter() - began, 2),
    }
