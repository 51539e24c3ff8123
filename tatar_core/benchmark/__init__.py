"""Benchmarks: scoring every set, SRCC/PLCC metrics, the report; the benchmark stage."""
