"""Lambda entry point for `$disconnect`: removes the connection and announces departures."""

from parley.aws.lambda_routes import disconnect_route

lambda_handler = disconnect_route()
