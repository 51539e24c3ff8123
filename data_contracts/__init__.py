"""Contracts shared by the stages: configs, Parquet record schemas, stage manifests.

Stages exchange data only as Parquet files described here plus a `manifest.json`.
"""

from data_contracts.errors import ConfigError, SchemaError, StageIncomplete, StageLocked, StageNotReady
from data_contracts.manifest import StageContext, StageManifest, StageOutputs, StageResult
from data_contracts.parquet_io import read_records, write_records

__all__ = [
    "ConfigError",
    "SchemaError",
    "StageIncomplete",
    "StageLocked",
    "StageNotReady",
    "StageManifest",
    "StageResult",
    "StageOutputs",
    "StageContext",
    "read_records",
    "write_records",
]
