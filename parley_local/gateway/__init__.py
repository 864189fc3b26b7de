"""A local AWS API Gateway WebSocket API for any SAM template: routes, Lambda workers, limits, `@connections`.

Nothing here knows about Parley; an application adds its own HTTP routes and start-up steps
through one `server.GatewayExtras` object.
"""
