"""The model package: manifest, signature, safe archive, build and verify."""
