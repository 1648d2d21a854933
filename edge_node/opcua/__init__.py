"""The edge node's OPC UA side: its address space, the DI software update binding, input and output tags."""
