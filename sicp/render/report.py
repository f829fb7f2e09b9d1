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

import yaml

from sicp.render.assemble import assemble_markdown, check_references
from sicp.render.execute import execute_report
from sicp.render.qmd import RenderError, parse_qmd
from sicp.render.writers import MARKDOWN_READER, SAFE_LINKS_FILTER, write_html, write_pdf

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
    """Delegate to Quarto (one call per format); parameters are passed as YAML via ``-P``.

    Quarto renders a copy of the report whose front matter reads markdown without raw HTML or
    TeX and runs the safe-links filter (:func:`safe_front_matter`), as the offline renderer
    does, so a printed text is never markup whichever engine renders it."""
    written = []
    safe = qmd.with_name(f".{qmd.stem}.safe.qmd")
    safe.write_text(safe_front_matter(qmd.read_text(encoding="utf-8")), encoding="utf-8")
    try:
        for fmt in formats:
            written.append(_quarto_format(quarto, safe, qmd.stem, out_dir, params, fmt))
    finally:
        safe.unlink(missing_ok=True)
    return written


def safe_front_matter(source: str) -> str:
    """``source`` (a .qmd) with ``from:`` set to the markdown reader the offline renderer uses
    and the safe-links filter added to ``filters:`` (Quarto document options)."""
    lines = source.splitlines(keepends=True)
    meta: dict[str, Any] = {}
    body = source
    if lines and lines[0].strip() == "---":
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
        meta = yaml.safe_load("".join(lines[1:end])) or {}
        body = "".join(lines[end + 1 :])
    meta["from"] = MARKDOWN_READER
    meta["filters"] = [*(meta.get("filters") or []), str(SAFE_LINKS_FILTER)]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body


def _quarto_format(
    quarto: str, qmd: Path, stem: str, out_dir: Path, params: dict[str, Any], fmt: str
) -> Path:
    """One ``quarto render`` of ``qmd`` to ``out_dir/<stem>.<fmt>``."""
    command = [
        quarto,
        "render",
        str(qmd),
        "--to",
        _QUARTO_TO[fmt],
        "--output",
        f"{stem}.{fmt}",
        "--output-dir",
        str(out_dir),
    ]
    if fmt == "html":
        command += ["-M", "embed-resources:true"]
    for name, value in params.items():
        command += ["-P", f"{name}:{json.dumps(value, default=str)}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = out_dir / f"{stem}.{fmt}"
    if result.returncode != 0 or not output.is_file():
        raise RenderError(f"quarto render failed for {qmd} ({fmt}):\n{result.stderr.strip()}")
    return output
