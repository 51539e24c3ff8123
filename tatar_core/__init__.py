"""tatar: the TATAR pipeline library (no Prefect imports here)."""

__version__ = "0.1.0"
