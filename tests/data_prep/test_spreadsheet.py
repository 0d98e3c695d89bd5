"""data_prep.spreadsheet: CSV cells a spreadsheet would run as formulas."""

from __future__ import annotations

import pytest

from data_prep.spreadsheet import is_formula_like, spreadsheet_safe


@pytest.mark.parametrize(
    "text", ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd", "-2+3+cmd", "\t=1+1", "\r=1"]
)
def test_formula_like_text_is_neutralised(text):
    assert is_formula_like(text)
    assert spreadsheet_safe(text) == "'" + text


@pytest.mark.parametrize("value", ["0004cfab-14fd", "-1.5", "+3", "1e5", "", 12, -3.0, None, "a=b"])
def test_other_values_are_left_alone(value):
    assert not is_formula_like(value)
    assert spreadsheet_safe(value) == value
