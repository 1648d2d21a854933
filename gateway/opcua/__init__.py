"""The gateway's OPC UA side: the ModelManager address space and its methods."""
