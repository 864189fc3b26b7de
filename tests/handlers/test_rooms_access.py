"""Issue 13's rules (`parley_testing.room_rules`, also run by tests/domain/test_rooms.py) through
the real Lambda functions on moto, for the wiring: the authorizer context's `rooms` reaching every
route, DynamoDB's conditional writes, the reader index and BatchGetItem as moto implements them.
Plus what only DynamoDB has: old items."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from parley_testing.room_rules import *  # noqa: F401,F403  (every rule test and the `chat` fixture, collected here with the moto `world`)
from parley_testing.room_rules import joined, put_messages
from parley_testing.functions import LambdaContext, load_function


def test_a_message_stored_before_reactions_existed_can_be_reacted_to(world):
    ann = joined(world, "ann", "old")
    [legacy] = put_messages(world, "old", 1)
    boto3.client("dynamodb").update_item(
        TableName="test-MessagesTable", Key={"roomId": {"S": "old"}, "messageId": {"S": legacy}}, UpdateExpression="REMOVE reactions"
    )
    assert ann.send("react", {"roomId": "old", "messageId": legacy, "emoji": "👍"}) is None
    assert ann.take()[0]["data"]["counts"] == {"👍": 1}


def test_the_sample_event_drives_the_new_route(world):
    """events/get_rooms.json is what `sam local invoke -e` sends; its `rooms` context must decode."""
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "get_rooms.json").read_text())
    response = load_function("get_rooms").lambda_handler(event, LambdaContext())
    assert json.loads(response["body"]) == {"type": "rooms_list", "data": {"rooms": [], "nextCursor": None}}
