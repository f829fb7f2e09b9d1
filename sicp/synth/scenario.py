"""Scenario loading: YAML files in ``scenarios/``, with single inheritance through ``extends``.

A scenario is plain data, and every fact of the site it imitates (calendar, neighbourhoods,
roll-out, comparator areas and study area, cohort and trial dates, unit costs) lives in it, not
in code. Inheritance keeps ``null``/``small``/``gm`` as short diffs of ``default`` so they
describe the same world with one thing changed; a scenario of another site (``symphony``)
stands alone, as a deep merge would keep the parent's neighbourhood-keyed mappings.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import yaml

from sicp.synth.timeline import FIRST_RETURN_DAYS, Timeline, wave_field_day

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; lists and scalars in ``override`` replace those in ``base``."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve(ref: str | Path) -> Path:
    path = Path(ref)
    if path.suffix in {".yml", ".yaml"} and path.exists():
        return path
    named = SCENARIO_DIR / f"{ref}.yml"
    if named.exists():
        return named
    known = sorted(p.stem for p in SCENARIO_DIR.glob("*.yml"))
    raise FileNotFoundError(f"unknown scenario {str(ref)!r}; known: {', '.join(known)}")


def _jsonable(value: Any) -> Any:
    """Dates to ISO strings and mapping keys to strings, so the scenario can go into truth.json."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def load_scenario(ref: str | Path) -> dict[str, Any]:
    """Load a scenario by name (``default``, ``null``, ``small``, ``gm``) or YAML path."""
    path = _resolve(ref)
    data = yaml.safe_load(path.read_text()) or {}
    parent = data.pop("extends", None)
    if parent is not None:
        data = _merge(load_scenario(parent), data)
    return _jsonable(data)


def twic_waves(first_wave: str, waves: int, randomise_from: str) -> tuple[int, int]:
    """Baseline and follow-up waves implied by the dates, by the rule the warehouse applies to
    the delivered files: baseline = the last wave whose first questionnaire came back before
    the earliest randomisation date; follow-up = the wave whose first-return month is closest
    to 12 months after the earliest randomisation month. Uses each wave's earliest possible
    return (fieldwork day + FIRST_RETURN_DAYS), which the first return meets in any cohort of
    more than a handful of members. Raises when either is undefined or tied."""
    first = [
        wave_field_day(first_wave, w) + np.timedelta64(FIRST_RETURN_DAYS, "D")
        for w in range(1, waves + 1)
    ]
    rand = np.datetime64(randomise_from, "D")
    before = [w for w, d in enumerate(first, 1) if d < rand]
    if not before:
        raise ValueError("no wave is returned before the earliest randomisation date")
    target = rand.astype("datetime64[M]") + 12
    dist = [abs(int((d.astype("datetime64[M]") - target).astype(int))) for d in first]
    best = min(dist)
    if dist.count(best) > 1:
        raise ValueError("two waves are equally close to 12 months after randomisation")
    return before[-1], dist.index(best) + 1


def check_scenario(scn: dict[str, Any], tl: Timeline, practices: pd.DataFrame) -> None:
    """Fail early, naming the scenario and key, where a scenario's dates or geography do not
    fit together (dates outside the calendar, a neighbourhood without a trial stratum, trial
    waves that the warehouse would not derive from the dates)."""
    name = scn.get("name")

    def fail(msg: str) -> NoReturn:
        raise ValueError(f"scenario {name!r}: {msg}")

    if tl.n < 1:
        fail("calendar.end is before calendar.start")

    def inside(key: str, value: Any) -> None:
        if not 0 <= tl.index(value) < tl.n:
            fail(
                f"{key} {value} is outside the calendar {scn['calendar']['start']}.."
                f"{scn['calendar']['end']}"
            )

    co, tw = scn["cohort"], scn["twic"]
    for key, value in (
        ("contact_centre.launch", scn["contact_centre"]["launch"]),
        ("community_assets.start_from", scn["community_assets"]["start_from"]),
        ("community_assets.start_to", scn["community_assets"]["start_to"]),
        ("cohort.recruit_from", co["recruit_from"]),
        ("cohort.recruit_to", co["recruit_to"]),
        ("cohort.first_wave", co["first_wave"]),
        ("twic.randomise_from", tw["randomise_from"]),
        ("twic.randomise_to", tw["randomise_to"]),
    ):
        inside(key, value)
    for entry in scn["rollout"]:
        if entry.get("start") is not None:
            inside(f"rollout {entry['mdg']!r} start", entry["start"])
    for lo, hi in (
        ("community_assets.start_from", "community_assets.start_to"),
        ("cohort.recruit_from", "cohort.recruit_to"),
        ("twic.randomise_from", "twic.randomise_to"),
    ):
        a, b = lo.split("."), hi.split(".")
        if str(scn[a[0]][a[1]]) > str(scn[b[0]][b[1]]):
            fail(f"{lo} is after {hi}")
    hoods = set(practices["neighbourhood"])
    placed = [h for hoods_ in tw["neighbourhood_groups"].values() for h in hoods_]
    if sorted(hoods - set(placed)):
        fail("twic.neighbourhood_groups does not place " + ", ".join(sorted(hoods - set(placed))))
    if len(placed) != len(set(placed)):
        fail("twic.neighbourhood_groups places a neighbourhood twice")
    try:
        derived = twic_waves(co["first_wave"], int(co["waves"]), tw["randomise_from"])
    except ValueError as err:
        fail(f"cohort and twic dates: {err}")
    if derived != (int(tw["baseline_wave"]), int(tw["followup_wave"])):
        fail(
            f"twic.baseline_wave/followup_wave are {tw['baseline_wave']}/{tw['followup_wave']}"
            f" but the wave and randomisation dates give {derived[0]}/{derived[1]}"
        )
    codes = [str(a["code"]) for a in scn["comparators"]["areas"]]
    if len(codes) != len(set(codes)):
        fail("comparators.areas repeats an area code")
    if str(scn["comparators"]["study_area"]) not in codes:
        fail(
            f"comparators.study_area {scn['comparators']['study_area']} is not among "
            "comparators.areas"
        )
