"""Dagster resources: where the input files are and the DuckDB warehouse they load into.

Both default to :class:`sicp.settings.Paths` (``SICP_INPUT_DIR``, ``SICP_WAREHOUSE``), so the
Dagster UI, ``sicp ingest`` and dbt all point at the same files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from sicp.warehouse import duckdb_config

#: Every asset that writes the warehouse runs in this pool; DuckDB allows one writer process
#: per file, so the pool's limit must be 1 (dagster_project/dagster.yaml sets it).
WAREHOUSE_POOL = "sicp_warehouse"


class Folder(dg.ConfigurableResource):
    """A folder the assets read or write: the drop folder of contract files
    (``SICP_INPUT_DIR``) or the results store (``SICP_RESULTS_DIR``)."""

    path: str

    @property
    def dir(self) -> Path:
        return Path(self.path)


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file (``SICP_WAREHOUSE``)."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection; a writer gets the warehouse's memory limit, threads and spill folder
        (sicp.warehouse.duckdb_config), as ingest and dbt do."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        config = {} if read_only else duckdb_config(Path(self.path))
        con = duckdb.connect(self.path, read_only=read_only, config=config)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def for_dbt(self) -> Iterator[None]:
        """Point dbt's profile (``env_var('SICP_WAREHOUSE')``) at this warehouse while a dbt
        subprocess is started, so dbt and the ingest assets never write different files."""
        previous = os.environ.get("SICP_WAREHOUSE")
        os.environ["SICP_WAREHOUSE"] = str(Path(self.path).resolve())
        try:
            yield
        finally:
            if previous is None:
                del os.environ["SICP_WAREHOUSE"]
            else:
                os.environ["SICP_WAREHOUSE"] = previous
