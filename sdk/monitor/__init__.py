"""The Model Monitor's data, shared by the edge node that records it and the gateway that collects it."""
