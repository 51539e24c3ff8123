"""Cache keys and folders of the six stages.

key(stage) = sha256(stage name, the config sections the stage reads, the keys of its upstream stages,
                    the stage's code version)
code version = sha256 of the source files of the modules the stage runs (`STAGE_MODULES`).

So changing an SFT setting changes the keys of sft, grpo and benchmark and nothing before them. Keys are
computed from the config alone, without running anything (`tatar plan` prints them).
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from data_contracts.config import STAGES, PipelineConfig

# stage -> the stages whose outputs it reads
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "samples": (),
    "rationales": ("samples",),
    "filtered": ("rationales", "samples"),
    "sft": ("filtered",),
    "grpo": ("sft", "samples"),
    "benchmark": ("grpo", "samples"),
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

_SHARED = ("data_contracts/records.py", "data_contracts/parquet_io.py", "tatar_core/scales.py", "tatar_core/pipeline.py")
# stage -> source files whose code decides its output (relative to the project root)
STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "samples": ("tatar_core/demo_data.py", "tatar_core/images.py", "tatar_core/datasets.py"),
    "rationales": (
        "tatar_core/rationale_runner.py", "tatar_core/shards.py", "tatar_core/teacher_offline.py",
        "tatar_core/measure.py", "tatar_core/teacher_openai.py", "tatar_core/teacher_prompts.py",
        "tatar_core/rationale_text.py", "tatar_core/openai_client.py", "tatar_core/secrets.py",
        "tatar_core/images.py", "tatar_core/prompts.py",
    ),
    "filtered": ("tatar_core/filtering.py", "tatar_core/judge_rules.py", "tatar_core/judge_llm.py",
                 "tatar_core/teacher_prompts.py", "tatar_core/openai_client.py", "tatar_core/secrets.py",
                 "tatar_core/images.py", "tatar_core/parsing.py"),
    "sft": ("tatar_core/sft.py", "tatar_core/modeling.py", "tatar_core/tiny_model.py", "tatar_core/prompts.py",
            "tatar_core/launch.py", "tatar_core/train_entry.py", "tatar_core/images.py", "tatar_core/draft_corpus.py"),
    "grpo": ("tatar_core/grpo.py", "tatar_core/rewards.py", "tatar_core/modeling.py", "tatar_core/prompts.py",
             "tatar_core/parsing.py", "tatar_core/launch.py", "tatar_core/train_entry.py", "tatar_core/images.py",
             "tatar_core/draft_corpus.py"),
    "benchmark": ("tatar_core/scoring.py", "tatar_core/metrics.py", "tatar_core/benchmarking.py", "tatar_core/report.py",
                  "tatar_core/datasets.py", "tatar_core/parsing.py", "tatar_core/prompts.py", "tatar_core/modeling.py",
                  "tatar_core/images.py", "tatar_core/speculative.py", "tatar_core/draft_corpus.py"),
}

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _sha(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


@lru_cache(maxsize=None)
def code_version(stage: str) -> str:
    """sha256 over the stage's source files (path + bytes); a package layout change shows up too."""
    h = hashlib.sha256()
    for rel in sorted(STAGE_MODULES[stage] + _SHARED):
        path = PROJECT_ROOT / rel
        if path.is_dir():
            files = sorted(path.rglob("*.py"))
        else:
            stem = path.with_suffix("")
            files = [path] if path.exists() else (sorted(stem.rglob("*.py")) if stem.is_dir() else [])
        for f in files:
            h.update(str(f.relative_to(PROJECT_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


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
        keys[stage] = _sha(json.dumps(payload, sort_keys=True))
    return keys


def run_root(cfg: PipelineConfig, base: Path | None = None) -> Path:
    """The run folder: `cfg.run_dir`, relative to `base` (default: the current directory)."""
    p = Path(cfg.run_dir).expanduser()
    return p if p.is_absolute() else (base or Path.cwd()) / p


def stage_dir(cfg: PipelineConfig, stage: str, keys: dict[str, str] | None = None, base: Path | None = None) -> Path:
    keys = keys or stage_keys(cfg)
    return run_root(cfg, base) / stage / keys[stage][:16]
