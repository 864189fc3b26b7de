"""Lambda entry point for the `$connect` REQUEST authorizer: verifies the JWT and the Origin."""

from parley.authorizer import authorizer_route

lambda_handler = authorizer_route()
