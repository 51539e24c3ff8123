"""Errors raised when a config or a dataset does not match its contract."""


class ConfigError(ValueError):
    """A config file has an unknown key, a wrong type or an invalid value (message names file and key)."""


class SchemaError(ValueError):
    """A Parquet file does not match its record schema (message names the file, column and row)."""


class StageNotReady(RuntimeError):
    """A stage was asked to run before the stages it reads have finished."""


class StageIncomplete(RuntimeError):
    """A stage stopped with work left (e.g. teacher rows that failed); rerunning resumes it."""


class StageLocked(RuntimeError):
    """Another run holds the stage folder (same stage, same key); the message names it (pid, host, start time)."""
