"""CSV cells a spreadsheet would run: text starting with '=', '+', '-' or '@' (and a tab or a
carriage return, which some spreadsheets skip before one) is read as a formula when the file is
opened in Excel, LibreOffice or Google Sheets. A DICOM PatientID such as '=HYPERLINK(...)' or a
file named '@SUM(1).dcm' would then be formula injection.

    is_formula_like(text)     True for such text (a plain number such as -1.5 is not)
    spreadsheet_safe(value)   the value, with a leading ' when it is formula-like (what OWASP advises)

Every CSV detect writes for people (bad_files.csv, compare.csv, sweep.csv) passes its text
cells through `spreadsheet_safe`. The Kaggle submission keeps IDs as they are (the format needs
the exact ID) and `detect infer` warns about each formula-like one instead.
"""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def is_formula_like(text: Any) -> bool:
    """True when `text` is a str a spreadsheet would read as a formula (not a plain number)."""
    if not isinstance(text, str) or not text.startswith(FORMULA_PREFIXES):
        return False
    try:
        float(text)
    except ValueError:
        return True
    return False


def spreadsheet_safe(value: Any) -> Any:
    """`value` with a leading apostrophe when it is formula-like text; anything else unchanged."""
    return "'" + value if is_formula_like(value) else value
