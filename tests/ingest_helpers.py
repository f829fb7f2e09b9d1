"""What the ingest tests share: the tiny world fixture (tests/fixtures/ingest/tiny_world.py,
loaded once), the test pseudonymisation key and read-only queries of a warehouse."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import duckdb

_spec = importlib.util.spec_from_file_location(
    "sicp_tiny_world", Path(__file__).parent / "fixtures" / "ingest" / "tiny_world.py"
)
tw = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tw
_spec.loader.exec_module(tw)

KEY = "a-test-pseudonymisation-key-0123456789"


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def dump(warehouse: Path) -> dict[str, list[tuple]]:
    """Every raw table's rows, in storage order, for exact comparisons."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw' "
                "ORDER BY table_name"
            ).fetchall()
        ]
        return {t: con.execute(f"SELECT * FROM raw.{t}").fetchall() for t in tables}
