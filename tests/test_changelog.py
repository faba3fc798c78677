"""CHANGELOG.md keeps the Keep a Changelog format and agrees with ``__version__``."""

import pathlib
import re

import jxent

CHANGELOG = (pathlib.Path(__file__).resolve().parent.parent / "CHANGELOG.md").read_text()
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def _sections() -> list[tuple[str, list[str]]]:
    """(release heading, its ``###`` headings) in the order written."""
    sections: list[tuple[str, list[str]]] = []
    for line in CHANGELOG.splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif line.startswith("### "):
            assert sections, f"{line!r} comes before any release heading"
            sections[-1][1].append(line[4:].strip())
    return sections


def test_the_top_section_matches_the_version():
    sections = _sections()
    assert sections, "CHANGELOG.md has no release sections"
    top = sections[0][0]
    if ".dev" in jxent.__version__:
        assert top == "[Unreleased]", f"a development version {jxent.__version__} sits under {top}"
    else:
        released = [name for name, _ in sections if name.startswith(f"[{jxent.__version__}]")]
        assert released, f"version {jxent.__version__} has no section in CHANGELOG.md"
        assert re.fullmatch(
            rf"\[{re.escape(jxent.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}", released[0]
        )


def test_each_release_lists_each_kind_of_change_once():
    for name, kinds in _sections():
        assert set(kinds) <= KINDS, f"{name}: unknown kinds {set(kinds) - KINDS}"
        assert len(kinds) == len(set(kinds)), f"{name} repeats a kind of change: {kinds}"
