"""Optional dependencies are extras: the core commands import none of them, and a command whose
extra is missing stops with one line naming it, exit code 2 (detect/extras.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from data_prep.errors import DetectError
from detect.extras import EXTRAS, MissingExtraError, is_installed, require

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = sorted({module for modules in EXTRAS.values() for module in modules} | {"starlette", "multipart"})

# Runs first in a child interpreter: every optional package behaves as if it were not installed.
BLOCK = textwrap.dedent(f"""
    import sys
    BLOCKED = {OPTIONAL!r}
    for name in BLOCKED:
        sys.modules[name] = None  # what an uninstalled package looks like to import and find_spec
""")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_the_core_commands_import_no_optional_package():
    out = run_python("""
        import cli, detect.demo, detect.inference.batch, detect.evaluation.evaluate, detect.training.trainer
        import detect.export.run, detect.inference.backends, detect.compare.run, detect.sweep.run, detect.eda.folder
        from detect import Detector
        loaded = sorted(m for m, module in sys.modules.items() if m.split(".")[0] in BLOCKED and module is not None)
        print("loaded:", ",".join(loaded))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "loaded:", out.stdout


@pytest.mark.parametrize(
    "args, extra",
    [
        (["serve", "--checkpoint", "none.pt"], "serve"),
    ],
)
def test_a_command_without_its_extra_is_one_line_and_exit_2(args, extra):
    out = run_python("from cli import app\napp()", *args)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and f'pip install "detect[{extra}]"' in lines[0]


def test_each_optional_feature_names_its_extra_before_any_work(tmp_path):
    out = run_python(f"""
        from detect.extras import MissingExtraError
        def message(call):
            try:
                call()
            except MissingExtraError as exc:
                return str(exc)
            return "no error"
        from detect.outputs.dicom_results import DicomResultWriter
        print(message(lambda: DicomResultWriter(None, sr_dir={str(tmp_path)!r})))
        print(message(lambda: DicomResultWriter(None)))
        from detect.export.onnx import onnxruntime_session, write_onnx
        print(message(lambda: write_onnx(None, {str(tmp_path / "x.onnx")!r}, {{}})))
        print(message(lambda: onnxruntime_session({str(tmp_path / "x.onnx")!r})))
        from detect.explain.gradcam import GradCamExplainer
        print(message(lambda: GradCamExplainer(None, 64, "cpu")))
        print(message(lambda: __import__("detect.pacs.dicomweb")))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    expected = ["pacs", None, "export", "export", "explain", "pacs"]
    assert len(lines) == len(expected), out.stdout
    for line, extra in zip(lines, expected):
        if extra is None:
            assert line == "no error"  # no DICOM output asked for: nothing needed
        else:
            assert f'pip install "detect[{extra}]"' in line and "No module named" in line, line


def test_require_and_its_message(monkeypatch):
    require("export", "x", ())  # nothing to check
    assert is_installed("json") and not is_installed("no_such_module_here")
    with pytest.raises(MissingExtraError) as caught:
        require("serve", "detect serve", ("no_such_module_here",))
    assert isinstance(caught.value, DetectError) and caught.value.exit_code == 2
    assert str(caught.value) == (
        "detect serve needs the 'serve' extra (No module named 'no_such_module_here'): pip install \"detect[serve]\" "
        '(in a clone: pip install -e ".[serve]")'
    )


def test_every_extra_is_declared_in_pyproject():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for extra in EXTRAS:
        assert f"\n{extra} = [" in text, extra
    assert '\nall = ["detect[' in text and '"detect[all]"' in text
