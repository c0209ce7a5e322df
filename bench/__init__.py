"""Benchmarks: `make bench` (root). See bench/run.py."""
