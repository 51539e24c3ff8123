"""Validated Parquet I/O: every row is checked against its pydantic record on write and on read; writes are atomic
and durable (`data_contracts.files.atomic_write`).

Given `run_root`, fields typed `RunPath` are written relative to the run folder when inside it and read back as
paths on this node (`data_contracts.paths`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence, TypeVar

import polars as pl
from pydantic import BaseModel, ValidationError

from data_contracts.errors import SchemaError
from data_contracts.files import atomic_write
from data_contracts.paths import local_path, stored_path

R = TypeVar("R", bound=BaseModel)


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"column '{loc}': {first['msg']}"


def validate_rows(rows: Iterable[dict], model: type[R], path: Path | str) -> list[R]:
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(model.model_validate(row))
        except ValidationError as e:
            raise SchemaError(f"{path}: row {i}: {_describe(e)} (schema {model.__name__})") from None
    return out


def run_path_fields(model: type[BaseModel]) -> list[str]:
    """The fields of `model` typed `RunPath`."""
    return [
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("run_relative")
    ]


def write_records(
    records: Sequence[BaseModel | dict], path: Path | str, model: type[R], run_root: Path | str | None = None
) -> Path:
    """Validate `records` against `model` and write them atomically (unique temp file, fsync, rename); with
    `run_root`, `RunPath` fields inside it are written relative to it. A model that allows extra fields writes them
    as columns after its own (the same ones in every row)."""
    path = Path(path)
    rows = [r.model_dump() if isinstance(r, BaseModel) else r for r in records]
    valid = validate_rows(rows, model, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extras = _extra_columns(valid, path)
    data = {f: [getattr(v, f) for v in valid] for f in [*model.model_fields, *extras]}
    if run_root is not None:
        for f in run_path_fields(model):
            data[f] = [stored_path(p, run_root) for p in data[f]]
    schema = _polars_schema(model) | extras
    df = pl.DataFrame(data, schema=schema) if valid else pl.DataFrame(schema=schema)
    return atomic_write(path, df.write_parquet)


def read_frame(path: Path | str, model: type[R]) -> pl.DataFrame:
    """Read a Parquet file, check that it has every column of `model` (and no other, unless the model allows extra
    fields), and validate every row."""
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: file not found (expected {model.__name__} rows)")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # corrupt file
        raise SchemaError(f"{path}: not a readable Parquet file: {e}") from None
    missing = [f for f, info in model.model_fields.items() if f not in df.columns and info.is_required()]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)} (schema {model.__name__})")
    extra = [c for c in df.columns if c not in model.model_fields]
    if extra and model.model_config.get("extra") != "allow":  # a record with extra columns validates them itself
        raise SchemaError(
            f"{path}: unexpected column(s) {', '.join(repr(c) for c in extra)} (schema {model.__name__})"
        )
    validate_rows(df.iter_rows(named=True), model, path)
    return df


def read_records(path: Path | str, model: type[R], run_root: Path | str | None = None) -> list[R]:
    """Like `read_frame`, returning pydantic records; with `run_root`, relative `RunPath` fields are joined to it."""
    rows = list(read_frame(path, model).iter_rows(named=True))
    if run_root is not None:
        for f in run_path_fields(model):
            for r in rows:
                r[f] = local_path(r[f], run_root)
    return [model.model_validate(r) for r in rows]


_PL_TYPES = {str: pl.Utf8, float: pl.Float64, int: pl.Int64, bool: pl.Boolean}


def _extra_columns(rows: Sequence[BaseModel], path: Path) -> dict[str, pl.DataType]:
    """The extra columns of records whose model allows them (e.g. TrainLogRecord's reward_<name>): every row must
    have the same ones; their type is that of the first row's values."""
    names = list((rows[0].model_extra or {}) if rows else {})
    for i, r in enumerate(rows):
        if list(r.model_extra or {}) != names:
            raise SchemaError(f"{path}: row {i} has the extra columns {list(r.model_extra or {})}, row 0 has {names}")
    return {k: _PL_TYPES[type(rows[0].model_extra[k])] for k in names}


def _polars_schema(model: type[BaseModel]) -> dict[str, pl.DataType]:
    import typing

    schema = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        origin = typing.get_origin(ann)
        if origin is list:
            schema[name] = pl.List(_PL_TYPES[args[0]])
        elif origin is typing.Literal:
            schema[name] = pl.Utf8
        elif ann in _PL_TYPES:
            schema[name] = _PL_TYPES[ann]
        elif args and args[0] in _PL_TYPES:  # Optional[X]
            schema[name] = _PL_TYPES[args[0]]
        else:
            schema[name] = pl.Utf8
    return schema
