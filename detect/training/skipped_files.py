"""RUN_DIR/bad_files.csv: the files a training run could not read, each once, with its reason.

`detect prepare` proves every file's header and pixel data complete, but a file can still fail
when training decodes it (corrupt JPEG data that only a decode finds, a file changed or
removed since). Such a sample is skipped (detect.data.dataset, skip_unreadable) and lands here,
with a log line, instead of stopping the run mid-epoch. The same columns as the prepared
folder's bad_files.csv (path,reason); the file is rewritten whole and atomically
(data_prep.atomic), so a kill never leaves half a row. On --resume the
rows already written are kept.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable, Iterable

from data_prep.atomic import write_text_atomic
from data_prep.errors import printable
from data_prep.records import BadFile
from data_prep.spreadsheet import spreadsheet_safe

BAD_FILES_CSV = "bad_files.csv"


class SkippedFiles:
    """The run's unreadable files: `add` records new ones (by path) and rewrites the CSV."""

    def __init__(self, run_dir: Path, *, resume: bool) -> None:
        self.path = Path(run_dir) / BAD_FILES_CSV
        self.files: dict[str, BadFile] = {}
        if resume and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    if row.get("path"):
                        self.files[row["path"]] = BadFile(path=row["path"], reason=row.get("reason") or "")

    def add(self, bad_files: Iterable[BadFile], log: Callable[[str], None]) -> list[BadFile]:
        """Record the files not seen before, log one line each; return them."""
        new = []
        for bad in bad_files:
            if bad.path not in self.files:
                self.files[bad.path] = bad
                new.append(bad)
                log(f"warning: skipped unreadable {printable(bad.path)}: {printable(bad.reason)} (in {self.path})")
        if new:
            self._write()
        return new

    def _write(self) -> None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(("path", "reason"))
        writer.writerows(
            (spreadsheet_safe(b.path), spreadsheet_safe(b.reason))
            for b in sorted(self.files.values(), key=lambda b: b.path)
        )
        write_text_atomic(self.path, text.getvalue())
