"""Edge devices as the gateway sees them: one kept-open OPC UA session each."""
