"""Every relative link in README.md and docs/*.md resolves inside the repository.

Why: a clone holds only the repository. A link to `../shared/...` or to a file that moved
works on the machine it was written on and is dead for every reader; an `#anchor` to a
renamed heading fails silently in every Markdown viewer. Links inside code are examples,
not links, and are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=[\"']([^\"']+)[\"']", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def doc_files(root: Path) -> list[Path]:
    return sorted([root / "README.md", *(root / "docs").glob("*.md")])


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    prose = _prose(text)
    found = [m.group(1) for pattern in (_INLINE_LINK, _REFERENCE, _HTML_LINK) for m in pattern.finditer(prose)]
    return [target for target in found if not _SCHEME.match(target) and not target.startswith("//")]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    plain = re.sub(r"<[^>]+>", "", plain).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for match in _HEADING.finditer(_FENCE.sub("", markdown.read_text(encoding="utf-8"))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(doc: Path, root: Path) -> list[str]:
    """What is wrong with each relative link in `doc`, one line per bad link."""
    problems = []
    for target in links(doc.read_text(encoding="utf-8")):
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        resolved = (doc.parent / path_part).resolve() if path_part else doc.resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{target}: points outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{target}: {resolved.relative_to(root.resolve())} does not exist")
            continue
        if anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root.resolve())}")
    return problems


@pytest.mark.parametrize("doc", doc_files(REPO), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(doc):
    assert broken_links(doc, REPO) == []


def test_the_docs_have_links_to_check():
    assert "docs/PROTOCOL.md" in links((REPO / "README.md").read_text(encoding="utf-8"))


def test_the_checker_catches_what_a_clone_would_miss(tmp_path):
    """The check itself can fail: outside targets, missing files and dead anchors are reported."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "GUIDE.md").write_text("# The guide\n\n## Step one: set-up\n\n## Step one: set-up\n")
    (tmp_path / "README.md").write_text(
        "[fine](docs/GUIDE.md) [anchor](docs/GUIDE.md#step-one-set-up) [second](docs/GUIDE.md#step-one-set-up-1)\n"
        "[self](#readme) [web](https://example.com/x.md) `[code](nowhere.md)`\n"
        "```\n[also code](nowhere.md)\n```\n"
        "[shared](../shared/PROTOCOL.md) [gone](docs/MISSING.md) [dead](docs/GUIDE.md#step-two)\n"
        "[ref]: docs/ALSO_MISSING.md\n\n# Readme\n"
    )
    assert broken_links(tmp_path / "README.md", tmp_path) == [
        "../shared/PROTOCOL.md: points outside the repository",
        "docs/MISSING.md: docs/MISSING.md does not exist",
        "docs/GUIDE.md#step-two: no heading #step-two in docs/GUIDE.md",
        "docs/ALSO_MISSING.md: docs/ALSO_MISSING.md does not exist",
    ]
