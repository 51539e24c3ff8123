"""Contracts shared by the stages: configs, Parquet record schemas, stage manifests.

Stages exchange data only as Parquet files described here plus a `manifest.json`.
"""
from data_contracts.errors import ConfigError, SchemaError
from data_contracts.manifest import StageManifest
from data_contracts.parquet_io import read_records, write_records

__all__ = ["ConfigError", "SchemaError", "StageManifest", "read_records", "write_records"]
