"""`parley dev --parameter-overrides`: read each item, and keep only the template's parameters.

Why its own module: the two forms SAM users type (`KEY=VALUE` and `sam deploy`'s
`ParameterKey=KEY,ParameterValue=VALUE`) must be read strictly, since a misread item would run the
stack on a value nobody wrote; and an override the template does not declare is dropped as
`sam deploy` drops it (it sends CloudFormation only the template's parameters), but said aloud,
since it is usually a typo.
"""

from __future__ import annotations

import difflib
import re
import shlex
from typing import Iterable, Sequence

ACCEPTED_FORMS = "KEY=VALUE or ParameterKey=KEY,ParameterValue=VALUE"
_KEY = re.compile(r"[A-Za-z0-9]+")  # CloudFormation: a parameter's logical id is alphanumeric
_SAM_FORM = re.compile(r"ParameterKey=(?P<key>[^,]*),ParameterValue=(?P<value>.*)", re.DOTALL)


class OverrideRefused(ValueError):
    """An item that is neither accepted form; its message names the item and the forms."""


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """The overrides as a dict (a later item wins, as in `sam deploy`); the first malformed item raises.

    An argument may hold several items separated by spaces, with shell quotes around a value that
    has spaces (`"A=1 B='x y'"`), as `sam deploy --parameter-overrides` and samconfig.toml take them."""
    out: dict[str, str] = {}
    for argument in items:
        try:
            words = shlex.split(argument)
        except ValueError as exc:  # an unclosed quote
            raise OverrideRefused(f"cannot read {argument!r}: {exc}; expected {ACCEPTED_FORMS}") from None
        for item in words or [argument]:
            if item.startswith("ParameterKey="):
                match = _SAM_FORM.fullmatch(item)
                key, value = (match["key"], match["value"]) if match else ("", "")
            else:
                key, sep, value = item.partition("=")
                key = key if sep else ""
            if not _KEY.fullmatch(key):
                where = "" if item == argument else f" in {argument!r}"
                raise OverrideRefused(f"cannot read {item!r}{where}: expected {ACCEPTED_FORMS} (KEY: letters and digits)")
            out[key] = value
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
