"""Turn an executed report into one pandoc-markdown document per output format.

Quarto's cross-references are resolved here, before pandoc sees the text: figures and tables
whose ``label`` starts with ``fig-`` / ``tbl-`` are numbered in document order, their captions
get the "Figure 1: " / "Table 1: " prefix, and ``@fig-x`` in prose becomes a link "Figure 1".
Images are written as PNG files into ``assets``; the HTML writer embeds them as data URIs and
typst reads them from disk.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from sicp.render.execute import INLINE_EXPRESSION, ExecutedReport
from sicp.render.qmd import CodeCell, MarkdownChunk, QmdDocument, RenderError

Target = Literal["html", "pdf"]

# Richest representation first; the PDF path never sees raw HTML (typst would drop it).
MIME_PRIORITY: dict[str, tuple[str, ...]] = {
    "html": ("image/png", "image/jpeg", "text/html", "text/markdown", "text/plain"),
    "pdf": ("image/png", "image/jpeg", "text/markdown", "text/plain"),
}
_IMAGE_SUFFIX = {"image/png": "png", "image/jpeg": "jpg"}
_REF_KINDS = {"fig": "Figure", "tbl": "Table"}
_CROSSREF = re.compile(r"(?<![\w@.])@((?:fig|tbl)-[A-Za-z0-9_-]*[A-Za-z0-9_])")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Front-matter keys pandoc's templates understand, as Quarto reads them too (the title block,
# the contents' title, and the typst page: paper size and margins); Quarto-only keys (params,
# execute, format, jupyter) would otherwise leak into pandoc's metadata. ``toc``, ``toc-depth``,
# ``number-sections`` and ``shift-heading-level-by`` are pandoc options (sicp.render.writers).
_PANDOC_META_KEYS = (
    "title",
    "subtitle",
    "author",
    "date",
    "abstract",
    "lang",
    "keywords",
    "toc-title",
    "papersize",
    "margin",
)


def reference_numbers(document: QmdDocument) -> dict[str, str]:
    """Map each shown ``fig-``/``tbl-`` label to its display name, e.g. ``Figure 2``."""
    counters = dict.fromkeys(_REF_KINDS, 0)
    names: dict[str, str] = {}
    for cell in document.cells:
        label = cell.label
        kind = label.split("-", 1)[0] if label else None
        if label is None or kind not in _REF_KINDS or not _shows_output(document, cell):
            continue
        if label in names:
            raise RenderError(f"{document.path}:{cell.line}: duplicate label '{label}'")
        counters[kind] += 1
        names[label] = f"{_REF_KINDS[kind]} {counters[kind]}"
    return names


def assemble_markdown(executed: ExecutedReport, target: Target, assets: Path) -> str:
    """Pandoc markdown for ``target``, writing figure files into ``assets``."""
    document = executed.document
    names = reference_numbers(document)
    parts = [_front_matter(document)]
    for index, block in enumerate(document.blocks):
        if isinstance(block, MarkdownChunk):
            parts.append(_markdown(document, block, executed.inline_values.get(index, []), names))
        else:
            parts.append(
                _code_cell(
                    document, block, index, executed.outputs.get(index, []), target, names, assets
                )
            )
    return "\n\n".join(part for part in parts if part.strip()) + "\n"


def _front_matter(document: QmdDocument) -> str:
    meta = {key: document.meta[key] for key in _PANDOC_META_KEYS if key in document.meta}
    if meta.get("date") == "today":
        meta["date"] = dt.date.today().isoformat()
    if not meta:
        return ""
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---"


def check_references(document: QmdDocument) -> None:
    """Fail before any cell runs if prose cites a label no shown figure or table carries."""
    names = reference_numbers(document)
    for block in document.blocks:
        if isinstance(block, MarkdownChunk):
            _resolve_references(document, block, block.text, names)


def _markdown(
    document: QmdDocument, chunk: MarkdownChunk, values: list[str], names: dict[str, str]
) -> str:
    remaining = iter(values)
    text = INLINE_EXPRESSION.sub(lambda _match: next(remaining), chunk.text)
    return _resolve_references(document, chunk, text, names)


def _resolve_references(
    document: QmdDocument, chunk: MarkdownChunk, text: str, names: dict[str, str]
) -> str:
    """Replace ``@fig-x`` / ``@tbl-x`` with a link whose text is the number, e.g. Figure 1."""

    def link(match: re.Match[str]) -> str:
        label = match[1]
        if label not in names:
            line = chunk.line + text[: match.start()].count("\n")
            raise RenderError(f"{document.path}:{line}: reference to unknown label '@{label}'")
        return f"[{names[label]}](#{label})"

    return _CROSSREF.sub(link, text)


def _shows_output(document: QmdDocument, cell: CodeCell) -> bool:
    return bool(
        document.option(cell, "include", True)
        and document.option(cell, "eval", True)
        and document.option(cell, "output", True) is not False
    )


def _code_cell(
    document: QmdDocument,
    cell: CodeCell,
    index: int,
    outputs: list[dict[str, Any]],
    target: Target,
    names: dict[str, str],
    assets: Path,
) -> str:
    if not document.option(cell, "include", True):
        return ""
    parts: list[str] = []
    if document.option(cell, "echo", True):
        parts.append(_fence(cell.source, ".python .cell-code"))
    if _shows_output(document, cell):
        parts.extend(_outputs(document, cell, index, outputs, target, names, assets))
    return "\n\n".join(parts)


def _outputs(
    document: QmdDocument,
    cell: CodeCell,
    index: int,
    outputs: list[dict[str, Any]],
    target: Target,
    names: dict[str, str],
    assets: Path,
) -> list[str]:
    asis = document.option(cell, "output", True) == "asis"
    show_warnings = document.option(cell, "warning", True)
    label = cell.label or ""
    parts: list[str] = []
    images = 0
    for output in _merge_streams(outputs):
        kind = output["output_type"]
        if kind == "stream":
            if output["name"] == "stderr" and not show_warnings:
                continue
            text = output["text"]
            if asis and output["name"] == "stdout":
                parts.append(text)
            else:
                parts.append(_fence(text, f".cell-output-{output['name']}"))
        elif kind == "error":
            parts.append(
                _fence(_ANSI.sub("", "\n".join(output["traceback"])), ".cell-output-error")
            )
        else:
            data = output.get("data", {})
            mime = next((m for m in MIME_PRIORITY[target] if m in data), None)
            if mime in _IMAGE_SUFFIX:
                path = assets / f"cell{index:03d}-{images}.{_IMAGE_SUFFIX[mime]}"
                path.write_bytes(base64.b64decode(data[mime]))
                parts.append(_image(document, cell, path.name, first=images == 0, names=names))
                images += 1
            elif mime == "text/html":
                parts.append(_fence(_text(data[mime]), "{=html}", braces=False))
            elif mime == "text/markdown" or (mime == "text/plain" and asis):
                parts.append(_text(data[mime]))
            elif mime == "text/plain":
                parts.append(_fence(_text(data[mime]), ".cell-output"))
    if label.startswith("tbl-") or "tbl-cap" in cell.options:
        parts = [_table(cell, "\n\n".join(parts), target, names)]
    return parts


def _image(
    document: QmdDocument, cell: CodeCell, filename: str, first: bool, names: dict[str, str]
) -> str:
    """Markdown for one image; only a cell's first image carries its label and caption."""
    label = cell.label or ""
    caption = str(cell.options.get("fig-cap", "")) if first else ""
    if first and label in names and label.startswith("fig-"):
        caption = f"{names[label]}: {caption}" if caption else names[label]
    alt = (
        cell.options.get("fig-alt")
        or _plain(caption or str(cell.options.get("fig-cap", "")))
        or f"Figure produced by {cell.describe()}"
    )
    attributes = [f"#{label}"] if caption and label.startswith("fig-") else []
    attributes.append(f'alt="{_attribute(str(alt))}"')
    return f"![{caption}]({filename}){{{' '.join(attributes)}}}"


