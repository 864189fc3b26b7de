"""The chat without I/O: protocol, value types, ports and the rules.

Imports only the standard library and pydantic (`tests/domain/test_core_imports.py` holds it to
that), so every rule is exercised in memory and the adapters in `parley.aws` are swappable.
"""
