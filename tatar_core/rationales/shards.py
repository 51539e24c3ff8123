"""Append-only Parquet shards: long stages write rows in small atomic files and resume from them.

A shard is `<dir>/shard-<ns timestamp>-<pid>-<seq>.parquet`, written with `write_records` (unique temp file, fsync,
rename), so a hard kill leaves either a whole shard or none (at most a hidden `.shard-….<pid>.<random>.tmp`,
ignored and removed once its writer is gone).
Names sort in write order, so "keep the first" when deduplicating means "keep the oldest row".
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

from pydantic import BaseModel

from data_contracts.errors import SchemaError
from data_contracts.files import temp_owner
from data_contracts.parquet_io import read_records, write_records

R = TypeVar("R", bound=BaseModel)
SHARD_GLOB = "shard-*.parquet"
log = logging.getLogger(__name__)


class ShardWriter:
    """Writes numbered shards of `model` rows into `shard_dir` (created on first use); `run_root` as in
    `write_records`."""

    def __init__(self, shard_dir: Path | str, model: type[BaseModel], run_root: Path | str | None = None):
        self.dir = Path(shard_dir)
        self.model = model
        self.run_root = run_root
        self.run_tag = f"{time.time_ns():020d}-{os.getpid()}"
        self.n_shards = 0
        self.n_rows = 0

    def write(self, rows: Sequence[BaseModel]) -> Path | None:
        """Write `rows` as one new shard (atomic); nothing for an empty list."""
        if not rows:
            return None
        path = self.dir / f"shard-{self.run_tag}-{self.n_shards:06d}.parquet"
        write_records(list(rows), path, self.model, run_root=self.run_root)
        self.n_shards += 1
        self.n_rows += len(rows)
        return path


def remove_stale_tmp(shard_dir: Path | str) -> int:
    """Delete half-written shard temp files (`.shard-….<pid>.<random>.tmp`) whose writing process is gone; returns
    the number removed."""
    d = Path(shard_dir)
    n = 0
    for p in d.glob(".shard-*.tmp") if d.is_dir() else []:
        pid = temp_owner(p)
        try:
            if pid is not None:
                os.kill(pid, 0)  # still running: leave its file alone
                if pid != os.getpid():
                    continue
        except ProcessLookupError:
            pass
        except PermissionError:  # exists, owned by someone else
            continue
        p.unlink(missing_ok=True)
        n += 1
    return n


def shard_paths(shard_dir: Path | str) -> list[Path]:
    """The finished shards in `shard_dir`, oldest first (empty if the folder does not exist)."""
    d = Path(shard_dir)
    return sorted(d.glob(SHARD_GLOB)) if d.is_dir() else []


def read_shards(shard_dir: Path | str, model: type[R], run_root: Path | str | None = None) -> list[R]:
    """All rows of all shards, oldest first. An unreadable shard is renamed `*.corrupt` and skipped (its rows
    are simply redone), with a warning naming the file."""
    rows: list[R] = []
    for p in shard_paths(shard_dir):
        try:
            rows.extend(read_records(p, model, run_root=run_root))
        except SchemaError as e:
            log.warning("skipping unreadable shard %s: %s", p, e)
            p.replace(p.with_suffix(".corrupt"))
    return rows


def dedupe(rows: Iterable[R], key: Callable[[R], Hashable]) -> list[R]:
    """Keep the first row for each key, in input order."""
    seen: set = set()
    out = []
    for r in rows:
        k = key(r)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out
