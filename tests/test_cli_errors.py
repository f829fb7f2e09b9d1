"""User errors come out as one line naming the command, not as tracebacks; --debug shows the
traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sicp.cli import main


def test_an_unexpected_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--scenario", "no_such_scenario", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sicp synth: ") and "no_such_scenario" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    before = os.environ.pop("SICP_DEBUG", None)
    try:
        with pytest.raises(Exception, match="no_such_scenario"):
            main(["--debug", "synth", "--scenario", "no_such_scenario", "--out", str(tmp_path)])
    finally:  # --debug sets SICP_DEBUG for the process; leave it as it was
        os.environ.pop("SICP_DEBUG", None)
        if before is not None:
            os.environ["SICP_DEBUG"] = before
