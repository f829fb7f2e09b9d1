"""Render a Quarto report: with ``quarto`` when it is installed, otherwise offline.

The offline path runs the same ``.qmd`` source: parse, execute the Python cells once in a Jupyter
kernel, then write each requested format from those outputs.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from sicp.render.assemble import assemble_markdown, check_references
from sicp.render.execute import execute_report
from sicp.render.qmd import RenderError, parse_qmd
from sicp.render.writers import write_html, write_pdf

log = logging.getLogger(__name__)

FORMATS = ("html", "pdf")
# Quarto format names; PDF goes through typst there too, so no LaTeX installation is needed.
_QUARTO_TO = {"html": "html", "pdf": "typst"}
_WRITERS = {"html": write_html, "pdf": write_pdf}

Engine = Literal["auto", "quarto", "offline"]


def render_report(
    qmd: Path,
    out_dir: Path,
    params: dict[str, Any] | None = None,
    formats: Iterable[str] = FORMATS,
    *,
    engine: Engine = "auto",
    timeout: int = 600,
) -> list[Path]:
    """Render ``qmd`` into ``out_dir`` as ``<stem>.html`` / ``<stem>.pdf``; return those paths.

    ``params`` override the report's parameters (front-matter ``params:`` defaults, or the names
    assigned in a cell tagged ``parameters``). ``engine="auto"`` uses ``quarto`` if it is on PATH;
    ``timeout`` is the per-cell execution limit in seconds (offline engine).
    """
    qmd, out_dir = Path(qmd).resolve(), Path(out_dir).resolve()
    requested = list(dict.fromkeys(formats))
    unknown = [fmt for fmt in requested if fmt not in FORMATS]
    if unknown or not requested:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {requested}")
    if not qmd.is_file():
        raise RenderError(f"report source not found: {qmd}")
    out_dir.mkdir(parents=True, exist_ok=True)
    quarto = shutil.which("quarto") if engine != "offline" else None
    if engine == "quarto" and quarto is None:
        raise RenderError("engine='quarto' was requested but quarto is not on PATH")
    if quarto is not None:
        return _render_with_quarto(quarto, qmd, out_dir, params or {}, requested)
    return _render_offline(qmd, out_dir, params, requested, timeout)


def _render_offline(
    qmd: Path, out_dir: Path, params: dict[str, Any] | None, formats: list[str], timeout: int
) -> list[Path]:
    started = time.perf_counter()
    document = parse_qmd(qmd)
    check_references(document)
    executed = execute_report(document, params, timeout)
    log.info("executed %s in %.1fs", qmd.name, time.perf_counter() - started)
    written = []
    with tempfile.TemporaryDirectory(prefix="sicp-render-") as tmp:
        for fmt in formats:
            workdir = Path(tmp) / fmt
            workdir.mkdir()
            markdown = workdir / f"{qmd.stem}.md"
            markdown.write_text(assemble_markdown(executed, fmt, workdir), encoding="utf-8")
            written.append(_WRITERS[fmt](markdown, out_dir / f"{qmd.stem}.{fmt}", document.meta))
            log.info("wrote %s after %.1fs", written[-1], time.perf_counter() - started)
    return written


def _render_with_quarto(
    quarto: str, qmd: Path, out_dir: Path, params: dict[str, Any], formats: list[str]
) -> list[Path]:
    """Delegate to Quarto (one call per format); parameters are passed as YAML via ``-P``."""
    written = []
    for fmt in formats:
        command = [
            quarto,
            "render",
            str(qmd),
            "--to",
            _QUARTO_TO[fmt],
            "--output-dir",
            str(out_dir),
        ]
        if fmt == "html":
            command += ["-M", "embed-resources:true"]
        for name, value in params.items():
            command += ["-P", f"{name}:{json.dumps(value, default=str)}"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        output = out_dir / f"{qmd.stem}.{fmt}"
        if result.returncode != 0 or not output.is_file():
            raise RenderError(f"quarto render failed for {qmd} ({fmt}):\n{result.stderr.strip()}")
        written.append(output)
    return written
