"""Parley developer tooling: the `parley` CLI and the local API Gateway WebSocket emulator.

The gateway core (template, events, routing, lambda_runtime, connections_api,
server, dynamodb_local) is generic to any SAM WebSocket template; everything
Parley-specific lives in `parley_dev` and `cli`.
"""
