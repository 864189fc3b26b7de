"""Lambda entry point for `$connect`: accepts the connection the authorizer let in (nothing is stored)."""

from parley.aws.connect_route import connect_route

lambda_handler = connect_route()
