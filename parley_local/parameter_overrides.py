"""`parley dev --parameter-overrides`: read each item, and keep only the template's parameters.

Why its own module: the two forms SAM users type (`KEY=VALUE` and `sam deploy`'s
`ParameterKey=KEY,ParameterValue=VALUE`) must be read strictly, since a misread item would run the
stack on a value nobody wrote; and an override the template does not declare is dropped as
`sam deploy` drops it (it sends CloudFormation only the template's parameters), but said aloud,
since it is usually a typo. `parley dev` keeps every override for as long as it runs: a template
edited to declare the parameter gets the value on the redeploy (`redeploy_note` says so), as the
next `sam deploy` with the same command line would.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Sequence

ACCEPTED_FORMS = "KEY=VALUE or ParameterKey=KEY,ParameterValue=VALUE"
_KEY = re.compile(r"[A-Za-z0-9]+")  # CloudFormation: a parameter's logical id is alphanumeric
_SAM_FORM = re.compile(r"ParameterKey=(?P<key>[^,]*),ParameterValue=(?P<value>.*)", re.DOTALL)


class OverrideRefused(ValueError):
    """An item that is neither accepted form; its message names the item and the forms."""


# One item of an argument: runs of anything but spaces and quotes, and quoted stretches (a double-
# quoted one may escape a quote with a backslash). As `sam deploy` splits `--parameter-overrides`.
_WORD = r"""(?:[^\s"']|"(?:[^"\\]|\\.)*"|'[^']*')+"""
_ITEM = re.compile(_WORD)
_ITEMS = re.compile(rf"\s*(?:{_WORD}(?:\s+{_WORD})*)?\s*")  # words apart: no backtracking blow-up


def _unquoted(value: str) -> str:
    """A value wrapped in matching quotes, unwrapped (`\\"` and `\\\\` unescaped inside double quotes);
    any other value as written: backslashes and inner quotes are the value's own (`C:\\dir`, JSON)."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r'\\(["\\])', r"\1", value[1:-1])
    return value


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """The overrides as a dict (a later item wins, as in `sam deploy`); the first malformed item raises.

    An argument may hold several items separated by spaces, a value with spaces in quotes
    (`"A=1 B='x y'"`), as `sam deploy --parameter-overrides` and samconfig.toml take them."""
    out: dict[str, str] = {}
    for argument in items:
        if not _ITEMS.fullmatch(argument):
            raise OverrideRefused(f"cannot read {argument!r}: a quote is not closed; expected {ACCEPTED_FORMS}")
        for item in _ITEM.findall(argument) or [argument]:
            if item.startswith("ParameterKey="):
                match = _SAM_FORM.fullmatch(item)
                key, value = (match["key"], match["value"]) if match else ("", "")
            else:
                key, sep, value = item.partition("=")
                key = key if sep else ""
            if not _KEY.fullmatch(key):
                where = "" if item == argument else f" in {argument!r}"
                raise OverrideRefused(f"cannot read {item!r}{where}: expected {ACCEPTED_FORMS} (KEY: letters and digits)")
            out[key] = _unquoted(value)
    return out


def undeclared(overrides: Iterable[str], declared: Iterable[str]) -> list[str]:
    """The override keys the template has no parameter for, in the order given."""
    known = set(declared)
    return [key for key in overrides if key not in known]


def ignored_line(unknown: Sequence[str], declared: Sequence[str], template_name: str) -> str:
    """The one warning for overrides dropped as undeclared: each with the parameter it was likely meant for."""
    guesses = {key: difflib.get_close_matches(key, declared, n=1) for key in unknown}
    named = ", ".join(f"{key} (did you mean {guess[0]}?)" if guess else key for key, guess in guesses.items())
    listed = "" if all(guesses.values()) else f"; it declares {', '.join(declared) or 'none'}"
    return (f"--parameter-overrides {named}: not a parameter of {template_name}, ignored as sam deploy "
            f"ignores it{listed}")


def redeploy_note(before: Sequence[str], after: Sequence[str], declared: Sequence[str], template_name: str) -> str:
    """What a redeploy changed in which overrides are ignored (`before` -> `after`), as a clause of its one
    line; "" when that set did not change, so an ignored override is not named again on every save."""
    if set(after) == set(before):
        return ""
    applying = [key for key in before if key not in after]
    them = "it" if len(applying) == 1 else "them"
    parts = [f"--parameter-overrides {', '.join(applying)} now applied ({template_name} declares {them})"] if applying else []
    if after:
        parts.append(f"warning: {ignored_line(after, declared, template_name)}")
    return "".join(f"; {part}" for part in parts)
