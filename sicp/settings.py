"""Where things live. Every path can be moved with an environment variable or a ``sicp.toml``
(see README): the environment wins over the file, the file over the defaults, so a site keeps
its layout in one file and a single run can still point elsewhere."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

#: The repository root (this file lives in <root>/sicp/).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The dbt project (models, seeds, tests); its parsed manifest is read by sicp.dbt_schema.
DBT_DIR = PROJECT_ROOT / "dbt"

#: Environment variable naming the settings file; unset, ``sicp.toml`` in the current directory
#: is read if there is one.
CONFIG_ENV = "SICP_CONFIG"
CONFIG_FILE = "sicp.toml"
#: The keys a settings file may hold, each with the environment variable that overrides it.
PATH_SETTINGS = {
    "input_dir": "SICP_INPUT_DIR",
    "warehouse": "SICP_WAREHOUSE",
    "results_dir": "SICP_RESULTS_DIR",
    "reports_dir": "SICP_REPORTS_DIR",
    "protocols_dir": "SICP_PROTOCOLS_DIR",
}


class ConfigError(ValueError):
    """The settings file cannot be used; the message names the file and the key."""


def config_file() -> Path | None:
    """The settings file in force: ``SICP_CONFIG`` (which must exist, since a named file
    that is silently skipped would run against the wrong data), else ``./sicp.toml`` if any."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{CONFIG_ENV}={named}: no such file; point it at a sicp.toml or unset it"
            )
        return path
    local = Path.cwd() / CONFIG_FILE
    return local if local.is_file() else None


def read_config(path: Path) -> dict[str, Path]:
    """The paths a settings file sets, relative ones taken from the file's own folder (so the
    file means the same from any working directory)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(PATH_SETTINGS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(PATH_SETTINGS)}"
        )
    settings: dict[str, Path] = {}
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f'{path}: {key} must be a path in quotes, e.g. {key} = "data/raw"')
        settings[key] = (path.parent / Path(value).expanduser()).resolve()
    return settings


@dataclass(frozen=True)
class Paths:
    input_dir: Path
    warehouse: Path
    results_dir: Path
    reports_dir: Path
    protocols_dir: Path
    dbt_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        """Each path from its environment variable, else the settings file, else the default;
        :class:`ConfigError` for a settings file that cannot be used."""
        path = config_file()
        from_file = read_config(path) if path is not None else {}

        def env(key: str, default: Path) -> Path:
            value = os.environ.get(PATH_SETTINGS[key])
            return Path(value).resolve() if value is not None else from_file.get(key, default)

        return cls(
            input_dir=env("input_dir", PROJECT_ROOT / "data" / "raw"),
            warehouse=env("warehouse", PROJECT_ROOT / "data" / "warehouse.duckdb"),
            results_dir=env("results_dir", PROJECT_ROOT / "data" / "results"),
            reports_dir=env("reports_dir", PROJECT_ROOT / "reports" / "output"),
            protocols_dir=env("protocols_dir", PROJECT_ROOT / "protocols"),
            dbt_dir=DBT_DIR,
        )
