"""The Model Monitor: collects records and feedback from edge nodes, computes quality and drift, raises alarms."""
