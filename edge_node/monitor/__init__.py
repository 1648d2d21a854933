"""The Model Monitor on the edge node: recording predictions, feedback and log records in a durable queue."""
