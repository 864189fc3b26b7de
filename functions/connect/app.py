"""Lambda entry point for `$connect`: records the connection the authorizer let in."""

from parley.aws.lambda_routes import connect_route

lambda_handler = connect_route()
