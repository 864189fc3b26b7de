"""DynamoDB's item-bearing answers read with one `json.loads`, instead of botocore's walk of every value.

Why: botocore reads a JSON response by walking its output shape, and in DynamoDB every attribute of
every item is a structure of its own (`{"S": ...}`). Reading a room of 1,000 members (five attributes
each) cost ~12 ms of a ~19 ms Query in that walk: the fan-out list of every message to a large room,
paid at the function's CPU share. For the outputs in `ITEM_OUTPUTS` the walk returns what `json.loads`
returns, keys outside the shape left out, except where a value is a blob (`B`, `BS`: base64 text that
the walk decodes to bytes) or JSON `null` (which the walk drops). So a body holding neither is read
directly; any other body, any other operation and every error go through botocore as before.
tests/aws/test_dynamodb_responses.py compares both readers on generated responses of each output.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.parsers import JSONParser, ResponseParserFactory

# The outputs read directly: those of the item operations the store makes (`dynamodb_store`).
ITEM_OUTPUTS = frozenset({"QueryOutput", "GetItemOutput", "PutItemOutput", "UpdateItemOutput", "DeleteItemOutput"})

# Tokens whose presence sends a body through botocore's walk: a blob's key (`"B"`, `"BS"`; our
# tables hold none) or a `null` anywhere (a string containing them only costs the slower read).
_WALK_NEEDED = (b'"B"', b'"BS"', b"null")


class ItemsJSONParser(JSONParser):
    """botocore's reader for the `json` protocol, reading `ITEM_OUTPUTS` without the walk when it can."""

    def _handle_json_body(self, raw_body: bytes, shape: Any) -> Any:
        if shape is not None and shape.name in ITEM_OUTPUTS and raw_body and not any(t in raw_body for t in _WALK_NEEDED):
            try:
                parsed = json.loads(raw_body.decode(self.DEFAULT_ENCODING))
            except ValueError:  # not JSON: botocore's own answer to that
                parsed = None
            if isinstance(parsed, dict):
                members = shape.members
                return {key: value for key, value in parsed.items() if key in members}
        return super()._handle_json_body(raw_body, shape)


class _ItemsParserFactory(ResponseParserFactory):
    """The client's own factory (with any defaults its session set), its `json` parsers reading items directly."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner

    def create_parser(self, protocol_name: str) -> Any:
        parser = self._inner.create_parser(protocol_name)
        if type(parser) is JSONParser:
            parser.__class__ = ItemsJSONParser  # a subclass with no state of its own: the same parser, one method changed
        return parser


def read_items_directly(client: Any) -> Any:
    """Give a botocore DynamoDB client `ItemsJSONParser` (once; idempotent). botocore has no public
    setting for a client's response parser: its endpoint holds the factory it asks on every response."""
    endpoint = client._endpoint
    factory = endpoint._response_parser_factory
    if not isinstance(factory, _ItemsParserFactory):
        endpoint._response_parser_factory = _ItemsParserFactory(factory)
    return client
