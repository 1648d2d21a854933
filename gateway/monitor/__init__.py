"""The Model Monitor: prediction records, logs and feedback collected from edge nodes, stored exactly once."""
