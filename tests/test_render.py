"""Offline rendering of Quarto reports: parse, execute in a kernel, pandoc HTML, typst PDF."""

from __future__ import annotations

import datetime as dt
import re
import stat
import sys
import textwrap
import time
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from sicp.render import RenderError, html_has_network_urls, render_report
from sicp.render.qmd import CodeCell, MarkdownChunk, parse_qmd

SAMPLE = Path(__file__).parent / "fixtures" / "qmd" / "sample.qmd"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out_dir = tmp_path_factory.mktemp("rendered")
    started = time.perf_counter()
    paths = render_report(SAMPLE, out_dir, params={"site": "Bolton"}, engine="offline")
    seconds = time.perf_counter() - started
    print(f"sample.qmd rendered to HTML+PDF in {seconds:.1f}s")
    return {"paths": paths, "html": paths[0].read_text(encoding="utf-8"), "seconds": seconds}


def _write_qmd(directory: Path, text: str) -> Path:
    path = directory / "doc.qmd"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_outputs_are_named_after_the_source(rendered: dict) -> None:
    html, pdf = rendered["paths"]
    assert (html.name, pdf.name) == ("sample.html", "sample.pdf")
    assert rendered["seconds"] < 60


def test_html_has_title_and_sections(rendered: dict) -> None:
    html = rendered["html"]
    assert '<h1 class="title">Sample evaluation report</h1>' in html
    for section in ("setup", "monthly-activity", "notes"):
        assert f'<h2 id="{section}">' in html


def test_parameters_and_inline_expressions_are_applied(rendered: dict) -> None:
    html = rendered["html"]
    assert "This report covers <strong>Bolton</strong> over 6 months." in html
    assert "Salford" not in html


def test_figure_is_embedded_numbered_and_has_alt_text(rendered: dict) -> None:
    html = rendered["html"]
    figure = re.search(r'<figure id="fig-admissions">(.*?)</figure>', html, re.S)
    assert figure is not None
    assert 'src="data:image/png;base64,' in figure[1]
    assert 'alt="Line chart of emergency admissions rising each month"' in figure[1]
    assert "<figcaption>Figure 1: Emergency admissions by month</figcaption>" in figure[1]
    assert '<a href="#fig-admissions">Figure 1</a>' in html
    images = re.findall(r"<img\b[^>]*>", html)
    assert images
    assert all(re.search(r'\balt="[^"]+"', img) for img in images)


def test_table_is_captioned_and_rendered_as_html(rendered: dict) -> None:
    html = rendered["html"]
    table = re.search(r'<div id="tbl-admissions" class="sicp-table">(.*?)</table>', html, re.S)
    assert table is not None
    assert "Table 1: Admissions per month" in table[1]
    assert '<table border="1" class="dataframe">' in table[1]
    assert "<td>22</td>" in table[1]
    assert "<td>high|top</td>" in table[1]
    assert '<a href="#tbl-admissions">Table 1</a>' in html


def test_cell_options_control_what_is_shown(rendered: dict) -> None:
    html = rendered["html"]
    assert "rows computed: 6" in html  # echo: false keeps the output ...
    assert "rows computed: {len(frame)}" not in html  # ... but hides the code
    assert "secret_marker" not in html  # include: false hides code and output
    assert "this warning must not appear" not in html  # warning: false drops stderr
    assert "Total admissions: <strong>102</strong>" in html  # Markdown() output passes through
    assert "eval: false cells are shown but never run" in html  # eval: false shows the code
    assert "Traceback" not in html


def test_html_is_self_contained(rendered: dict) -> None:
    html = rendered["html"]
    assert html_has_network_urls(html) == []
    assert "<script src" not in html
    assert "<math" in html  # MathML, not MathJax from a CDN


def test_pdf_has_pages_text_and_a_non_blank_first_page(rendered: dict) -> None:
    pdf_path = rendered["paths"][1]
    assert pdf_path.stat().st_size > 20_000
    pdf = pdfium.PdfDocument(pdf_path)
    try:
        assert len(pdf) >= 2
        text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
        pixels = pdf[0].render(scale=1).to_numpy()
    finally:
        pdf.close()
    compact = " ".join(text.split())
    assert "Figure 1: Emergency admissions by month" in compact
    assert "Table 1: Admissions per month" in compact
    assert "Bolton" in compact
    assert "high|top" in compact  # a '|' inside a value does not split the pipe-table cell
    assert "this warning must not appear" not in compact
    assert pixels.std() > 5  # a blank page has (near-)zero variance
    assert (pixels < 128).mean() > 0.005  # and some dark ink: text and the plot


