"""One lock per stage folder, held for the whole stage, shared by every way of running it (`tatar run`, Prefect
deployment runs, several machines on one shared run folder where the file system supports `flock`).

The lock is `<stage>/<key16>.lock` (a `filelock.FileLock`: an OS lock on an open file, released by the kernel when the
holding process dies, so a killed run never leaves a stale lock). Next to it, `<key16>.lock.json` names the run that
holds it: pid, host, start time, command line and, in a Prefect flow run, its id. A second run of the same key waits
(`locking.wait: true`, the default; `locking.timeout_s` bounds it) or raises `StageLocked` naming the holder at once.
Both files sit beside the stage folder, not in it, so they never count as outputs.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

from filelock import FileLock, Timeout

from data_contracts.config import LockingConfig
from data_contracts.errors import StageLocked
from data_contracts.files import atomic_write_text

PREFECT_RUN_ENV = "PREFECT__FLOW_RUN_ID"  # set by Prefect in the process of a flow run


def lock_path(stage_dir: Path) -> Path:
    return stage_dir.with_name(stage_dir.name + ".lock")


def holder_path(stage_dir: Path) -> Path:
    return stage_dir.with_name(stage_dir.name + ".lock.json")


def this_run() -> dict:
    """Who we are, as written into the holder file."""
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }
    if os.environ.get(PREFECT_RUN_ENV):
        info["prefect_flow_run"] = os.environ[PREFECT_RUN_ENV]
    return info


def read_holder(stage_dir: Path) -> Optional[dict]:
    try:
        return json.loads(holder_path(stage_dir).read_text())
    except (OSError, ValueError):
        return None


def describe_holder(holder: Optional[dict]) -> str:
    if not holder:
        return "another run (it has not written its name yet)"
    text = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started_at')}"
    if holder.get("prefect_flow_run"):
        text += f", Prefect flow run {holder['prefect_flow_run']}"
    return text + (f" ({holder['command']})" if holder.get("command") else "")


@contextmanager
def stage_lock(
    stage_dir: Path,
    stage: str,
    cfg: LockingConfig = LockingConfig(),
    wait: Optional[bool] = None,
    log: Callable[[str], None] = print,
) -> Iterator[None]:
    """Hold the lock of `stage_dir` for the body; `wait` overrides `cfg.wait`. Raises StageLocked naming the holder
    when it is held and we do not wait (or waited `cfg.timeout_s` in vain)."""
    stage_dir = Path(stage_dir)
    stage_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(stage_dir)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = describe_holder(read_holder(stage_dir))
        if not (cfg.wait if wait is None else wait):
            raise StageLocked(
                f"stage '{stage}' ({stage_dir}) is being run by {who}; wait for it, or set locking.wait: true to wait"
            ) from None
        log(f"[{stage}] waiting: {stage_dir} is being run by {who}")
        try:
            lock.acquire(timeout=-1 if cfg.timeout_s is None else cfg.timeout_s)
        except Timeout:
            raise StageLocked(
                f"stage '{stage}' ({stage_dir}) is still being run by {who} after locking.timeout_s={cfg.timeout_s} s"
            ) from None
    try:
        atomic_write_text(holder_path(stage_dir), json.dumps(this_run()))
        yield
    finally:
        holder_path(stage_dir).unlink(missing_ok=True)
        lock.release()


__all__ = ["stage_lock", "lock_path", "holder_path", "read_holder", "describe_holder", "this_run"]
