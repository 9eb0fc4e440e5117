"""Benchmarks (run as scripts); ``flux_flops`` is also imported by the tests."""