def test_same_inputs_give_identical_html(rendered: dict, tmp_path: Path) -> None:
    (again,) = render_report(SAMPLE, tmp_path, {"site": "Bolton"}, ("html",), engine="offline")
    assert again.read_text(encoding="utf-8") == rendered["html"]


def test_parameters_cell_asis_output_errors_allowed_and_kernel_python(tmp_path: Path) -> None:
    qmd = _write_qmd(
        tmp_path,
        """\
        ---
        title: Tagged parameters
        execute:
          echo: false
        ---

        ```{python}
        #| tags: [parameters]
        threshold = 5
        ```

        ```{python}
        #| output: asis
        import sys
        print(f"threshold is **{threshold}**; kernel prefix {sys.prefix}")
        ```

        ```{python}
        #| error: true
        1 / 0
        ```
        """,
    )
    (html_path,) = render_report(
        qmd, tmp_path / "out", {"threshold": 7}, ["html"], engine="offline"
    )
    html = " ".join(html_path.read_text(encoding="utf-8").split())  # pandoc wraps long lines
    assert "threshold is <strong>7</strong>" in html
    assert f"kernel prefix {sys.prefix}" in html
    assert "ZeroDivisionError" in html


def test_failing_cell_reports_label_line_and_traceback(tmp_path: Path) -> None:
    qmd = _write_qmd(
        tmp_path,
        """\
        # Broken

        ```{python}
        #| label: load-results
        value = {"a": 1}
        value["missing"]
        ```

        Never reached.
        """,
    )
    with pytest.raises(RenderError) as caught:
        render_report(qmd, tmp_path / "out", formats=["html"], engine="offline")
    message = str(caught.value)
    assert "cell 'load-results' at line 3 failed" in message
    assert "KeyError" in message
    assert 'value["missing"]' in message
    assert "\x1b[" not in message
    assert not (tmp_path / "out" / "doc.html").exists()


def test_unknown_parameter_and_reference_fail_before_execution(tmp_path: Path) -> None:
    qmd = _write_qmd(
        tmp_path,
        """\
        ---
        params:
          site: Salford
        ---

        See @fig-missing.
        """,
    )
    with pytest.raises(RenderError, match=r"doc.qmd:6: reference to unknown label '@fig-missing'"):
        render_report(qmd, tmp_path / "out", engine="offline")
    qmd.write_text(qmd.read_text().replace("@fig-missing", "the text"), encoding="utf-8")
    with pytest.raises(RenderError, match=r"unknown parameter\(s\) \['sites'\]"):
        render_report(qmd, tmp_path / "out", {"sites": "Bolton"}, engine="offline")


def test_parse_splits_front_matter_markdown_and_cells(tmp_path: Path) -> None:
    qmd = _write_qmd(
        tmp_path,
        """\
        ---
        title: T
        execute:
          echo: false
        ---
        Intro.

        ````markdown
        ```{python}
        this literal block is not a cell
        ```
        ````

        ```{python}
        #| label: fig-a
        #| fig-cap: "A: caption"
        x = 1
        ```
        Outro.
        """,
    )
    document = parse_qmd(qmd)
    assert document.meta["title"] == "T"
    kinds = [type(block) for block in document.blocks]
    assert kinds == [MarkdownChunk, CodeCell, MarkdownChunk]
    cell = document.cells[0]
    assert cell.line == 14
    assert cell.options == {"label": "fig-a", "fig-cap": "A: caption"}
    assert cell.source == "x = 1"
    assert document.option(cell, "echo", True) is False
    assert "this literal block is not a cell" in document.blocks[0].text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("```{r}\n1\n```\n", r"only \{python\} cells"),
        ("```{python echo=FALSE}\n1\n```\n", "put cell options in '#|' lines"),
        ("```{python}\nx = 1\n", "code fence is never closed"),
        ("```{python}\n#| label: [unclosed\nx = 1\n```\n", "invalid '#|' cell options"),
    ],
)
def test_parse_rejects_what_it_cannot_render(tmp_path: Path, body: str, message: str) -> None:
    qmd = tmp_path / "bad.qmd"
    qmd.write_text(body, encoding="utf-8")
    with pytest.raises(RenderError, match=message):
        parse_qmd(qmd)


