"""Parse a Quarto ``.qmd`` source into front matter, markdown chunks and executable cells.

Only the subset of Quarto the project's reports use is understood; anything else that would
change the output (a non-Python executable cell, options in the fence header) is an error rather
than being silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RenderError(RuntimeError):
    """A report could not be rendered; the message names the file, line and cause."""


@dataclass(frozen=True)
class MarkdownChunk:
    """Markdown between executable cells (may hold inline `{python} expr` expressions)."""

    text: str
    line: int


@dataclass(frozen=True)
class CodeCell:
    """One ```{python} cell: its code (option lines removed) and its ``#|`` options."""

    source: str
    options: dict[str, Any]
    line: int

    @property
    def label(self) -> str | None:
        label = self.options.get("label")
        return str(label) if label is not None else None

    def describe(self) -> str:
        """Human-readable locator used in error messages."""
        return (
            f"cell '{self.label}' at line {self.line}"
            if self.label
            else f"cell at line {self.line}"
        )


@dataclass(frozen=True)
class QmdDocument:
    """A parsed report: front matter plus the body as an ordered list of blocks."""

    path: Path
    meta: dict[str, Any]
    blocks: list[MarkdownChunk | CodeCell] = field(default_factory=list)

    @property
    def cells(self) -> list[CodeCell]:
        return [b for b in self.blocks if isinstance(b, CodeCell)]

    @property
    def param_defaults(self) -> dict[str, Any]:
        params = self.meta.get("params") or {}
        if not isinstance(params, dict):
            raise RenderError(f"{self.path}: front matter 'params' must be a mapping")
        return dict(params)

    def execute_default(self, option: str, default: Any) -> Any:
        """Document-wide default of a cell option (front matter ``execute:`` block)."""
        execute = self.meta.get("execute") or {}
        return execute.get(option, default) if isinstance(execute, dict) else default

    def option(self, cell: CodeCell, name: str, default: Any) -> Any:
        """A cell option, falling back to the document's ``execute:`` default."""
        return cell.options.get(name, self.execute_default(name, default))


_EXEC_FENCE = re.compile(r"^(?P<ticks>`{3,})\s*\{(?P<lang>[A-Za-z0-9_-]+)(?P<rest>[^}]*)\}\s*$")
_PLAIN_FENCE = re.compile(r"^(?P<ticks>`{3,}|~{3,})")
_OPTION_LINE = re.compile(r"^#\|\s?(.*)$")


def parse_qmd(path: Path) -> QmdDocument:
    """Split ``path`` into front matter, markdown chunks and Python cells."""
    lines = path.read_text(encoding="utf-8").splitlines()
    meta, start = _front_matter(path, lines)
    blocks: list[MarkdownChunk | CodeCell] = []
    markdown: list[str] = []
    markdown_start = start + 1
    i = start
    while i < len(lines):
        line = lines[i]
        exec_fence = _EXEC_FENCE.match(line)
        if exec_fence:
            lang, rest = exec_fence["lang"], exec_fence["rest"].strip()
            if lang != "python":
                raise RenderError(
                    f"{path}:{i + 1}: only {{python}} cells can be executed offline, found {{{lang}}}"
                )
            if rest:
                raise RenderError(
                    f"{path}:{i + 1}: put cell options in '#|' lines, not in the fence ({rest!r})"
                )
            end = _closing_fence(path, lines, i, exec_fence["ticks"])
            if markdown:
                blocks.append(MarkdownChunk("\n".join(markdown), markdown_start))
            blocks.append(_code_cell(path, lines[i + 1 : end], i + 1))
            markdown, markdown_start = [], end + 2
            i = end + 1
            continue
        plain_fence = _PLAIN_FENCE.match(line)
        if plain_fence:
            # A literal code block is copied whole so fences inside it are never executed.
            end = _closing_fence(path, lines, i, plain_fence["ticks"])
            markdown.extend(lines[i : end + 1])
            i = end + 1
            continue
        markdown.append(line)
        i += 1
    if markdown:
        blocks.append(MarkdownChunk("\n".join(markdown), markdown_start))
    return QmdDocument(path=path, meta=meta, blocks=blocks)


def _front_matter(path: Path, lines: list[str]) -> tuple[dict[str, Any], int]:
    """Return the YAML front matter and the index of the first body line."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            try:
                meta = yaml.safe_load("\n".join(lines[1:end])) or {}
            except yaml.YAMLError as exc:
                raise RenderError(f"{path}: invalid YAML front matter: {exc}") from exc
            if not isinstance(meta, dict):
                raise RenderError(f"{path}: front matter must be a YAML mapping")
            return meta, end + 1
    raise RenderError(f"{path}:1: front matter is not closed by '---'")


def _closing_fence(path: Path, lines: list[str], opening: int, ticks: str) -> int:
    closing = re.compile(rf"^{re.escape(ticks[0])}{{{len(ticks)},}}\s*$")
    for end in range(opening + 1, len(lines)):
        if closing.match(lines[end]):
            return end
    raise RenderError(f"{path}:{opening + 1}: code fence is never closed")


def _code_cell(path: Path, body: list[str], fence_line: int) -> CodeCell:
    option_lines: list[str] = []
    for line in body:
        match = _OPTION_LINE.match(line)
        if not match:
            break
        option_lines.append(match[1])
    try:
        options = yaml.safe_load("\n".join(option_lines)) if option_lines else {}
    except yaml.YAMLError as exc:
        raise RenderError(f"{path}:{fence_line}: invalid '#|' cell options: {exc}") from exc
    if not isinstance(options, dict):
        raise RenderError(f"{path}:{fence_line}: '#|' cell options must be 'key: value' lines")
    source = "\n".join(body[len(option_lines) :]).strip("\n")
    return CodeCell(source=source, options=options, line=fence_line)
