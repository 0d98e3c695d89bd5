"""detect.eda.report: one list of blocks -> Markdown and a self-contained HTML page."""

import base64

import pytest

from detect.eda import formatting as fmt
from detect.eda.report import Heading, Paragraph, Plot, Table, to_html, to_markdown

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")


def blocks():
    return [
        Heading(1, "EDA"),
        Paragraph("from `labels.csv` <b>"),
        Table(("a|b", "n"), (("x", "1,234"),)),
        Plot("p.png", "a plot (n = 3)"),
    ]


def test_markdown_escapes_pipes_and_links_plots():
    text = to_markdown(blocks())
    assert "# EDA" in text and "| a\\|b | n |" in text and "| x | 1,234 |" in text
    assert "![a plot (n = 3)](p.png)" in text


def test_html_embeds_plots_and_escapes_text(tmp_path):
    (tmp_path / "p.png").write_bytes(PNG)
    page = to_html(blocks(), tmp_path, "EDA <report>")
    assert "<title>EDA &lt;report&gt;</title>" in page
    assert "<p>from <code>labels.csv</code> &lt;b&gt;</p>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    assert "http" not in page and "<script" not in page and "<link" not in page


def test_table_rows_must_match_header():
    with pytest.raises(ValueError, match=r"table row 0 has 1 cells, the header 2"):
        Table(("a", "b"), (("x",),))


def test_formatting():
    assert fmt.count(26684) == "26,684" and fmt.count(None) == "n/a"
    assert fmt.share(0.38314) == "38.3%" and fmt.share(13 / 26684) == "0.05%" and fmt.share(0) == "0.0%"
    assert fmt.interval(0.37454, 0.39181) == "37.5-39.2%" and fmt.interval(None, 0.2) == "n/a"
    assert fmt.number(64829.0) == "64,829" and fmt.number(1.4476, 2) == "1.45" and fmt.age(148.0) == "148"
