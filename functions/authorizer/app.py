"""Lambda entry point for the `$connect` REQUEST authorizer: verifies the JWT and the Origin."""

from parley.aws.authorizer_route import authorizer_route

lambda_handler = authorizer_route()
