"""The gateway's state: a small store interface and its embedded SQLite implementation."""
