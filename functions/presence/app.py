"""Lambda entry point for the presence function: coalesced presence_update frames from the memberships stream."""

from parley.aws.lambda_routes import presence_route

lambda_handler = presence_route()
