"""`ItemsJSONParser` reads what botocore's own `JSONParser` reads, for every response of the outputs it
reads directly: responses generated from botocore's DynamoDB model (items of every attribute type, blobs,
nulls, fields and types this botocore does not know), errors, and bodies that are not JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

import botocore.session
import pytest
from botocore.parsers import JSONParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.aws.dynamodb_responses import ITEM_OUTPUTS, ItemsJSONParser, read_items_directly

MODEL = botocore.session.get_session().get_service_model("dynamodb")
OUTPUTS = {name: MODEL.shape_for(name) for name in sorted(ITEM_OUTPUTS)}
HEADERS = {"x-amzn-requestid": "REQ123", "x-amz-crc32": "1", "content-type": "application/x-amz-json-1.0"}


_ODD_VALUES = st.sampled_from([{"X": "1"}, {"S": "a", "__type": "x"}, {}, {"S": "a", "N": "1"}, {"S": None}, {"M": None}])


def _values(shape: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """JSON values as DynamoDB sends them for `shape` (the wire form: blobs as base64 text), now and then
    with a field or an attribute type the model does not know, as a newer DynamoDB could send."""
    kind = shape.type_name
    if kind == "structure":
        members = {name: member for name, member in shape.members.items() if depth < 3 or member.type_name not in ("map", "list")}
        if shape.is_tagged_union:  # an AttributeValue: exactly one member set
            known = st.one_of(*(st.builds(lambda v, n=name: {n: v}, _values(m, depth + 1)) for name, m in members.items()))
            return st.one_of(known, known, known, _ODD_VALUES)
        optional = {name: _values(m, depth + 1) for name, m in members.items()}
        optional["NotInTheModel"] = st.integers(0, 9)
        return st.fixed_dictionaries({}, optional=optional)
    if kind == "list":
        return st.lists(_values(shape.member, depth + 1), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=4), _values(shape.value, depth + 1), max_size=3)
    if kind == "blob":
        return st.binary(max_size=6).map(lambda raw: base64.b64encode(raw).decode())
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "long"):
        return st.integers(-(2**53), 2**53)
    if kind in ("double", "float"):
        return st.floats(allow_nan=False, allow_infinity=False)
    assert kind == "string", f"{shape.name}: {kind} is not a type the direct read was checked for"
    return st.text(max_size=8)


def _with_nulls(value: Any, draw: Any) -> Any:
    """Some of the document's values replaced by JSON null (which botocore's walk leaves out)."""
    if isinstance(value, dict):
        return {k: None if draw(st.integers(0, 9)) == 0 else _with_nulls(v, draw) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_nulls(v, draw) for v in value]
    return value


@st.composite
def _responses(draw: Any) -> tuple[Any, bytes]:
    name = draw(st.sampled_from(sorted(OUTPUTS)))
    document = draw(_values(OUTPUTS[name]))
    if draw(st.integers(0, 4)) == 0:
        document = _with_nulls(document, draw)
    return OUTPUTS[name], json.dumps(document, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))).encode()


def _outcome(parser: Any, shape: Any, body: bytes, status: int = 200) -> Any:
    """What the parser returns, or the type of what it raises (botocore refuses some malformed items)."""
    try:
        return parser.parse({"status_code": status, "headers": dict(HEADERS), "body": body}, shape)
    except Exception as error:  # noqa: BLE001 - what botocore raises is part of what must match
        return type(error)


def _both(shape: Any, body: bytes, status: int = 200) -> tuple[Any, Any]:
    def response() -> dict[str, Any]:
        return {"status_code": status, "headers": dict(HEADERS), "body": body}

    return JSONParser().parse(response(), shape), ItemsJSONParser().parse(response(), shape)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_responses())
def test_every_generated_response_reads_as_botocore_reads_it(generated: tuple[Any, bytes]):
    shape, body = generated
    direct, walked = _outcome(ItemsJSONParser(), shape, body), _outcome(JSONParser(), shape, body)
    assert direct == walked
    if isinstance(walked, dict):
        assert list(direct) == list(walked)  # in the same order, too


def test_a_room_page_is_read_without_the_walk_and_as_the_walk_reads_it():
    items = [{"connectionId": {"S": f"c{i}"}, "userId": {"S": f"u{i}"}, "name": {"S": "Ann é"}, "joinedAt": {"N": str(i)},
              "tags": {"SS": ["a"]}, "flags": {"M": {"on": {"BOOL": True}, "none": {"NULL": True}, "l": {"L": [{"N": "1"}]}}}}
             for i in range(50)]
    body = json.dumps({"Items": items, "Count": 50, "ScannedCount": 50, "LastEvaluatedKey": {"roomId": {"S": "r"}},
                       "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.5}}).encode()
    parser, walked_shapes = ItemsJSONParser(), []
    walk = parser._parse_shape
    parser._parse_shape = lambda shape, value: walked_shapes.append(shape.name) or walk(shape, value)
    direct = parser.parse({"status_code": 200, "headers": dict(HEADERS), "body": body}, OUTPUTS["QueryOutput"])
    walked, _ = _both(OUTPUTS["QueryOutput"], body)
    assert direct == walked and direct["Items"][0]["name"] == {"S": "Ann é"}
    assert "ItemList" not in walked_shapes and "AttributeValue" not in walked_shapes  # the items: not walked
    assert "ConsumedCapacity" in walked_shapes  # the small members are


ODD = [{"X": "1"}, {"S": "a", "__type": "x"}, {}, {"S": "a", "N": "1"}, {"S": None}, {"M": None}, {"L": None}, {"L": [None]},
       {"SS": [None]}, {"B": "AA=="}, {"BS": ["AA=="]}, None, "S", ["S"]]


@pytest.mark.parametrize("odd", ODD, ids=[json.dumps(v) for v in ODD])
@pytest.mark.parametrize("where", ["item", "in a map", "in a list", "in a page of items"])
def test_an_attribute_value_the_walk_would_change_is_read_by_the_walk(odd: Any, where: str):
    value = {"item": odd, "in a map": {"M": {"k": odd}}, "in a list": {"L": [{"S": "a"}, odd]}, "in a page of items": odd}[where]
    if where == "in a page of items":
        shape, document = OUTPUTS["QueryOutput"], {"Items": [{"a": {"S": "a"}}, {"b": value}], "Count": 2}
    else:
        shape, document = OUTPUTS["GetItemOutput"], {"Item": {"a": {"N": "1"}, "b": value}}
    body = json.dumps(document).encode()
    assert _outcome(ItemsJSONParser(), shape, body) == _outcome(JSONParser(), shape, body)


def test_a_blob_is_decoded_to_bytes_as_botocore_decodes_it():
    body = json.dumps({"Item": {"k": {"B": base64.b64encode(b"\x00\xff").decode()}, "s": {"BS": [base64.b64encode(b"x").decode()]}}}).encode()
    walked, direct = _both(OUTPUTS["GetItemOutput"], body)
    assert direct == walked and direct["Item"]["k"] == {"B": b"\x00\xff"} and direct["Item"]["s"] == {"BS": [b"x"]}


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"{}"])
def test_bodies_that_are_not_an_object_read_as_botocore_reads_them(body: bytes):
    shape = OUTPUTS["QueryOutput"]
    assert _outcome(ItemsJSONParser(), shape, body) == _outcome(JSONParser(), shape, body)


def test_an_error_reads_as_botocore_reads_it():
    body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                       "message": "The conditional request failed", "Item": {"k": {"S": "v"}}}).encode()
    walked, direct = _both(OUTPUTS["PutItemOutput"], body, status=400)
    assert direct == walked and direct["Error"]["Code"] == "ConditionalCheckFailedException"


def test_the_outputs_read_directly_hold_no_type_the_direct_read_would_get_wrong():
    """No timestamp, no member whose wire name differs, and blobs only as an AttributeValue's B and BS
    (which the body check sends through the walk): a botocore model that changes this fails here."""
    found: list[str] = []

    def visit(shape: Any, path: str, seen: set[str]) -> None:
        if shape.name in seen:
            return
        seen = seen | {shape.name}
        if shape.type_name == "timestamp" or (shape.type_name == "blob" and not path.endswith((".B", ".BS[]"))):
            found.append(f"{path}: {shape.type_name}")
        if shape.type_name == "structure":
            for name, member in shape.members.items():
                if member.serialization.get("name", name) != name:
                    found.append(f"{path}.{name}: wire name {member.serialization['name']}")
                visit(member, f"{path}.{name}", seen)
        elif shape.type_name == "list":
            visit(shape.member, f"{path}[]", seen)
        elif shape.type_name == "map":
            visit(shape.value, f"{path}{{}}", seen)

    for name, shape in OUTPUTS.items():
        visit(shape, name, set())
    assert not found


def test_a_client_given_the_direct_read_keeps_its_session_defaults_and_other_protocols():
    client = botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    assert read_items_directly(read_items_directly(client)) is client  # twice: one wrapper
    factory = client._endpoint._response_parser_factory
    assert type(factory.create_parser("json")) is ItemsJSONParser
    assert type(factory._inner) is not type(factory)
    assert type(factory.create_parser("rest-json")).__name__ == "RestJSONParser"


def test_every_models_client_reads_items_directly_whichever_call_builds_it():
    from parley.aws import tables

    models = [m for m in vars(tables).values()
              if isinstance(m, type) and issubclass(m, tables.Model) and getattr(getattr(m, "Meta", None), "table_name", None)]
    assert len(models) >= 8, models
    saved = {m: m.__dict__.get("_connection") for m in models}
    try:
        for model in models:
            model._connection = None  # as in a fresh environment: the model's first call builds its client
            client = model._get_connection().connection.client
            assert type(client._endpoint._response_parser_factory.create_parser("json")) is ItemsJSONParser, model
    finally:
        for model, connection in saved.items():
            model._connection = connection
