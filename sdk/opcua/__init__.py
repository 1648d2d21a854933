"""OPC UA server parts both ModelLine servers share: file transfer, session context, error mapping."""
