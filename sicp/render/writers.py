"""Pandoc markdown to a self-contained HTML file (pandoc) or a PDF (pandoc -> typst -> PDF).

Both writers work offline: HTML embeds every image, style and script (no CDN, MathML instead of
MathJax); the PDF is compiled by the ``typst`` Python package with its bundled fonts only, so the
result does not depend on the fonts of the machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pypandoc
import typst

from sicp.render.qmd import RenderError

_CSS = """<style>
body { max-width: 60em; margin: 0 auto; padding: 1em 2em; line-height: 1.5;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a; }
img { max-width: 100%; height: auto; }
figure { margin: 1.5em 0; text-align: center; }
figcaption, .table-caption { font-size: 0.92em; color: #444; margin: 0.4em 0; }
.sicp-table { margin: 1.5em 0; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { border-bottom: 2px solid #666; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 0.88em; }
pre.cell-output-stderr { background: #fff5e6; }
pre.cell-output-error { background: #fdecea; }
</style>
"""

# Captions already carry "Figure 1: ..." (numbered once, for HTML and PDF alike), so typst shows
# only the caption body; no creation date so identical inputs give identical PDFs.
# Long tables must break across pages (typst figures do not by default), and wide tables
# read better in a smaller font, ragged right (justified text in a narrow cell gapes).
_TYPST_HEADER = """#show figure.caption: it => it.body
#set document(date: none)
#show figure: set block(breakable: true)
#show table: set text(size: 8pt)
#show table: set par(justify: false)
"""

_NETWORK_URL = re.compile(
    r"""(?:\b(?:src|href|srcset|poster|data)\s*=\s*["']?|url\(\s*["']?)((?:https?:)?//[^"'\s>)]+)""",
    re.IGNORECASE,
)


def html_has_network_urls(html: str) -> list[str]:
    """Every http(s):// or protocol-relative URL a browser would fetch or follow from ``html``.

    Looks at src/href-style attributes and CSS ``url(...)``; XML namespace identifiers such as
    MathML's ``xmlns`` are not fetched and are not reported.
    """
    return _NETWORK_URL.findall(html)


def write_html(markdown: Path, output: Path, meta: dict[str, Any]) -> Path:
    """Standalone HTML with every resource embedded as a data URI."""
    header = markdown.parent / "style.html"
    header.write_text(_CSS, encoding="utf-8")
    args = [
        "--to=html5",
        "--standalone",
        "--embed-resources",
        "--mathml",
        f"--include-in-header={header.name}",
        *_pandoc_flags(meta),
    ]
    if not meta.get("title"):
        args.append(f"--metadata=pagetitle:{output.stem}")
    _pandoc(markdown, output, args)
    return output


def write_pdf(markdown: Path, output: Path, meta: dict[str, Any]) -> Path:
    """PDF via pandoc's typst writer and the typst compiler (images read from ``markdown``'s dir)."""
    header = markdown.parent / "header.typ"
    header.write_text(_TYPST_HEADER, encoding="utf-8")
    source = markdown.with_suffix(".typ")
    _pandoc(
        markdown,
        source,
        ["--to=typst", "--standalone", f"--include-in-header={header.name}", *_pandoc_flags(meta)],
    )
    try:
        typst.compile(
            str(source), output=str(output), root=str(markdown.parent), ignore_system_fonts=True
        )
    except RuntimeError as exc:
        raise RenderError(f"typst could not compile {source.name}: {exc}") from exc
    return output


def _pandoc_flags(meta: dict[str, Any]) -> list[str]:
    """Pandoc flags for the Quarto document options the reports use: a table of contents to
    ``toc-depth`` heading levels, section numbers, and ``shift-heading-level-by`` (-1 makes a
    report's ``##`` sections the top level, numbered 1, 2, ... under the title)."""
    flags = []
    if meta.get("toc"):
        flags.append("--toc")
        if meta.get("toc-depth"):
            flags.append(f"--toc-depth={int(meta['toc-depth'])}")
    if meta.get("number-sections"):
        flags.append("--number-sections")
    if meta.get("shift-heading-level-by"):
        flags.append(f"--shift-heading-level-by={int(meta['shift-heading-level-by'])}")
    return flags


#: The reports' markdown takes no raw HTML or TeX: any text that reaches them (a protocol title,
#: a neighbourhood's name, an error message) is printed as written, never run as markup; the
#: banner's deliberate markup is a raw ``{=html}``/``{=typst}`` block, which this keeps.
MARKDOWN_READER = "markdown-raw_html-raw_tex"


#: A pandoc filter that keeps only links and images to web pages, mail, anchors and local files:
#: markdown link syntax in a printed text (``[x](javascript:...)``) becomes its plain text.
#: Both renderers use it (Quarto through the front matter sicp.render.report adds).
SAFE_LINKS_FILTER = Path(__file__).with_name("safe_links.lua")


def _pandoc(source: Path, output: Path, args: list[str]) -> None:
    command = [
        pypandoc.get_pandoc_path(),
        source.name,
        f"--from={MARKDOWN_READER}",
        f"--lua-filter={SAFE_LINKS_FILTER}",
        *args,
        f"--output={output}",
    ]
    result = subprocess.run(command, cwd=source.parent, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RenderError(f"pandoc failed ({' '.join(args)}):\n{result.stderr.strip()}")
