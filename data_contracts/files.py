"""Durable file writes and content hashes, shared by every writer of stage outputs.

A file is written to a temp file with a unique name in the same folder (`.<name>.<pid>.<random>.tmp`, so two
writers never share one), flushed and fsynced, renamed over the target (atomic on POSIX), and the folder is
fsynced so the rename itself survives a crash. A reader therefore sees the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Callable, Optional

_CHUNK = 1 << 20


def temp_path(path: Path | str) -> Path:
    """A unique temp name next to `path`: `.<name>.<pid>.<8 hex>.tmp`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def temp_owner(tmp: Path | str) -> Optional[int]:
    """The pid in a `temp_path` name, or None when the name is not one."""
    parts = Path(tmp).name.split(".")
    try:
        return int(parts[-3]) if len(parts) >= 5 and parts[0] == "" and parts[-1] == "tmp" else None
    except ValueError:
        return None


def fsync_path(path: Path | str) -> None:
    """fsync a file or a folder (folders: so that a rename in it is durable; ignored where unsupported)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_durably(tmp: Path | str, path: Path | str) -> Path:
    """fsync `tmp`, rename it over `path`, fsync the folder."""
    path = Path(path)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
    return path


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` to fill a unique temp file, then `replace_durably` it over `path` (the temp file is
    removed if `write` fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        return replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = [
    "temp_path",
    "temp_owner",
    "fsync_path",
    "replace_durably",
    "atomic_write",
    "atomic_write_text",
    "sha256_file",
]
