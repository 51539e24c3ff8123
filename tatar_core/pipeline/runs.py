"""The runs under a folder (`tatar runs`): every stage folder with its key, status, time and headline numbers.

A stage folder `<runs>/<run>/<stage>/<key>/` is
    finished     it holds manifest.json;
    failed       its status.json says failed (the error is shown), or says running but the process is gone
                 (same host, pid not alive: killed);
    in progress  its status.json says running and the process is alive (or on another host), with the last progress;
    incomplete   neither file (e.g. written before status files existed, or removed by hand).
status.json is written by `StatusWriter` (the runner): at the start, with the progress at most every
`StatusWriter.every_s` seconds, on failure; removed when the manifest is written.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from data_contracts import StageManifest
from data_contracts.config import STAGES
from data_contracts.manifest import MANIFEST_NAME, ProgressFn
from tatar_core.pipeline.describe import headline
from tatar_core.progress import format_duration

STATUS_NAME = "status.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StatusWriter:
    """Keeps `<stage folder>/status.json` up to date while a stage runs (thread-safe, atomic writes)."""

    every_s = 5.0

    def __init__(self, folder: Path, stage: str):
        self.path = Path(folder) / STATUS_NAME
        self.data = {
            "stage": stage,
            "state": "running",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": _now(),
        }
        self._lock = threading.Lock()
        self._last = 0.0
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)

    def tee(self, progress: ProgressFn) -> ProgressFn:
        """A progress function that records the progress here, then calls `progress`."""

        def both(stage: str, done: int, total: int, **info) -> None:
            with self._lock:
                self.data["progress"] = {
                    "done": done,
                    "total": total,
                    "unit": info.get("unit", ""),
                    "updated_at": _now(),
                }
                if done >= total or time.monotonic() - self._last >= self.every_s:
                    self._last = time.monotonic()
                    self._write()
            progress(stage, done, total, **info)

        return both

    def failed(self, error: BaseException) -> None:
        text = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
        with self._lock:
            self.data.update(
                state="failed", error=text.strip().splitlines()[0][:300] if text.strip() else text, finished_at=_now()
            )
            self._write()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _time(text: Optional[str]) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


@dataclass
class StageStatus:
    run: str
    stage: str
    key: str
    folder: Path
    status: str  # finished | in progress | failed | incomplete
    seconds: Optional[float]  # run time (so far, for a stage in progress)
    when: datetime  # finished, last progress, or failed at
    text: str  # headline numbers, progress or the error


def stage_status(run: str, stage: str, folder: Path) -> StageStatus:
    folder = Path(folder)
    m = StageManifest.read(folder) if (folder / MANIFEST_NAME).exists() else None
    if m is not None:
        return StageStatus(run, stage, folder.name, folder, "finished", m.seconds, m.created_at, headline(m))
    mtime = datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc)
    try:
        st = json.loads((folder / STATUS_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return StageStatus(run, stage, folder.name, folder, "incomplete", None, mtime, "no manifest, no status file")
    started = _time(st.get("started_at")) or mtime
    prog = st.get("progress") or {}
    done = f"{prog['done']}/{prog['total']} {prog.get('unit', '')}".strip() if prog else "no progress reported"
    if st.get("state") == "failed":
        end = _time(st.get("finished_at")) or mtime
        return StageStatus(
            run,
            stage,
            folder.name,
            folder,
            "failed",
            (end - started).total_seconds(),
            end,
            f"{st.get('error', '?')} (at {done})",
        )
    now = datetime.now(timezone.utc)
    if st.get("host") == socket.gethostname() and not _alive(int(st.get("pid", 0) or 0)):
        last = _time(prog.get("updated_at")) or mtime
        return StageStatus(
            run,
            stage,
            folder.name,
            folder,
            "failed",
            (last - started).total_seconds(),
            last,
            f"process {st.get('pid')} is gone (killed?) at {done}",
        )
    return StageStatus(
        run,
        stage,
        folder.name,
        folder,
        "in progress",
        (now - started).total_seconds(),
        _time(prog.get("updated_at")) or started,
        done,
    )


def list_runs(root: Path = Path("runs")) -> list[tuple[str, list[StageStatus]]]:
    """(run name, its stage folders in pipeline order, newest first per stage), newest run first."""
    runs = []
    for run_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []:
        rows = []
        for stage in STAGES:
            folders = [p for p in (run_dir / stage).iterdir() if p.is_dir()] if (run_dir / stage).is_dir() else []
            found = [stage_status(run_dir.name, stage, f) for f in folders]
            rows += sorted(found, key=lambda s: s.when, reverse=True)
        if rows:
            runs.append((run_dir.name, rows))
    return sorted(runs, key=lambda r: max(s.when for s in r[1]), reverse=True)


def format_runs(root: Path = Path("runs")) -> str:
    runs = list_runs(root)
    if not runs:
        return f"No runs under {root} (a run folder holds <stage>/<key>/ folders; `make demo` writes {root}/demo)."
    lines = []
    for name, rows in runs:
        latest = max(s.when for s in rows)
        lines.append(f"{Path(root) / name}   (last activity {latest.astimezone():%Y-%m-%d %H:%M:%S})")
        table = [("stage", "key", "status", "time", "when", "numbers")]
        for s in rows:
            table.append(
                (s.stage, s.key, s.status, format_duration(s.seconds), f"{s.when.astimezone():%m-%d %H:%M}", s.text)
            )
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in table]
        lines.append("")
    return "\n".join(lines).rstrip()


__all__ = ["StatusWriter", "StageStatus", "stage_status", "list_runs", "format_runs", "STATUS_NAME"]
