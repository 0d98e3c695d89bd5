"""tests/dicom_tools.py: a missing external tool fails the test in CI and skips it elsewhere."""

import pytest

from tests.dicom_tools import error_lines, require_tool


def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-xyz not found .*CI must have it"):
        require_tool("no-such-tool-xyz")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-xyz not found"):
        require_tool("no-such-tool-xyz")


def test_error_lines_picks_the_errors_of_dciodvfy_and_dcmtk():
    output = "Warning - Study ID\nError - Missing attribute Type 2C\nE: cannot read\nComprehensive3DSR\n"
    assert error_lines(output) == ["Error - Missing attribute Type 2C", "E: cannot read"]
