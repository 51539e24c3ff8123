"""`ProbesConfig`: the grid of the paper's controlled probes (`configs/probes.yaml`, docs/probes.md).

A grid is probes → variants → dotted-key overrides of a base pipeline config, run for every seed. One cell (probe,
variant, seed) is the base config with, in this order, the grid's `overrides`, `scale`, the probe's `overrides`, the
variant's overrides, `seed_keys` set to the seed and `run_dir`. All cells share `run_dir`, so stages whose cache keys
match run once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from data_contracts.config.base import Section
from data_contracts.config.orchestration import StageName
from data_contracts.errors import ConfigError

Task = Literal["iqa", "iaa"]
# what a comparison can read for a cell: benchmark metrics of the probe's model (per task, mean over that task's
# benchmarks) and GRPO training-log means (per task, over the logging steps)
METRICS = (
    "srcc",
    "plcc",
    "pair_acc",
    "words",
    "words_sd",
    "valid",
    "train_reward",
    "train_reward_std",
    "train_adv_var",
    "train_zero_std_frac",
    "train_words",
    "train_words_drop",
)
Metric = Literal[METRICS]  # type: ignore[valid-type]


class Comparison(Section):
    """One claim tested as a paired difference over seeds: `better` − `worse` on `metric` of `task`
    (for `direction: lower`, `worse` − `better`: the claim is that `better` has the lower value)."""

    claim: str = Field(description="what the paper says, quoted (or the test's wording when the paper gives none)")
    better: str
    worse: str
    task: Task
    metric: Metric = "srcc"  # type: ignore[valid-type]
    direction: Literal["higher", "lower"] = "higher"


class ProbeSpec(Section):
    title: str
    claim: str = Field(description="the paper's claim this probe tests, quoted")
    source: str = Field("", description="where the claim is from")
    model: Literal["sft", "grpo"] = Field("grpo", description="which scored model the tables read: sft = after SFT")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys for every variant of the probe")
    variants: dict[str, dict[str, Any]] = Field(description="name -> dotted-key overrides ({} = the base recipe)")
    comparisons: list[Comparison] = []
    paper: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="the paper's numbers per variant, e.g. {rank_only: {iqa_srcc: 0.754}}"
    )
    curves: bool = Field(False, description="draw the GRPO training curves of the variants")

    @model_validator(mode="after")
    def _names(self):
        if not self.variants:
            raise ValueError("a probe needs at least one variant")
        for c in self.comparisons:
            for v in (c.better, c.worse):
                if v not in self.variants:
                    raise ValueError(f"comparison names variant '{v}', which is not one of {list(self.variants)}")
        for v in self.paper:
            if v not in self.variants:
                raise ValueError(f"paper numbers for variant '{v}', which is not one of {list(self.variants)}")
        return self


class StageEstimate(Section):
    """Seconds one stage run takes at this scale: fixed + per_step x optimizer steps (training stages)."""

    fixed: float = Field(0.0, ge=0)
    per_step: float = Field(0.0, ge=0)


class ProbesConfig(Section):
    name: str = "probes"
    base: str = Field("configs/demo.yaml", description="the pipeline config every cell starts from")
    run_dir: str = Field("runs/probes", description="run folder of every cell (shared: equal keys run once)")
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    seed_keys: list[str] = Field(
        ["seed"],
        min_length=1,
        description="dotted keys set to the seed of a cell "
        "(`seed`: the run's seed: model build, demo data, training order, bootstrap)",
    )
    parallel: int = Field(2, ge=1, description="stage runs at once (only runs whose inputs are finished)")
    interval: Literal["t", "bootstrap"] = Field(
        "t",
        description="95% interval over seeds: t = mean ± t(0.975, n-1)·sd/√n; bootstrap = percentile "
        "bootstrap of the mean over seeds (10,000 resamples)",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted keys every cell needs whatever the "
        "scale (e.g. benchmark.compare: [sft] for probes that read the SFT model)",
    )
    scale: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted keys that shrink the base recipe (every cell); empty for the real experiment",
    )
    probes: dict[str, ProbeSpec]
    estimate_s: dict[StageName, StageEstimate] = Field(
        default_factory=dict, description="measured stage seconds at this scale, for `tatar probes plan`"
    )

    @field_validator("probes")
    @classmethod
    def _some(cls, v):
        if not v:
            raise ValueError("no probes")
        return v


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested or dotted override mappings as dotted keys (dict leaves merge the same way either spelling)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_probes(path: str | Path, overrides: Optional[dict[str, Any]] = None) -> ProbesConfig:
    """Load a probes YAML; `overrides` with dotted keys, e.g. {"seeds": [0], "scale.sft.max_steps": 50}; `scale`
    (e.g. `scale: {}`) replaces the whole block, and overriding `base` or `scale` drops `estimate_s` (measured for the
    file's own). Top-level keys starting with `_` are ignored (holders of YAML anchors that variants merge with
    `<<:`)."""
    from data_contracts.config import _deep_merge, _dotted_to_nested, format_validation_error

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: probes config not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}  # `_name: &anchor` blocks for YAML reuse
    if overrides:
        if ("base" in overrides or any(k == "scale" or k.startswith("scale.") for k in overrides)) and not any(
            k.startswith("estimate_s") for k in overrides
        ):
            data.pop("estimate_s", None)  # measured for the file's base and scale, not for another
        replaced = {k: overrides[k] for k in ("scale", "seeds", "seed_keys") if k in overrides}
        plain = {k: v for k, v in overrides.items() if not k.startswith("scale.") and k not in replaced}
        data = {**_deep_merge(data, _dotted_to_nested(plain)), **replaced}
        scale = {k.removeprefix("scale."): v for k, v in overrides.items() if k.startswith("scale.")}
        if scale:
            data["scale"] = {**flatten(data.get("scale") or {}), **scale}
    try:
        return ProbesConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path))) from None


__all__ = ["ProbesConfig", "ProbeSpec", "Comparison", "StageEstimate", "load_probes", "flatten", "METRICS"]
