"""node-opcua tests: the node_opcua fixture lives in tests/conftest.py (the demo tests use it too)."""
