"""Everything printed into a report is text, never markup (issue 15, class 9): raw HTML, raw
TeX and script links in a protocol title, a name from the data or an error message render as
written, in HTML and in PDF, while the reports' own banner block still renders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sicp.render.writers import write_html, write_pdf
from sicp.report_data import banner

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert('x')</script>",
    "[click me](javascript:alert(1))",
    "![pic](javascript:alert(2))",
    '<a href="javascript:alert(3)">area</a>',
    "\\input{/etc/passwd}",
]


@pytest.fixture
def document(tmp_path: Path) -> Path:
    body = "\n\n".join(f"## Protocol {i}: {text}\n\nQuestion: {text}" for i, text in
                       enumerate(HOSTILE))
    source = tmp_path / "report.md"
    source.write_text(banner("Synthetic data: a simulated world.") + "\n\n" + body + "\n",
                      encoding="utf-8")
    return source


def test_html_shows_hostile_text_as_text(document: Path) -> None:
    html = write_html(document, document.with_suffix(".html"), {"title": "t"}).read_text()
    body = html[html.index("<body"):]
    assert not re.search(r"<img[^>]*onerror", body)
    assert "<script>alert" not in body
    assert 'href="javascript' not in body and "src=\"javascript" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "click me" in body
    assert 'class="sicp-banner"' in body  # the reports' own markup block still renders


def test_pdf_renders_hostile_text(document: Path) -> None:
    pdf = write_pdf(document, document.with_suffix(".pdf"), {"title": "t"})
    assert pdf.stat().st_size > 1000
    typ = document.with_suffix(".typ").read_text()
    assert "etc/passwd" in typ  # printed, not read
