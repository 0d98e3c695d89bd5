"""The EDA report's files: report.md, a self-contained report.html and eda.json.

The report is a list of blocks (Heading, Paragraph, Table, Plot) built once
(`detect.eda.sections.report_blocks`) and written twice: as Markdown with the PNGs linked by
relative path, and as one HTML file with every PNG embedded as base64 (no script, no style
sheet or font from elsewhere: it opens offline, attached to a mail, years later).
Text may hold `code` spans; everything else is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from data_prep.atomic import write_text_atomic


@dataclass(frozen=True)
class Heading:
    level: int  # 1..4
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(f"table row {i} has {len(row)} cells, the header {len(self.header)}: {row}")


@dataclass(frozen=True)
class Plot:
    file_name: str  # a PNG in the report folder
    caption: str


Block = Union[Heading, Paragraph, Table, Plot]

_CODE = re.compile(r"`([^`]+)`")
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 62rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
figure { margin: 0.8rem 0 1.4rem; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85rem; color: #555; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            lines.append("|" + "|".join("---" for _ in block.header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        else:
            lines += [f"![{block.caption}]({block.file_name})", "", f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline_html(text: str) -> str:
    """Escape `text`; `code` spans become <code> elements."""
    parts = _CODE.split(text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def to_html(blocks: Sequence[Block], image_dir: Path, title: str) -> str:
    """One HTML page; each Plot's PNG is read from image_dir and embedded as a data: URI."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            encoded = base64.b64encode((image_dir / block.file_name).read_bytes()).decode("ascii")
            caption = _inline_html(block.caption)
            body.append(
                f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(out_dir: Path, blocks: Sequence[Block], numbers: Mapping[str, Any], title: str) -> dict[str, Path]:
    """Write report.md, report.html and eda.json into out_dir (the PNGs are already there).

    `numbers` must already be plain JSON (data_prep.eda.compute_eda makes it so): a NaN or a
    numpy value is a bug upstream and raises here rather than writing a file others cannot parse.
    """
    paths = {
        "report_md": out_dir / "report.md",
        "report_html": out_dir / "report.html",
        "eda_json": out_dir / "eda.json",
    }
    write_text_atomic(paths["report_md"], to_markdown(blocks))
    write_text_atomic(paths["report_html"], to_html(blocks, out_dir, title))
    text = json.dumps(numbers, indent=1, allow_nan=False)
    write_text_atomic(paths["eda_json"], text + "\n")
    return paths
