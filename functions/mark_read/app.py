"""Lambda entry point for the `mark_read` route: the chat logic lives in the `parley` layer."""

from parley.lambda_adapter import message_route

lambda_handler = message_route("mark_read")
