"""Test support shared by tests/ and benchmarks/: fakes, oracles and process wrappers."""
