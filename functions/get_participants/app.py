"""Lambda entry point for the `get_participants` route: the chat logic lives in the `parley` layer."""

from parley.aws.lambda_routes import message_route

lambda_handler = message_route("get_participants")
