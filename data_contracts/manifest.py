"""The stage contract: `StageManifest` (written last into a stage folder; its presence means the stage finished),
`StageResult` (a finished stage as later stages see it), `StageOutputs` (what a stage returns) and `StageContext`
(what the runner hands every stage).

Each stage package exposes `run_stage(cfg, out_dir, upstream, ctx) -> StageOutputs`; the runner
(`tatar_core.pipeline.runner`) writes the manifest from the returned outputs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
KEY_CHARS = 16  # a stage folder is named by the first KEY_CHARS hex digits of its cache key


def stage_folder(run_root: Path, stage: str, key: str) -> Path:
    """Where the stage with cache key `key` writes: <run_root>/<stage>/<key[:KEY_CHARS]>."""
    return Path(run_root) / stage / key[:KEY_CHARS]


class StageManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    key: str = Field(description="cache key: sha256 of config section + upstream keys + code version")
    code_version: str
    inputs: dict[str, str] = Field(default_factory=dict, description="upstream stage -> its cache key")
    config: dict[str, Any] = Field(default_factory=dict, description="the config this stage ran with")
    outputs: dict[str, str] = Field(default_factory=dict, description="name -> path relative to the stage folder")
    row_counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def write(self, stage_dir: Path) -> Path:
        """Write atomically (tmp + rename) so a crash never leaves a half manifest."""
        path = Path(stage_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True))
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, stage_dir: Path) -> "StageManifest | None":
        path = Path(stage_dir) / MANIFEST_NAME
        if not path.exists():
            return None
        return cls.model_validate_json(path.read_text())

    def output_path(self, stage_dir: Path, name: str) -> Path:
        return Path(stage_dir) / self.outputs[name]


@dataclass
class StageResult:
    """A finished stage: its folder and manifest; `cached` when it was reused rather than computed now."""

    stage: str
    dir: Path
    manifest: StageManifest
    cached: bool

    def path(self, name: str) -> Path:
        return self.manifest.output_path(self.dir, name)


@dataclass
class StageOutputs:
    """What a stage returns: output files (name -> path relative to its folder), row counts and metrics."""

    outputs: dict[str, str] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


Mapper = Callable[[Callable[[Any], Any], list], list]


def serial_map(fn: Callable[[Any], Any], items: list) -> list:
    return [fn(x) for x in items]


class ProgressFn(Protocol):
    """`progress(stage, done, total, unit="steps", **info)`: `done` of `total` units of a stage's work are finished;
    `info` holds a few headline numbers (e.g. loss=0.52). Called often (every step or row); listeners throttle."""

    def __call__(self, stage: str, done: int, total: int, **info: Any) -> None: ...


def no_progress(stage: str, done: int, total: int, **info: Any) -> None:
    """A `ProgressFn` that shows nothing."""


@dataclass
class StageContext:
    """Run-wide services for a stage: the run folder (shared caches such as built models live under it), a mapper
    for independent units of work (a Prefect task runner, or a plain loop), an API-key resolver, a logger and a
    progress listener (Prefect artifact, terminal bar; see `tatar_core.progress`)."""

    run_root: Path
    mapper: Mapper = serial_map
    secret_resolver: Optional[Callable[[str], str]] = None
    log: Callable[[str], None] = print
    progress: ProgressFn = no_progress
