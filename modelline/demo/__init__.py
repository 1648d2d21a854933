"""The live demo: a simulated line, a gateway and two edge nodes, all on loopback."""