def _table(cell: CodeCell, body: str, target: Target, names: dict[str, str]) -> str:
    """Wrap a cell's outputs with a numbered caption above them, as Quarto places it.

    In the PDF the caption is a sticky typst block so a page break never separates it from
    its table.
    """
    label = cell.label or ""
    caption = str(cell.options.get("tbl-cap", ""))
    if label in names and label.startswith("tbl-"):
        caption = f"{names[label]}: {caption}" if caption else names[label]
    identifier = f"#{label} " if label.startswith("tbl-") else ""
    if target == "pdf":
        heading = (
            f"{_fence('#block(sticky: true)[', '{=typst}', braces=False)}\n\n{caption}\n\n"
            f"{_fence(']', '{=typst}', braces=False)}"
        )
    else:
        heading = f"::: {{.table-caption}}\n{caption}\n:::"
    return f"::: {{{identifier}.sicp-table}}\n{heading}\n\n{body}\n:::"


def _merge_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join consecutive writes to the same stream, as a notebook front end displays them."""
    merged: list[dict[str, Any]] = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            output["output_type"] == "stream"
            and previous is not None
            and previous["output_type"] == "stream"
            and previous["name"] == output["name"]
        ):
            merged[-1] = {**previous, "text": previous["text"] + output["text"]}
        else:
            merged.append(dict(output))
    return merged


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _fence(text: str, attributes: str, braces: bool = True) -> str:
    """A fenced block whose fence is longer than any backtick run inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    info = f"{{{attributes}}}" if braces else attributes
    return f"{ticks} {info}\n{text.rstrip()}\n{ticks}"


def _plain(markdown: str) -> str:
    return re.sub(r"[*_`]", "", markdown).strip()


def _attribute(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
