"""Parley's chat domain, shared by every Lambda function through one layer.

The modules keep protocol rules (`protocol`), storage (`tables`, `store`), delivery
(`sender`) and the chat rules themselves (`service`) apart, so the Lambda adapters,
the local gateway and the tests all drive the same code.
"""

PROTOCOL_VERSION = 1
