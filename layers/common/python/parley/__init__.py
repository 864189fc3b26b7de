"""Parley's server side, shared by every Lambda function through one layer.

`parley.core` is the chat itself (protocol, value types, ports, the rules) and imports only the
standard library and pydantic, so it runs and is tested without AWS. `parley.aws` adapts it to
Lambda, DynamoDB and the `@connections` API. Dependencies point one way: aws -> core.
"""

PROTOCOL_VERSION = 1
