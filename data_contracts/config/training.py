"""Stage 2 (SFT) and stage 3 (GRPO) settings, the reward constants and the launch settings."""
from typing import Literal, Optional

from pydantic import Field, model_validator

from data_contracts.config.base import Section
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


class SftConfig(Section):
    learning_rate: float = 2e-5
    num_train_epochs: float = 1.0
    max_steps: int = Field(-1, description="-1 = run num_train_epochs")
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 2
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="linear warmup over this share of the steps")
    weight_decay: float = 0.0
    lr_scheduler_type: str = "linear"
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: Optional[int] = Field(2, description="keep at most this many checkpoints (None = all)")
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


class GrpoConfig(Section):
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
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: Optional[int] = Field(2, description="keep at most this many checkpoints (None = all)")
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
