"""Paths of files inside a run folder are stored relative to it, so that a run folder mounted at another path (on
another node, or moved) still works; paths outside it (a user's dataset root) are stored absolute, as configured.

    stored(p) = relpath(p, run_root)    when p lies inside run_root, e.g. "samples/<key>/images/iqa/x.png"
              = abspath(p)              otherwise, e.g. "/data/koniq10k/1024x768/826373.jpg"
    local(s)  = run_root / s            when s is relative, else s

Record fields typed `RunPath` (data_contracts.records) are converted by `write_records` / `read_records` when
given the run root; in memory a path is always one the current process can open.
"""

from __future__ import annotations

import os
from pathlib import Path


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def stored_path(path: str | Path, run_root: str | Path) -> str:
    """The form of `path` written to files: relative to `run_root` when inside it, else absolute."""
    for norm in (os.path.abspath, os.path.realpath):  # as written first; then with symlinks resolved on both sides
        p, root = norm(path), norm(run_root)
        if _inside(p, root):
            return Path(os.path.relpath(p, root)).as_posix()
    return os.path.abspath(path)


def local_path(stored: str | Path, run_root: str | Path) -> str:
    """Inverse of `stored_path` on this node: a relative path is joined to `run_root`."""
    return str(stored) if os.path.isabs(stored) else os.path.join(os.path.abspath(run_root), stored)


def run_root_of(stage_dir: str | Path) -> Path:
    """The run folder of a stage folder `<run root>/<stage>/<key[:16]>` (the layout of Pipeline.dir)."""
    return Path(stage_dir).parent.parent
