"""Where the shared public reference datasets are: ``shared/reference-data`` beside the
checkout (as for sessions and CI's fresh clone), or ``SICP_REFERENCE_DATA``.

A missing file fails the test rather than skipping it, so a reference check can never pass
by not running.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("SICP_REFERENCE_DATA",
                                    ROOT.parent / "shared" / "reference-data"))


def reference_csv(name: str) -> Path:
    path = REFERENCE_DIR / name
    if not path.exists():
        raise FileNotFoundError(
            f"reference dataset {path} is missing; set SICP_REFERENCE_DATA to the folder "
            "holding the shared reference data")
    return path
