"""Model slots: packages on disk, the DI install flow and its state."""
