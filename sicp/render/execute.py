"""Execute a parsed report's Python cells in a Jupyter kernel (nbclient + ipykernel).

The report becomes a notebook: a hidden setup cell (inline PNG figures without metadata,
DataFrames also offered as markdown tables), the injected parameters (papermill-style), the
report's cells, and one hidden cell per markdown chunk that holds inline `{python} expr`
expressions. Cells run one by one so a failure can be reported with the report's own cell label
and line rather than a notebook index.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from sicp.render.qmd import CodeCell, MarkdownChunk, QmdDocument, RenderError

KERNEL_NAME = "python3"
INLINE_MIME = "application/x-sicp-inline+json"
INLINE_EXPRESSION = re.compile(r"`\{python\}\s+([^`]+?)`")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Why each line: PNG (not SVG) so PDF and HTML share one image; no 'Software' metadata so the
# bytes depend only on the plot; a fixed SVG hash salt in case a report saves SVG itself;
# DataFrames gain a text/markdown (pipe table) representation that the PDF (typst) output can use,
# with '|' escaped so a value containing it cannot split a cell.
_SETUP_SOURCE = """\
%matplotlib inline
%config InlineBackend.figure_formats = ["png"]
%config InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "metadata": {"Software": None}}
import matplotlib as _sicp_mpl
_sicp_mpl.rcParams["svg.hashsalt"] = "sicp-report"

def _sicp_markdown_table(frame):
    def escape(value):
        return value.replace("|", "\\\\|") if isinstance(value, str) else value
    return frame.rename(index=escape, columns=escape).map(escape).to_markdown()

get_ipython().display_formatter.formatters["text/markdown"].for_type_by_name(
    "pandas.core.frame", "DataFrame", _sicp_markdown_table
)
del _sicp_mpl, _sicp_markdown_table
"""


@dataclass(frozen=True)
class ExecutedReport:
    """Outputs of every executed cell and the values of inline expressions, by block index."""

    document: QmdDocument
    outputs: dict[int, list[dict[str, Any]]]
    inline_values: dict[int, list[str]]


def execute_report(
    document: QmdDocument, params: dict[str, Any] | None, timeout: int
) -> ExecutedReport:
    """Run the report's cells in a fresh kernel whose working directory is the report's folder."""
    parameters = resolve_parameters(document, params or {})
    nb = nbformat.v4.new_notebook()
    nb.cells.append(_hidden_cell(_SETUP_SOURCE, kind="setup"))
    parameters_cell = _parameters_cell_index(document)
    if parameters_cell is None and parameters:
        nb.cells.append(_hidden_cell(_parameters_source(parameters), kind="parameters"))
    for index, block in enumerate(document.blocks):
        if isinstance(block, MarkdownChunk):
            expressions = INLINE_EXPRESSION.findall(block.text)
            if expressions:
                nb.cells.append(
                    _hidden_cell(_inline_source(expressions), kind="inline", block=index)
                )
            continue
        if not document.option(block, "eval", True):
            continue
        cell = nbformat.v4.new_code_cell(block.source)
        cell.metadata["sicp"] = {"kind": "cell", "block": index}
        if document.option(block, "error", False):
            cell.metadata["tags"] = ["raises-exception"]
        nb.cells.append(cell)
        if index == parameters_cell and parameters:
            nb.cells.append(_hidden_cell(_parameters_source(parameters), kind="parameters"))

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        extra_arguments=["--log-level=ERROR"],  # no start-up chatter on the renderer's stderr
        resources={"metadata": {"path": str(document.path.parent)}},
    )
    with client.setup_kernel():
        for position, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, position)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                raise RenderError(_failure_message(document, cell, exc)) from None

    outputs: dict[int, list[dict[str, Any]]] = {}
    inline_values: dict[int, list[str]] = {}
    for cell in nb.cells:
        info = cell.metadata["sicp"]
        if info["kind"] == "cell":
            outputs[info["block"]] = list(cell.outputs)
        elif info["kind"] == "inline":
            inline_values[info["block"]] = _inline_values(cell)
    return ExecutedReport(document, outputs, inline_values)


def resolve_parameters(document: QmdDocument, overrides: dict[str, Any]) -> dict[str, Any]:
    """Front-matter defaults updated by ``overrides``; unknown names are an error, not a no-op."""
    defaults = document.param_defaults
    declared = set(defaults)
    index = _parameters_cell_index(document)
    if index is not None:
        cell = document.blocks[index]
        assert isinstance(cell, CodeCell)
        declared |= _assigned_names(document, cell)
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise RenderError(
            f"{document.path}: unknown parameter(s) {unknown}; the report declares {sorted(declared)}"
        )
    values = {**defaults, **overrides}
    bad = [name for name in values if not str(name).isidentifier()]
    if bad:
        raise RenderError(f"{document.path}: parameter names must be Python identifiers: {bad}")
    return values


def _parameters_cell_index(document: QmdDocument) -> int | None:
    """Block index of the cell tagged ``parameters`` (Quarto's Jupyter convention), if any."""
    for index, block in enumerate(document.blocks):
        if isinstance(block, CodeCell) and "parameters" in (block.options.get("tags") or []):
            return index
    return None


def _assigned_names(document: QmdDocument, cell: CodeCell) -> set[str]:
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise RenderError(f"{document.path}: {cell.describe()} is not valid Python: {exc}") from exc
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def _parameters_source(parameters: dict[str, Any]) -> str:
    lines = ["# Injected parameters"]
    for name, value in parameters.items():
        if isinstance(value, dt.date):
            value = value.isoformat()  # YAML dates arrive as date objects; papermill passes text
        lines.append(f"{name} = {value!r}")
    return "\n".join(lines)


def _inline_source(expressions: list[str]) -> str:
    values = ", ".join(f"str({expression})" for expression in expressions)
    return f"__import__('IPython').display.display({{{INLINE_MIME!r}: [{values}]}}, raw=True)"


def _inline_values(cell: nbformat.NotebookNode) -> list[str]:
    for output in cell.outputs:
        data = output.get("data", {})
        if INLINE_MIME in data:
            return list(data[INLINE_MIME])
    raise RenderError("inline expressions produced no value")


def _hidden_cell(source: str, kind: str, block: int | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["sicp"] = {"kind": kind, "block": block}
    return cell


def _failure_message(document: QmdDocument, cell: nbformat.NotebookNode, exc: Exception) -> str:
    info = cell.metadata["sicp"]
    if info["kind"] == "cell":
        block = document.blocks[info["block"]]
        assert isinstance(block, CodeCell)
        where = block.describe()
    elif info["kind"] == "inline":
        where = f"inline `{{python}}` expression in the markdown at line {document.blocks[info['block']].line}"
    else:
        where = f"injected {info['kind']} cell"
    tracebacks = [
        "\n".join(output.get("traceback", []))
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    detail = "\n".join(tracebacks) if tracebacks else str(exc)
    return f"{document.path}: {where} failed:\n{_ANSI.sub('', detail)}"
