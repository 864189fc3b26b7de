"""Route selection for MESSAGE frames, as API Gateway evaluates `RouteSelectionExpression`.

Why separate: it is the one piece of protocol logic every frame goes through;
keeping it pure makes the AWS rules easy to test: the expression
`$request.body.<path>` is evaluated against the JSON body, non-string values
are stringified, and anything not JSON / missing / unmatched goes to
`$default`. `$connect` and `$disconnect` are never selected by a body.
"""

from __future__ import annotations

import json
import re
from typing import Any, Collection

DEFAULT = "$default"
_RESERVED = ("$connect", "$disconnect")
_EXPR = re.compile(r"^\$\{?request\.body\.([^}]+)\}?$")

_MISSING = object()


class RouteSelector:
    """Compiled route selection expression plus the set of route keys that exist."""

    def __init__(self, expression: str, route_keys: Collection[str]):
        m = _EXPR.match(expression.strip())
        self.path: list[str] | None = m.group(1).split(".") if m else None
        self.static_key = None if m else expression.strip()
        self.route_keys = frozenset(route_keys)

    def evaluate(self, body: str) -> str | None:
        """The selection expression's value for `body`, or None when it cannot be evaluated."""
        if self.path is None:
            return self.static_key
        try:
            value: Any = json.loads(body)
        except (ValueError, RecursionError):
            return None
        for part in self.path:
            if not isinstance(value, dict):
                return None
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return None
        if isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def select(self, body: str) -> str | None:
        """The route key the frame goes to; None when neither a match nor `$default` exists (-> Forbidden)."""
        key = self.evaluate(body)
        if key is not None and key not in _RESERVED and key in self.route_keys:
            return key
        return DEFAULT if DEFAULT in self.route_keys else None
