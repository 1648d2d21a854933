"""Benchmarks: ``python -m bench`` runs the suite (see bench/suite.py); each figure has a floor from the same run."""
