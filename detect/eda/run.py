"""`detect eda`: the exploratory analysis of an RSNA or Kermany dataset, as a report folder.

    result = run_eda_tables(out_dir, labels="stage_2_train_labels.csv", headers="headers.csv.gz")
    result = detect.eda.folder.run_eda_folder(out_dir, "data/rsna")   # a Kaggle root or a prepared folder
    print(format_eda_summary(result))

Writes into out_dir: report.md, report.html (self-contained), eda.json (every number shown)
and one PNG per plot. The numbers come from `data_prep.eda` (pandas and numpy), the plots from
`detect.eda.plots`, the text from `detect.eda.sections`. The tables-only path imports neither
the image cache nor `detect prepare` (and with it scikit-learn), which would double its time on
the real 30,000-row table; `detect.eda.folder` holds the folder path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.eda import compute_eda, tables_from_label_files
from data_prep.errors import ConfigError, DetectError
from detect.eda.plots import draw_plots
from detect.eda.report import write_report
from detect.eda.sections import report_blocks, report_title


@dataclass(frozen=True)
class EdaResult:
    """What a run wrote: the numbers (eda.json's content) and every path, plus notes to print."""

    out_dir: Path
    numbers: dict[str, Any]
    paths: dict[str, Path]
    plots: dict[str, str]
    notes: list[str] = field(default_factory=list)


def check_out_dir(out_dir: str | Path) -> Path:
    """The report folder, which may not exist yet; DetectError when it is a file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DetectError(f"{out}: exists and is not a folder (--out takes a folder)")
    return out


def write_eda(
    out_dir: str | Path,
    numbers: dict[str, Any],
    sample_panels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = (),
    notes: Sequence[str] = (),
) -> EdaResult:
    """Plots, report.md, report.html and eda.json of `numbers` into out_dir (created)."""
    out = check_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = draw_plots(numbers, out, sample_panels)
    paths = write_report(out, report_blocks(numbers, plots), numbers, report_title(numbers))
    paths.update({name: out / file_name for name, file_name in plots.items()})
    return EdaResult(out_dir=out, numbers=numbers, paths=paths, plots=plots, notes=list(notes))


def run_eda_tables(
    out_dir: str | Path, labels: str | Path, class_info: str | Path | None = None, headers: str | Path | None = None
) -> EdaResult:
    """The report of RSNA's label tables alone (no image read): `labels` (stage_2_train_labels.csv),
    optionally `class_info` (stage_2_detailed_class_info.csv) and `headers` (a DICOM header
    table, see data_prep.eda.tables). Raises LabelFileError / DataFormatError naming the file."""
    check_out_dir(out_dir)
    return write_eda(out_dir, compute_eda(tables_from_label_files(labels, class_info=class_info, headers=headers)))


def check_eda_arguments(data_dir: Any, labels: Any, class_info: Any, headers: Any) -> None:
    """ConfigError unless exactly one of a dataset folder and a labels table is given, and the
    table options go with the labels."""
    if (data_dir is None) == (labels is None):
        raise ConfigError("pass either DATA_DIR (a dataset folder) or --labels LABELS.csv (the tables alone), not both")
    if data_dir is not None and (class_info is not None or headers is not None):
        raise ConfigError("--class-info and --headers go with --labels; a dataset folder brings its own")


def format_eda_summary(result: EdaResult) -> str:
    """A few lines for the terminal: what was analysed and where the report is."""
    o = result.numbers["overview"]
    lines = [
        f"{report_title(result.numbers)}: {o['images']:,} images, {o['positive_images']:,} positive "
        f"({100 * (o['positive_share'] or 0):.1f}%), {o['boxes']:,} boxes",
        f"wrote {result.paths['report_md']}, {result.paths['report_html'].name}, {result.paths['eda_json'].name} "
        f"and {len(result.plots)} plots in {result.out_dir}",
    ]
    return "\n".join(lines)
