"""Parley developer tooling: the `parley` CLI and the local API Gateway WebSocket emulator.

`gateway/` is the emulator, generic to any SAM WebSocket template; `local_aws/` runs the AWS
services the functions call. Everything Parley-specific is `parley_extras`, `tokens`,
`connection_check` and `cli`.
"""
