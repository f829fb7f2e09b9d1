"""Where the public reference datasets are: ``tests/fixtures/reference-data`` in the repository
(copied unchanged from their sources, listed in its README), or ``SICP_REFERENCE_DATA``.

A missing file fails the test rather than skipping it, so a reference check can never pass
by not running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(
    os.environ.get("SICP_REFERENCE_DATA", ROOT / "tests" / "fixtures" / "reference-data")
)


def reference_csv(name: str) -> Path:
    path = REFERENCE_DIR / name
    if not path.exists():
        raise FileNotFoundError(
            f"reference dataset {path} is missing; it is committed under "
            "tests/fixtures/reference-data (or set SICP_REFERENCE_DATA to another copy)"
        )
    return path


def assert_r_fixture_regenerates(
    script: Path, inputs: Sequence[Path], fixture: Path, columns: Sequence[str], out: Path
) -> None:
    """Rerun the R script that made a committed fixture (``Rscript script *inputs out``) and
    check the listed columns are reproduced to 1e-10: the fixture is what the script gives, not
    a hand-edited file. Tests calling this are marked ``needs_r`` and skip without R."""
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript not installed")
    subprocess.run(
        ["Rscript", str(script), *map(str, inputs), str(out)], check=True, capture_output=True
    )
    new, old = pd.read_csv(out), pd.read_csv(fixture)
    for column in columns:
        np.testing.assert_allclose(new[column], old[column], rtol=1e-10, err_msg=column)
