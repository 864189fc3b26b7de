"""DynamoDB's items read with one `json.loads` and a check, instead of botocore's walk of every value.

Why: botocore reads a JSON response by walking its output shape, and in DynamoDB every attribute of
every item is a structure of its own (`{"S": ...}`). Reading a room of 1,000 members (five attributes
each) spent ~2/3 of the Query's CPU in that walk: the fan-out list of every message to a large room,
paid at the function's CPU share. The walk hands an item back as it came unless some value is not
plain: a blob (`B`, `BS`: base64 text it decodes to bytes), a JSON null, an unknown type or more than
one (which it drops, flags or refuses). So the items of the outputs in `ITEM_OUTPUTS` are checked,
which is far cheaper than the walk, and kept as `json.loads` made them when every value is plain; the
other members (`ConsumedCapacity`, `Count`, ...) are small and go through botocore's walk. Anything
else (an item that is not plain, another operation, an error) is read by botocore as before.
tests/handlers/test_dynamodb_responses.py compares both readers on responses generated from the model.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.parsers import JSONParser, ResponseParserFactory

# The outputs whose items are read directly: those of the item operations the store makes.
ITEM_OUTPUTS = frozenset({"QueryOutput", "GetItemOutput", "PutItemOutput", "UpdateItemOutput", "DeleteItemOutput"})
# Their members that hold items (lists or maps of AttributeValue maps, as the model names their shapes).
ITEM_SHAPES = frozenset({"ItemList", "AttributeMap", "Key"})
# An AttributeValue's types that botocore's walk returns unchanged (B and BS it decodes from base64).
_PLAIN = frozenset({"S", "N", "SS", "NS", "NULL", "BOOL"})


def _plain_value(value: Any) -> bool:
    """One AttributeValue that the walk would return as it is."""
    if type(value) is not dict or len(value) != 1:
        return False
    for kind, inner in value.items():
        if kind in _PLAIN:
            return inner is not None
        if kind == "M":
            return _plain_item(inner)
        if kind == "L":
            return type(inner) is list and all(_plain_value(v) for v in inner)
    return False


def _plain_item(item: Any) -> bool:
    return type(item) is dict and all(_plain_value(v) for v in item.values())


def _plain_items(value: Any, shape_name: str) -> bool:
    if shape_name == "ItemList":
        return type(value) is list and all(_plain_item(item) for item in value)
    return _plain_item(value)


class ItemsJSONParser(JSONParser):
    """botocore's reader for the `json` protocol, reading `ITEM_OUTPUTS`' plain items without the walk."""

    def _handle_json_body(self, raw_body: bytes, shape: Any) -> Any:
        if shape is not None and shape.name in ITEM_OUTPUTS and raw_body:
            try:
                parsed = json.loads(raw_body.decode(self.DEFAULT_ENCODING))
            except ValueError:  # not JSON: botocore's own answer to that
                parsed = None
            if type(parsed) is dict:
                out: dict[str, Any] = {}
                for name, member in shape.members.items():  # the model's order, as the walk builds it
                    value = parsed.get(name)
                    if value is None:
                        continue
                    if member.name in ITEM_SHAPES:
                        if not _plain_items(value, member.name):
                            break
                        out[name] = value
                    else:
                        out[name] = self._parse_shape(member, value)
                else:
                    return out
        return super()._handle_json_body(raw_body, shape)


class _ItemsParserFactory(ResponseParserFactory):
    """The client's own factory (with any defaults its session set), its `json` parsers reading items directly."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner

    def set_parser_defaults(self, **kwargs: Any) -> None:
        self._inner.set_parser_defaults(**kwargs)

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
