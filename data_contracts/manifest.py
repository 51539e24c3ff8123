"""The stage contract: `StageManifest` (written last into a stage folder; its presence means the stage finished),
`StageResult` (a finished stage as later stages see it), `StageOutputs` (what a stage returns) and `StageContext`
(what the runner hands every stage).

Each stage package exposes `run_stage(cfg, out_dir, upstream, ctx) -> StageOutputs`; the runner
(`tatar_core.pipeline.runner`) writes the manifest from the returned outputs.

The manifest records every output file (a folder output such as `model/`: each file inside) with its size and
sha256. `check_finished` reads a stage folder: no manifest = not finished; a manifest that does not parse, or an
output that is missing or has another size (or, with `hashes=True`, another sha256) = not finished either, with a
message naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_contracts.files import atomic_write_text, sha256_file
from data_contracts.parquet_io import read_records
from data_contracts.paths import run_root_of

MANIFEST_NAME = "manifest.json"
KEY_CHARS = 16  # a stage folder is named by the first KEY_CHARS hex digits of its cache key


def stage_folder(run_root: Path, stage: str, key: str) -> Path:
    """Where the stage with cache key `key` writes: <run_root>/<stage>/<key[:KEY_CHARS]>."""
    return Path(run_root) / stage / key[:KEY_CHARS]


class ManifestError(ValueError):
    """A manifest.json that does not parse or does not match the schema (message names the file)."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(description="bytes")
    sha256: str


def output_files(stage_dir: Path, outputs: dict[str, str]) -> dict[str, FileEntry]:
    """Size and sha256 of every output file: path relative to the stage folder (posix) -> FileEntry; a folder
    output contributes every file under it."""
    stage_dir = Path(stage_dir)
    out: dict[str, FileEntry] = {}
    for name, rel in outputs.items():
        p = stage_dir / rel
        if not p.exists():
            raise FileNotFoundError(f"stage output '{name}' ({p}) was not written")
        for f in sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]:
            out[f.relative_to(stage_dir).as_posix()] = FileEntry(size=f.stat().st_size, sha256=sha256_file(f))
    return out


class StageManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    key: str = Field(description="cache key: sha256 of config section + upstream keys + code version")
    code_version: str
    inputs: dict[str, str] = Field(default_factory=dict, description="upstream stage -> its cache key")
    config: dict[str, Any] = Field(default_factory=dict, description="the config this stage ran with")
    outputs: dict[str, str] = Field(default_factory=dict, description="name -> path relative to the stage folder")
    files: dict[str, FileEntry] = Field(
        default_factory=dict, description="every output file (relative path) -> size and sha256"
    )
    input_digests: dict[str, str] = Field(
        default_factory=dict, description="upstream stage -> `digest()` of its manifest when this ran"
    )
    row_counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def write(self, stage_dir: Path) -> Path:
        """Write atomically and durably (unique temp file, fsync, rename) so a crash never leaves a half manifest."""
        return atomic_write_text(
            Path(stage_dir) / MANIFEST_NAME, json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)
        )

    @classmethod
    def read(cls, stage_dir: Path) -> "StageManifest | None":
        """The manifest of a stage folder; None when there is none; ManifestError when it does not parse."""
        path = Path(stage_dir) / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ManifestError(f"{path}: corrupt manifest ({where + ': ' if where else ''}{first['msg']})") from None

    def problems(self, stage_dir: Path, hashes: bool = False) -> list[str]:
        """Every recorded output file that is missing or has another size (or sha256, with `hashes`), as
        'PATH: what'; empty when the outputs are as recorded."""
        stage_dir = Path(stage_dir)
        out = [
            f"{stage_dir / rel}: missing (output '{name}')"
            for name, rel in self.outputs.items()
            if not (stage_dir / rel).exists()
        ]
        if out:
            return out
        for rel, entry in self.files.items():
            p = stage_dir / rel
            if not p.is_file():
                out.append(f"{p}: missing")
            elif p.stat().st_size != entry.size:
                out.append(f"{p}: {p.stat().st_size} bytes, the manifest recorded {entry.size}")
            elif hashes and sha256_file(p) != entry.sha256:
                out.append(f"{p}: content differs from the manifest (sha256 {entry.sha256[:12]}…)")
        return out

    def digest(self) -> str:
        """sha256 of the recorded output files (names, sizes, hashes): what a later stage read."""
        files = {k: v.model_dump() for k, v in sorted(self.files.items())}
        return hashlib.sha256(json.dumps([self.key, files], sort_keys=True).encode()).hexdigest()

    def output_path(self, stage_dir: Path, name: str) -> Path:
        return Path(stage_dir) / self.outputs[name]


def check_finished(stage_dir: Path, hashes: bool = False) -> "tuple[StageManifest | None, str | None]":
    """(manifest, None) for a finished stage whose outputs are as recorded; else (None, why), why None when the
    folder has no manifest at all (never finished)."""
    try:
        m = StageManifest.read(stage_dir)
    except ManifestError as e:
        return None, str(e)
    if m is None:
        return None, None
    problems = m.problems(stage_dir, hashes)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return None, problems[0] + more
    return m, None


@dataclass
class StageResult:
    """A finished stage: its folder and manifest; `cached` when it was reused rather than computed now."""

    stage: str
    dir: Path
    manifest: StageManifest
    cached: bool

    def path(self, name: str) -> Path:
        return self.manifest.output_path(self.dir, name)

    @property
    def run_root(self) -> Path:
        return run_root_of(self.dir)

    def records(self, name: str, model: type[BaseModel]) -> list:
        """The rows of output `name`, with run-relative paths resolved against this run folder."""
        return read_records(self.path(name), model, run_root=self.run_root)


@dataclass
class StageOutputs:
    """What a stage returns: output files (name -> path relative to its folder), row counts and metrics."""

    outputs: dict[str, str] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class ProgressFn(Protocol):
    """`progress(stage, done, total, unit="steps", **info)`: `done` of `total` units of a stage's work are finished;
    `info` holds a few headline numbers (e.g. loss=0.52). Called often (every step or row); listeners throttle."""

    def __call__(self, stage: str, done: int, total: int, **info: Any) -> None: ...


def no_progress(stage: str, done: int, total: int, **info: Any) -> None:
    """A `ProgressFn` that shows nothing."""


@dataclass
class StageContext:
    """Run-wide services for a stage: the run folder (shared caches such as built models live under it), an API-key
    resolver, a logger and a progress listener (Prefect artifact, terminal bar; see `tatar_core.progress`)."""

    run_root: Path
    secret_resolver: Optional[Callable[[str], str]] = None
    log: Callable[[str], None] = print
    progress: ProgressFn = no_progress
