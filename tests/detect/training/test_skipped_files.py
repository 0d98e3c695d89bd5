"""detect.training.skipped_files: bad_files.csv is for people, so formula-like cells are neutralised."""

from __future__ import annotations

from data_prep.records import BadFile
from detect.training.skipped_files import BAD_FILES_CSV, SkippedFiles


def test_a_formula_like_file_name_is_neutralised_in_bad_files_csv(tmp_path):
    skipped = SkippedFiles(tmp_path, resume=False)
    skipped.add([BadFile(path="=HYPERLINK(1).dcm", reason="truncated")], lambda line: None)
    assert (tmp_path / BAD_FILES_CSV).read_text().splitlines()[1] == "'=HYPERLINK(1).dcm,truncated"
