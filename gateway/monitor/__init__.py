"""The Model Monitor: collects records and feedback from edge nodes, computes quality and drift, raises alarms.

``store`` keeps prediction records, logs and feedback exactly once (``monitor.sqlite3``), ``ingest``
fetches them from each edge node after the last stored sequence, ``service`` ties both to the gateway.
The figures are pure computation over the records the gateway stores
(``sdk.monitor.records``) and the model's manifest: ``thresholds`` holds the
settings and the Ok/Warning/Alarm state rule, ``windows`` the sliding windows,
``quality``, ``drift`` and ``data_quality`` the figures, and ``figures`` puts
them together per pipeline and model version. ``export`` writes the retraining
dataset and ``prometheus`` serves /metrics.
"""
