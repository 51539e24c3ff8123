"""Cache keys and folders of the six stages; code versions read from each stage's imports.

    key(stage)          = sha256(stage name, the config sections the stage reads (`STAGE_SECTIONS`, their values),
                                 the keys of its upstream stages, the stage's code version)
    code_version(stage) = `closure_version` of the stage's entry module (`STAGE_ENTRY`) and its sections: sha256 over
                          the canonical source (syntax tree without docstrings) of every project module in its import
                          closure, with the `__init__.py` of every package on the way, where the config and record
                          modules count only by the definitions the stage reaches (its sections' classes, the records
                          and helpers it imports, and what those use)

The closure (`tatar_core.code_version`) follows every import of a project module, lazy ones included. So a real
change in a module deep in a stage's imports (e.g. the IAA aspect vocabulary the offline teacher uses) changes that
stage's key and every later key; a comment, a docstring or reformatting changes no key, nor does an edit of a module
no stage imports, or of another stage's config class or record schema (the teacher stage is not re-run for a GRPO
setting).
Keys are computed from the config alone, without running anything (`tatar plan` prints them).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from data_contracts.config import STAGES, PipelineConfig
from data_contracts.manifest import stage_folder
from tatar_core.code_version import closure_version

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
    """The stage's code version: `closure_version` of its entry module and its config sections."""
    return closure_version(STAGE_ENTRY[stage], STAGE_SECTIONS[stage])


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
