"""Every relative link in README.md and docs/*.md resolves inside the repository, and every
`make` target and variable and every `parley dev` option they give exists.

Why: a clone holds only the repository. A link to `../shared/...` or to a file that moved
works on the machine it was written on and is dead for every reader; an `#anchor` to a
renamed heading fails silently in every Markdown viewer. Links inside code are examples,
not links, and are skipped. A command renamed in the Makefile or the CLI but not in the docs
fails for the first reader who copies it.
"""

from __future__ import annotations

import re
import subprocess
import sys
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


# ---- commands the docs give -------------------------------------------------------------------

_MAKE_COMMAND = re.compile(r"\bmake ([a-z][a-z-]*)((?:[ \t]+[A-Z][A-Z_]*=\S+)*)")
_MAKE_TARGET = re.compile(r"^([a-z][a-z-]*):", re.M)
_MAKE_VARIABLE = re.compile(r"^([A-Z][A-Z_]*) *\?=", re.M)
_TABLE_VARIABLE = re.compile(r"^\| `([A-Z][A-Z_]*)=", re.M)
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def code(text: str) -> str:
    """The fenced blocks and code spans of a Markdown text: where commands are written."""
    return "\n".join([m.group(0) for m in _FENCE.finditer(text)] + _spans(_FENCE.sub("", text)))


def make_commands(text: str) -> list[tuple[str, list[str]]]:
    """Each `make TARGET VAR=value ...` in the code of `text`, as (target, variables)."""
    return [(m.group(1), re.findall(r"([A-Z][A-Z_]*)=", m.group(2))) for m in _MAKE_COMMAND.finditer(code(text))]


def _spans(text: str) -> list[str]:
    return [m.group(0) for m in _CODE_SPAN.finditer(text)]


def parley_dev_options_named(text: str) -> set[str]:
    """The `--options` the docs give `parley dev`: on a command line, what follows `parley dev` (up
    to a comment or the next command); in prose, the code spans of a paragraph that says what
    `parley dev --help` lists."""
    prose = _FENCE.sub("", text)
    commands = [m.group(0) for m in _FENCE.finditer(text)] + _spans(prose)
    named = {option for command in commands for tail in re.findall(r"(?<!<)parley dev\b([^#;&|`\n]*)", command)
             for option in _OPTION.findall(tail)}
    for paragraph in re.split(r"\n\s*\n", prose):
        if "parley dev --help" in paragraph:
            named |= {option for span in _spans(paragraph) for option in _OPTION.findall(span)}
    return named


def test_every_make_command_in_the_docs_exists():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets, variables = set(_MAKE_TARGET.findall(makefile)), set(_MAKE_VARIABLE.findall(makefile))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    problems = []
    for doc in doc_files(REPO):
        for target, names in make_commands(doc.read_text(encoding="utf-8")):
            problems += [f"{doc.name}: make {target}: no such target"] * (target not in targets)
            problems += [f"{doc.name}: make {target} {name}=: no such variable" for name in names if name not in variables]
    honoured = readme.split("`make dev` honours:", 1)[1].split("\n\n", 2)[1]  # the table after the sentence
    problems += [f"README.md: make dev {name}=: no such variable" for name in _TABLE_VARIABLE.findall(honoured) if name not in variables]
    assert _TABLE_VARIABLE.findall(honoured), "README.md has a table of make dev's variables"
    assert problems == []


def test_every_parley_dev_option_the_docs_name_exists():
    help_text = subprocess.run([sys.executable, "-m", "parley_local.cli", "dev", "--help"], cwd=REPO,
                               capture_output=True, text=True, check=True, timeout=60).stdout
    offered = set(_OPTION.findall(help_text))
    named = set().union(*(parley_dev_options_named(doc.read_text(encoding="utf-8")) for doc in doc_files(REPO)))
    assert {"--dynamodb-data", "--allow-origins", "--parameter-overrides"} <= named
    assert sorted(named - offered) == []


def test_the_command_checks_see_a_wrong_command():
    text = ("Run `make dev FRESH=1 COLOUR=red` or `make deploy`.\n\n"
            "```bash\nmake example\nparley dev --port 3002 --turbo  # not --comment\n```\n\n"
            "`parley dev --help` lists `--quiet` and `--fast`.\n\nAbout parley dev: `sam build --use-container`.\n"
            "`py-spy record --pid <parley dev pid> --rate 200`\n")
    assert make_commands(text) == [("example", []), ("dev", ["FRESH", "COLOUR"]), ("deploy", [])]
    assert parley_dev_options_named(text) == {"--port", "--turbo", "--help", "--quiet", "--fast"}
