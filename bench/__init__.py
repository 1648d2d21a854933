"""Benchmarks: run from the repository root as python -m bench.<name>; each prints a same-run baseline."""
