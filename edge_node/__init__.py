"""ModelLine edge node: the OPC UA inference runtime that runs next to the line (see DESIGN.md)."""
