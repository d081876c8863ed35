"""The documents hold together: every relative link in README.md, CHANGELOG.md and docs/*.md names a
file of the repository (and, with `#anchor`, a heading of it), every docs/*.md is linked from the
README, and nothing in the repository points at files outside it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
DOCUMENTS = [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 300

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# A path out of the repository (the parent folder's files): spelled apart, so this file holds none.
_OUTSIDE = re.compile(r"\.\./" + "shared|frontend-" + "contract")
PROJECT_FILES = ("*.md", "*.txt", "*.py", "*.yml", "*.yaml", "*.json", "*.js", "*.html")
PROJECT_FOLDERS = (
    *("app.py", "chalicelib", "iot_playground", "tests", "benchmarks", "docs", "grafana"),
    *(".github", ".chalice", ".ci/run", "Makefile", "pyproject.toml", "README.md", "CHANGELOG.md"),
)


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets and parentheses are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def link_targets(text: str) -> list[str]:
    body = prose(text)
    return [*_INLINE_LINK.findall(body), *_REFERENCE.findall(body)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lower case, without punctuation, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set(_HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)  # GitHub numbers repeats
        seen[base] = seen.get(base, 0) + 1
    return found


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of `document`: a missing file, a path out of `root`,
    an anchor no heading of the target has."""
    problems = []
    for target in link_targets(document.read_text(encoding="utf-8")):
        if not target or _SCHEME.match(target):
            continue  # a web address: not ours to check here
        path_part, _, anchor = target.partition("#")
        path = (document.parent / unquote(path_part)).resolve() if path_part else document
        if not path.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not path.exists():
            problems.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and unquote(anchor) not in anchors(path.read_text("utf-8")):
            problems.append(f"{target}: no heading #{anchor} in {path.name}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    assert document.exists()
    assert broken_links(document) == []


def test_every_document_of_docs_is_linked_from_the_readme() -> None:
    linked = {(ROOT / unquote(t.partition("#")[0])).resolve() for t in link_targets(README.read_text())}
    assert sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in linked) == []


def test_the_readme_is_read_in_five_minutes() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES


def test_nothing_in_the_repository_points_outside_it() -> None:
    files: list[Path] = []
    for folder in PROJECT_FOLDERS:
        found = ROOT / folder
        files += [found] if found.is_file() else [p for glob in PROJECT_FILES for p in found.rglob(glob)]
    offenders = [
        str(p.relative_to(ROOT)) for p in files if p.is_file() and _OUTSIDE.search(p.read_text("utf-8"))
    ]
    assert offenders == []


def test_the_checker_finds_each_kind_of_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text("# API\n\n## Errors and `status`\n\n## Errors and `status`\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/api.md) [ok](docs/api.md#errors-and-status) [ok](docs/api.md#errors-and-status-1)\n"
        "[ok](#readme) ![ok](https://example.com/x.png) `[not a link](nowhere.md)`\n"
        "```\n[not a link either](nowhere.md)\n```\n"
        "[gone](docs/missing.md) [anchor](docs/api.md#nothing) [out](../elsewhere.md)\n"
        "[ref]: docs/also-missing.md\n\n# README\n"
    )
    assert broken_links(tmp_path / "README.md", tmp_path) == [
        "docs/missing.md: no such file",
        "docs/api.md#nothing: no heading #nothing in api.md",
        "../elsewhere.md: outside the repository",
        "docs/also-missing.md: no such file",
    ]
