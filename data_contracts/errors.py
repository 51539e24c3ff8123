"""Errors raised when a config or a dataset does not match its contract."""


class ConfigError(ValueError):
    """A config file has an unknown key, a wrong type or an invalid value (message names file and key)."""


class SchemaError(ValueError):
    """A Parquet file does not match its record schema (message names the file, column and row)."""
