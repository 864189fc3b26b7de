"""Lambda entry point for `$default`: frames that are not JSON objects or name no route."""

from parley.aws.lambda_routes import message_route

lambda_handler = message_route("$default")
