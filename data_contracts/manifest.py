"""`StageManifest`: written last into a stage folder; its presence means the stage finished."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"


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
