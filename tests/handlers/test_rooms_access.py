"""Issue 13's rules (`parley_testing.room_rules`, also run by tests/domain/test_rooms.py) through
the real Lambda functions on moto, for the wiring: the authorizer context's `rooms` reaching every
route, DynamoDB's conditional writes, the reader index and BatchGetItem as moto implements them.
Plus what only DynamoDB has: old items."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from parley_testing.room_rules import (  # noqa: F401  (collected here with the moto `world`; `chat` is a fixture)
    test_forbidden_names_the_room_and_the_action,
    test_a_read_only_member_hears_everything_and_may_say_nothing,
    test_leaving_needs_no_permission,
    test_token_mode_refuses_a_token_without_the_claim_but_not_its_dms,
    test_a_dm_belongs_to_its_two_users_whatever_the_claim,
    test_any_other_dm_shape_is_a_validation_error,
    test_no_frame_of_a_room_reaches_a_membership_without_read,
    test_the_author_edits_and_everyone_hears_it_and_history_shows_it,
    test_an_edit_retry_changes_nothing_and_tells_only_the_sender,
    test_editing_someone_elses_message_is_forbidden,
    test_edits_keep_the_length_rules,
    test_the_author_deletes_and_history_keeps_a_tombstone,
    test_deleting_twice_is_one_error_and_changes_nothing,
    test_deleting_someone_elses_message_needs_moderate,
    test_changes_to_a_message_of_another_room_or_none_are_refused,
    test_reactions_count_once_per_user_and_reach_the_room,
    test_bad_emoji_and_a_21st_emoji_are_refused,
    test_join_counts_unread_exactly_up_to_100_then_caps,
    test_get_rooms_lists_joined_and_read_rooms_newest_first_with_unread_and_pages,
    test_get_rooms_shows_edits_and_deletes_of_the_last_message_and_cuts_long_text,
    test_get_rooms_leaves_out_rooms_the_token_may_not_read,
    test_get_rooms_validates_its_page,
    chat,
    joined,
    put_messages,
)
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
