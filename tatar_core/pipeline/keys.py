"""Cache keys and folders of the six stages; code versions read from each stage's imports.

    key(stage)          = sha256(stage name, the config sections the stage reads, the keys of its upstream stages,
                                 the stage's code version)
    code_version(stage) = sha256 over (path, bytes) of every project module in the import closure of the stage's
                          entry module (`STAGE_ENTRY`), with the `__init__.py` of every package on the way

The closure (`tatar_core.code_version`) follows every import of a project module, lazy ones included. So editing a module deep in a
stage's imports (e.g. the IAA aspect vocabulary the offline teacher uses) changes that stage's key and every later
key; editing a module no stage imports changes none. Keys are computed from the config alone, without running
anything (`tatar plan` prints them).
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from data_contracts.config import STAGES, PipelineConfig
from data_contracts.manifest import stage_folder
from tatar_core.code_version import files_version, import_closure


# stage -> the stages whose outputs it reads
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "samples": (),
    "rationales": ("samples",),
    "filtered": ("rationales", "samples"),
    "sft": ("filtered",),
    "grpo": ("sft", "samples"),
    "benchmark": ("grpo", "sft", "samples"),
}

# stage -> the config sections that change its output
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "samples": ("samples",),
    "rationales": ("rationales",),
    "filtered": ("filtered",),
    "sft": ("model", "sft"),
    "grpo": ("model", "grpo"),
    "benchmark": ("model", "benchmark"),
}

# stage -> the module whose `run_stage(cfg, out_dir, upstream, ctx)` computes it (the runner dispatches on this)
STAGE_ENTRY: dict[str, str] = {
    "samples": "tatar_core.samples.stage",
    "rationales": "tatar_core.rationales.stage",
    "filtered": "tatar_core.filtered.stage",
    "sft": "tatar_core.training.sft",
    "grpo": "tatar_core.training.grpo",
    "benchmark": "tatar_core.benchmark.stage",
}


@lru_cache(maxsize=None)
def code_version(stage: str) -> str:
    """The stage's code version: `files_version` of the import closure of its entry module."""
    return files_version(import_closure(STAGE_ENTRY[stage]))


def stage_config(cfg: PipelineConfig, stage: str) -> dict:
    return {s: getattr(cfg, s).model_dump(mode="json") for s in STAGE_SECTIONS[stage]}


def stage_keys(cfg: PipelineConfig) -> dict[str, str]:
    """Every stage's cache key, in pipeline order."""
    keys: dict[str, str] = {}
    for stage in STAGES:
        payload = {
            "stage": stage,
            "config": stage_config(cfg, stage),
            "inputs": {u: keys[u] for u in STAGE_INPUTS[stage]},
            "code": code_version(stage),
        }
        keys[stage] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return keys


def run_root(cfg: PipelineConfig, base: Path | None = None) -> Path:
    """The run folder: `cfg.run_dir`, relative to `base` (default: the current directory)."""
    p = Path(cfg.run_dir).expanduser()
    return p if p.is_absolute() else (base or Path.cwd()) / p


def stage_dir(cfg: PipelineConfig, stage: str, keys: dict[str, str] | None = None, base: Path | None = None) -> Path:
    keys = keys or stage_keys(cfg)
    return stage_folder(run_root(cfg, base), stage, keys[stage])
