"""The README is the front door: every page under docs/ is reachable from it, and the relative
links of the README and the docs point at files that exist (or at docs pages, checked above)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
README_MAX_LINES = 300


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown text that are neither URLs nor anchors in the same page."""
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target).resolve() for target in relative_links(README.read_text(encoding="utf-8"))}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move details into docs/"


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_at_files(page):
    """A link to a docs/*.md page that is not there yet is allowed (pages arrive with their
    features); any other relative target must exist."""
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = (page.parent / target).resolve()
        if not path.exists() and not (path.parent == (ROOT / "docs").resolve() and path.suffix == ".md"):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_relative_links_parsing():
    text = "[a](docs/x.md) [b](https://x.org/y) [c](#anchor) [d](docs/y.md#part) [e](../LICENSE)"
    assert relative_links(text) == ["docs/x.md", "docs/y.md", "../LICENSE"]


def test_every_config_key_is_documented():
    """docs/configuration.md names every key of detect/config.py, so the page cannot drift from the code."""
    from detect.config import Config
    from detect.config_checks import all_keys

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key in all_keys(Config) if f"`{key.rsplit('.', 1)[-1]}`" not in text]
    assert not missing, f"docs/configuration.md does not name: {missing}"
