"""The paper's controlled probes as a grid of cached pipeline runs (configs/probes.yaml, docs/probes.md)."""
