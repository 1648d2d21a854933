"""OPC UA information models (NodeSet2 XML) that the gateway and edge node load."""
