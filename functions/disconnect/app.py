"""Lambda entry point for `$disconnect`: removes the connection and announces departures."""

from parley.lambda_adapter import disconnect_route

lambda_handler = disconnect_route()
