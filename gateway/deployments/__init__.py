"""Deployments: model versions rolled out to edge devices in waves, through the DI software update."""
