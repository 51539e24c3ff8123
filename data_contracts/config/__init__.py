"""`PipelineConfig`: the whole run, loaded from `configs/*.yaml`. Unknown keys and wrong types fail early."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, get_args

import yaml
from pydantic import Field, ValidationError, model_validator

from data_contracts.config.base import Section
from data_contracts.config.benchmark import BenchmarkConfig
from data_contracts.config.model import EMBEDDED_MODEL, EMBEDDED_MODELS, ModelConfig, pure_low_precision_reason
from data_contracts.config.orchestration import OrchestrationConfig, StageName
from data_contracts.config.rationales import FilterConfig, RationalesConfig
from data_contracts.config.samples import DatasetSource, SamplesConfig
from data_contracts.config.training import GrpoConfig, SftConfig
from data_contracts.errors import ConfigError

STAGES: tuple[str, ...] = get_args(StageName)  # in pipeline order
# the sections whose `seed` the top-level `seed:` sets by default
SEEDED_SECTIONS: tuple[tuple[str, ...], ...] = (("model",), ("samples", "demo"), ("sft",), ("grpo",), ("benchmark",))


class LockingConfig(Section):
    """Two runs of one stage with the same key (e.g. `tatar run` while a Prefect deployment runs it): the second one
    waits for the first and then reports the stage as cached, or, with `wait: false`, fails at once naming the run
    that holds the stage (pid, host, start time). Runs of different keys never wait on each other. Not part of any
    stage's key."""

    wait: bool = Field(True, description="wait for a run that holds the stage (false: fail at once, naming it)")
    timeout_s: Optional[float] = Field(
        None, gt=0, description="give up waiting after this many seconds (None: no limit)"
    )


class PipelineConfig(Section):
    name: str = "demo"
    run_dir: str = Field("runs/demo", description="stage folders go here (relative to the config's project root)")
    seed: int = Field(
        0,
        description="the run's seed: the default of model.seed, samples.demo.seed, sft.seed, "
        "grpo.seed and benchmark.seed (a section that sets its own seed keeps it)",
    )
    model: ModelConfig = ModelConfig()
    samples: SamplesConfig = SamplesConfig()
    rationales: RationalesConfig = RationalesConfig()
    filtered: FilterConfig = FilterConfig()
    sft: SftConfig = SftConfig()
    grpo: GrpoConfig = GrpoConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    locking: LockingConfig = LockingConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()

    @model_validator(mode="before")
    @classmethod
    def _run_seed(cls, data: Any) -> Any:
        """A top-level `seed:` fills every seeded section's seed that the config leaves unset."""
        if not isinstance(data, dict) or "seed" not in data:
            return data

        def fill(section: Any, path: tuple[str, ...]) -> Any:
            if section is None:
                section = {}
            if not isinstance(section, dict):
                return section  # a section object: its seed is already set
            if path:
                return {**section, path[0]: fill(section.get(path[0]), path[1:])}
            return {"seed": data["seed"], **section}

        out = dict(data)
        for name, *rest in SEEDED_SECTIONS:
            out[name] = fill(out.get(name), tuple(rest))
        return out

    @model_validator(mode="after")
    def _master_weights(self):
        for stage in ("sft", "grpo"):
            section = getattr(self, stage)
            reason = pure_low_precision_reason(self.model, stage, section.bf16, section.uses_deepspeed)
            if reason:
                raise ValueError(reason)
        return self


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _dotted_to_nested(overrides: dict[str, Any]) -> dict:
    nested: dict = {}
    for key, value in overrides.items():
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'")
        else:
            lines.append(f"  key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load a YAML config; `overrides` uses dotted keys, e.g. {"sft.learning_rate": 1e-3}."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    if overrides:
        data = _deep_merge(data, _dotted_to_nested(overrides))
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path))) from None


__all__ = [
    "STAGES",
    "EMBEDDED_MODEL",
    "EMBEDDED_MODELS",
    "PipelineConfig",
    "ModelConfig",
    "SamplesConfig",
    "DatasetSource",
    "RationalesConfig",
    "FilterConfig",
    "SftConfig",
    "GrpoConfig",
    "BenchmarkConfig",
    "LockingConfig",
    "OrchestrationConfig",
    "load_config",
]
