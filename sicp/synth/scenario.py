"""Scenario loading: YAML files in ``scenarios/``, with single inheritance through ``extends``.

A scenario is plain data. Inheritance keeps ``null``/``small``/``gm`` as short diffs of
``default`` so they describe the same world with one thing changed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

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
