"""The top of ModelLine: the ``modelline`` command line and the live demo, above the edge node and the gateway.

The layers, bottom to top: ``nodesets`` (information models and the identifiers generated from them),
``sdk`` (packages, keys, bindings, errors, the OPC UA helpers both servers share), ``edge_node`` and
``gateway`` (the two servers, which do not import each other), and this package.
"""
