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
    body = "\n\n".join(
        f"## Protocol {i}: {text}\n\nQuestion: {text}" for i, text in enumerate(HOSTILE)
    )
    source = tmp_path / "report.md"
    source.write_text(
        banner("Synthetic data: a simulated world.") + "\n\n" + body + "\n", encoding="utf-8"
    )
    return source


def test_html_shows_hostile_text_as_text(document: Path) -> None:
    html = write_html(document, document.with_suffix(".html"), {"title": "t"}).read_text()
    body = html[html.index("<body") :]
    assert not re.search(r"<img[^>]*onerror", body)
    assert "<script>alert" not in body
    assert 'href="javascript' not in body and 'src="javascript' not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "click me" in body
    assert 'class="sicp-banner"' in body  # the reports' own markup block still renders


def test_pdf_renders_hostile_text(document: Path) -> None:
    pdf = write_pdf(document, document.with_suffix(".pdf"), {"title": "t"})
    assert pdf.stat().st_size > 1000
    typ = document.with_suffix(".typ").read_text()
    assert "etc/passwd" in typ  # printed, not read


_FAKE_QUARTO = """#!{python}
import shutil, sys
from pathlib import Path
args = sys.argv[1:]
source = Path(args[1])
shutil.copy(source, Path({seen!r}))
out = Path(args[args.index("--output-dir") + 1]) / args[args.index("--output") + 1]
out.write_text("rendered")
"""


def test_quarto_reads_the_report_as_the_offline_renderer_does(tmp_path: Path, monkeypatch) -> None:
    """With Quarto the same reader (no raw HTML or TeX) and the safe-links filter apply: the
    report Quarto is given carries them in its front matter, and nothing is left behind."""
    import sys

    from sicp.render.report import render_report, safe_front_matter
    from sicp.render.writers import MARKDOWN_READER, SAFE_LINKS_FILTER

    seen = tmp_path / "seen.qmd"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "quarto"
    fake.write_text(_FAKE_QUARTO.format(python=sys.executable, seen=str(seen)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    qmd = tmp_path / "report.qmd"
    qmd.write_text(
        '---\ntitle: "T"\nfilters: [own.lua]\n---\n\n# {HOSTILE[0]}\n'.replace(
            "{HOSTILE[0]}", HOSTILE[0]
        ),
        encoding="utf-8",
    )
    written = render_report(qmd, tmp_path / "out", formats=["html"], engine="quarto")
    assert written == [tmp_path / "out" / "report.html"]
    given = seen.read_text(encoding="utf-8")
    assert given == safe_front_matter(qmd.read_text(encoding="utf-8"))
    meta = __import__("yaml").safe_load(given.split("---\n")[1])
    assert meta == {
        "title": "T",
        "from": MARKDOWN_READER,
        "filters": ["own.lua", str(SAFE_LINKS_FILTER)],
    }
    assert SAFE_LINKS_FILTER.is_file() and given.endswith(f"# {HOSTILE[0]}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "out", "report.qmd", "seen.qmd"]
