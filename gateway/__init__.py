"""ModelLine gateway: the Model Manager and Model Monitor OPC UA server (see DESIGN.md)."""
