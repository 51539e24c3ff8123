"""Thin Prefect layer: one flow per stage plus the `tatar` flow that chains them (deployment `tatar/full`)."""