def test_html_has_network_urls_finds_fetchable_urls_only() -> None:
    html = (
        "<img src=\"https://cdn.example/x.png\"><link href='http://cdn.example/s.css'>"
        "<style>body { background: url(//cdn.example/bg.png) }</style>"
        '<math xmlns="http://www.w3.org/1998/Math/MathML"></math>'
        '<a href="#fig-1">Figure 1</a><img src="data:image/png;base64,AAAA" alt="x">'
        "<p>see https://example.org in the text</p>"
    )
    assert html_has_network_urls(html) == [
        "https://cdn.example/x.png",
        "http://cdn.example/s.css",
        "//cdn.example/bg.png",
    ]


def test_quarto_on_path_is_called_with_params_and_output_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ``quarto`` records its arguments; real Quarto cannot be installed here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "quarto"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{calls}"\n'
        'out=$(echo "$@" | sed -n "s/.*--output-dir \\([^ ]*\\).*/\\1/p")\n'
        'case "$@" in *"--to html"*) touch "$out/sample.html";; *) touch "$out/sample.pdf";; esac\n',
        encoding="utf-8",
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    out_dir = tmp_path / "out"
    paths = render_report(SAMPLE, out_dir, {"site": "Bolton", "n_months": 3})
    assert paths == [out_dir.resolve() / "sample.html", out_dir.resolve() / "sample.pdf"]
    html_call, pdf_call = calls.read_text().splitlines()
    # Quarto renders a copy beside the source whose front matter reads no raw HTML or TeX
    # (tests/test_render_escaping.py), named after the source, and the copy is removed.
    safe = SAMPLE.resolve().with_name(f".{SAMPLE.stem}.safe.qmd")
    assert (
        f"render {safe} --to html --output sample.html --output-dir {out_dir.resolve()}"
        in html_call
    )
    assert not safe.exists()
    assert "-M embed-resources:true" in html_call
    assert '-P site:"Bolton" -P n_months:3' in html_call
    assert "--to typst" in pdf_call


def test_title_block_contents_and_page_options(tmp_path: Path) -> None:
    """The front matter the evaluation report uses, as Quarto reads it: ``date: today`` in the
    title block, a table of contents to ``toc-depth`` levels with its title, sections numbered
    from 1 when ``##`` is the top level (``shift-heading-level-by: -1``), and the typst page's
    paper size and margins."""
    qmd = _write_qmd(
        tmp_path,
        """\
        ---
        title: "Report"
        subtitle: "Its subtitle"
        date: today
        toc: true
        toc-depth: 1
        toc-title: "Contents"
        number-sections: true
        shift-heading-level-by: -1
        papersize: a4
        margin:
          x: 2cm
          y: 2.2cm
        ---

        ## First section

        ### A subsection

        ## Second section
        """,
    )
    html_path, pdf_path = render_report(qmd, tmp_path / "out", engine="offline")
    page = html_path.read_text(encoding="utf-8")
    assert f'<p class="date">{dt.date.today().isoformat()}</p>' in page
    toc = re.search(r'<nav id="TOC" role="doc-toc">(.*?)</nav>', page, re.S)
    assert toc is not None and "Contents" in toc[1]
    assert "First section" in toc[1] and "Second section" in toc[1]
    assert "A subsection" not in toc[1]  # depth 1
    assert re.search(r'<h1[^>]*><span class="header-section-number">1</span> First section', page)
    assert re.search(r'<span class="header-section-number">1.1</span> A subsection', page)
    pdf = pdfium.PdfDocument(pdf_path)
    try:
        width, height = pdf[0].get_size()
        text = pdf[0].get_textpage()
        first = " ".join(text.get_text_range().split())
        left = min(
            text.get_charbox(i)[0]
            for i in range(text.count_chars())
            if text.get_text_range(i, 1).strip()
        )
    finally:
        pdf.close()
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    assert abs(left - 72 * 2 / 2.54) < 3  # the 2 cm margin
    assert (
        "Contents" in first and "1 First section" in first and dt.date.today().isoformat() in first
    )
    assert "0.1" not in first  # no section numbered from a missing top level
