"""The Model Monitor's figures: model quality from ground truth, input and output drift, data quality.

Pure computation over the records the gateway stores (``sdk.monitor.records``)
and the model's manifest: no OPC UA, no database. ``thresholds`` holds the
settings and the Ok/Warning/Alarm state rule, ``windows`` the sliding windows,
``quality``, ``drift`` and ``data_quality`` the figures, and ``figures`` puts
them together per pipeline and model version.
"""
