"""The product speaks of the product: no development narration in the docs, the code's strings
and comments, or test names.

README.md and docs/*.md must not speak of sessions, issues, done-whens, "this machine" or a
restructure; a measurement names its hardware, date and commit instead. The Python sources
(comments and string literals, which include every --help text, error message and HTTP answer),
the recipes and CI script must not cite issues or done-whens, and no identifier may be named
after one. History belongs in commit messages.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Phrases that narrate how the project was made rather than what it does.
CODE_PATTERNS = [
    r"\bissues?\s*#?\d+",  # "issue 11", "issue #16"
    r"\bthe issue\b",
    r"\bissue's\b",
    r"done[-_]when",
    r"\b(?:this|previous|earlier|other|next|that) sessions?\b",
    r"\bsession's machine\b",
    r"\brestructure\b",
]
DOC_PATTERNS = CODE_PATTERNS + [
    r"\bsessions?\b",
    r"\bthis machine\b",
    r"\bthis project's (?:machines?|\d-core|cpu)\b",
    r"\b(?:ran|running|runs) alongside\b",
    r"\bthe lead (?:re-times|will|merges|adds)\b",
    r"\breported in an issue\b",
]
IDENTIFIER_PATTERN = re.compile(r"done_when|(?:^|_)issue_?\d|the_issue|session_machine", re.IGNORECASE)


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_files() -> list[Path]:
    files = [ROOT / "cli.py"]
    for folder in ("detect", "data_prep", "benchmarks", "tests"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def _text_files() -> list[Path]:
    return [*sorted((ROOT / "configs").glob("*.yaml")), ROOT / ".ci" / "run", ROOT / "pyproject.toml"]


def find_narration(text: str, patterns: list[str]) -> list[str]:
    """The phrases of `text` that match one of `patterns` (case-insensitive)."""
    return [m.group(0) for pattern in patterns for m in re.finditer(pattern, text, re.IGNORECASE)]


def python_prose(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment and string literal of a Python source."""
    out = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.STRING) or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            out.append((token.start[0], token.string))
    return out


def python_identifiers(source: str) -> list[tuple[int, str]]:
    return [
        (t.start[0], t.string)
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.NAME
    ]


def _this_file(path: Path) -> bool:
    return path.resolve() == Path(__file__).resolve()


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_speak_of_the_product(path):
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        problems += [f"{path.relative_to(ROOT)}:{number}: '{hit}'" for hit in find_narration(line, DOC_PATTERNS)]
    assert not problems, "development narration in the docs:\n" + "\n".join(problems)


def test_code_strings_comments_and_names_speak_of_the_product():
    problems = []
    for path in _python_files():
        if _this_file(path):
            continue
        source = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        for line, text in python_prose(source):
            problems += [f"{rel}:{line}: '{hit}'" for hit in find_narration(text, CODE_PATTERNS)]
        for line, name in python_identifiers(source):
            if IDENTIFIER_PATTERN.search(name):
                problems.append(f"{rel}:{line}: identifier '{name}'")
    for path in _text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            problems += [f"{path.relative_to(ROOT)}:{number}: '{hit}'" for hit in find_narration(line, CODE_PATTERNS)]
    assert not problems, "development narration in code, recipes or CI:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "text, hits",
    [
        ("What the demo printed on this session's machine", True),
        ("see issue 11", True),
        ("within issue 16's 1.2x", True),
        ("the issue's done-when for detect compare", True),
        ("def check_done_when(rows):", True),
        ("measured in an earlier session on a 2-core CPU", True),
        ("before the package restructure", True),
        ("a 2-core AMD EPYC, 2026-12-01, commit 811f829", False),
        ("an ONNX Runtime InferenceSession on the CPU", False),
        ("the GPU is done when it returns", False),
    ],
)
def test_the_patterns_catch_narration_and_pass_product_wording(text, hits):
    assert bool(find_narration(text, CODE_PATTERNS)) is hits


def test_doc_patterns_catch_machine_narration():
    assert find_narration("on this machine, while the test suite was running alongside", DOC_PATTERNS)
    assert not find_narration("on a quiet 2-core AMD EPYC (load average 0.9)", DOC_PATTERNS)


def test_identifiers_named_after_the_process_are_caught():
    names = [name for _, name in python_identifiers("def check_done_when(x):\n    issue_10 = 1\n    ok = 2\n")]
    assert [n for n in names if IDENTIFIER_PATTERN.search(n)] == ["check_done_when", "issue_10"]
