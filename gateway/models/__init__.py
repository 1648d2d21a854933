"""Models in the gateway: verified packages, content-addressed on disk, one record per version."""
