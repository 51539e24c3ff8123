"""Stage 2 (SFT) and stage 3 (GRPO) settings, the reward constants and the launch settings.

Each section holds the project's own keys (what the project computes from them: the batch plan, thought dropout,
reward constants, the paper's main hyperparameters) and `trainer_args`, a mapping passed through to trl's
`SFTConfig` / `GRPOConfig` as is (attention, dataloader workers, gradient clipping, optimizer, logging and saving,
vLLM generation, …). A `trainer_args` key must be a field of that trl class and must not be one the project sets
itself; both are checked when the config loads, before any work.
"""
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from data_contracts.config.base import Section
from data_contracts.config.trainer_fields import TRL_CONFIGS, trainer_fields
from data_contracts.config.rewards import RankRewardConfig, RewardWeights, ScoreRewardConfig


class LaunchConfig(Section):
    """How a training stage runs: in this process (small runs) or via `accelerate launch` (many devices)."""

    mode: Literal["inprocess", "accelerate"] = "inprocess"
    num_processes: int = Field(1, ge=1)
    cpu: bool = Field(True, description="pass --cpu to accelerate launch")
    deepspeed_config: Optional[str] = Field(None, description="path to a DeepSpeed ZeRO json (e.g. ZeRO-3)")
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    extra_args: list[str] = []
    torch_threads: Optional[int] = Field(
        None, ge=1, description="CPU intra-op threads for training in this process / each launched process "
        "(None = torch default). 1 is fastest for the tiny model on a shared 2-core machine."
    )
    python: Optional[str] = Field(
        None, description="interpreter of the training environment that runs the launched job (e.g. "
        ".venv-gpu/bin/python from `make gpu-env`: CUDA torch, DeepSpeed, vLLM, no Prefect); None = this one. "
        "It needs the packages of requirements-gpu.txt; the project itself comes from PYTHONPATH."
    )

    @model_validator(mode="after")
    def _python_needs_launch(self):
        if self.python and self.mode != "accelerate":
            raise ValueError("launch.python runs the launched job: it needs launch.mode: accelerate")
        return self


class TrainerSection(Section):
    """A training stage's section: project keys + `trainer_args` passed through to trl."""

    stage: ClassVar[str]
    # trl fields the project sets from its own keys or fixes (the reason is in the error message)
    project_set: ClassVar[dict[str, str]] = {
        "output_dir": "the stage folder's checkpoints/ (cache key)",
        "remove_unused_columns": "the reward functions and collators read the extra columns",
        "activation_checkpointing": "use the section's gradient_checkpointing",
        "data_seed": "use the section's seed",
    }

    trainer_args: dict[str, Any] = Field(
        default_factory=dict, description="passed through to trl's SFTConfig / GRPOConfig (any of its fields)"
    )

    @field_validator("trainer_args")
    @classmethod
    def _trl_fields(cls, args: dict[str, Any]) -> dict[str, Any]:
        known = trainer_fields(cls.stage)
        trl_name = TRL_CONFIGS[cls.stage][1]
        for key in args:
            if key not in known:
                raise ValueError(f"unknown trl {trl_name} field '{key}' (see trl's {trl_name} documentation)")
            if key in cls.model_fields:
                raise ValueError(f"'{key}' is a key of this section: set {cls.stage}.{key}, not trainer_args")
            if key in cls.project_set:
                raise ValueError(f"'{key}' is set by the project: {cls.project_set[key]}")
        return args


class SftConfig(TrainerSection):
    stage: ClassVar[str] = "sft"
    project_set: ClassVar[dict[str, str]] = TrainerSection.project_set | {
        "max_length": "image tokens must never be truncated (the image features would not match)",
        "completion_only_loss": "the TATAR SFT loss is on the completion only",
    }

    learning_rate: float = 2e-5
    num_train_epochs: float = 1.0
    max_steps: int = Field(-1, description="-1 = run num_train_epochs")
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 2
    gradient_checkpointing: bool = False
    bf16: bool = False
    iqa_fraction: float = Field(0.5, ge=0, le=1, description="share of IQA rows in the interleaved mix")
    thought_dropout_iqa: float = Field(0.5, ge=0, le=1, description="P(IQA target's rationale -> empty think)")
    thought_dropout_iaa: float = Field(0.0, ge=0, le=1)
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    seed: int = 42
    launch: LaunchConfig = LaunchConfig()


class GrpoConfig(TrainerSection):
    stage: ClassVar[str] = "grpo"
    project_set: ClassVar[dict[str, str]] = TrainerSection.project_set | {
        "steps_per_generation": "equals gradient_accumulation_steps (the cross-process IAA ranking needs it)",
        "num_iterations": "1 (the cross-process IAA ranking needs one pass per generation)",
        "shuffle_dataset": "the project lays out each step's images itself (plan_order)",
        "generation_batch_size": "one generation per optimizer step (prompts_per_step x num_generations)",
        "reward_weights": "use rewards_iqa / rewards_iaa (the weights are applied per task)",
    }

    learning_rate: float = 1e-6
    beta: float = 0.001
    num_generations: int = Field(8, ge=2)
    temperature: float = 1.0
    max_completion_length: int = 256
    prompts_per_step: int = Field(16, ge=1, description="distinct prompts (images) per optimizer step, all processes")
    min_iaa_images_per_step: int = Field(4, ge=2, description="distinct IAA images the rank reward sees per step")
    per_device_train_batch_size: Optional[int] = Field(
        None, description="completions per device per micro-step (default: num_generations * prompts per device)"
    )
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 3.0
    max_steps: int = Field(-1, description="-1 = run num_train_epochs")
    loss_type: str = "grpo"
    gradient_checkpointing: bool = False
    bf16: bool = False
    max_train_samples: Optional[int] = Field(None, description="use at most this many train samples")
    seed: int = 42
    rewards_iqa: RewardWeights = RewardWeights(score=1.0, rank=0.0, format=1.0)
    rewards_iaa: RewardWeights = RewardWeights(score=1.0, rank=1.0, format=1.0)
    ablation: Literal["none", "rank_only", "pointwise_iaa"] = Field(
        "none", description="rank_only: rank reward for both tasks; pointwise_iaa: no rank reward for IAA"
    )
    score_reward: ScoreRewardConfig = ScoreRewardConfig()
    rank_reward: RankRewardConfig = RankRewardConfig()
    launch: LaunchConfig = LaunchConfig()

    @model_validator(mode="after")
    def _iaa_per_step(self):
        if self.min_iaa_images_per_step > self.prompts_per_step:
            raise ValueError(
                f"min_iaa_images_per_step ({self.min_iaa_images_per_step}) exceeds prompts_per_step ({self.prompts_per_step})"
            )
        return self
