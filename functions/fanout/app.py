"""Lambda entry point for the fan-out function: one slice of a large room's broadcast per invocation."""

from parley.aws.lambda_routes import fanout_route

lambda_handler = fanout_route()
