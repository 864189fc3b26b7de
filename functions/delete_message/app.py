"""Lambda entry point for the `delete_message` route: the chat logic lives in the `parley` layer."""

from parley.aws.lambda_routes import message_route

lambda_handler = message_route("delete_message")
