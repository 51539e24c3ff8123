"""Stage 2 (SFT) and stage 3 (GRPO) settings, the reward constants and the launch settings.

Each section holds the project's own keys (what the project computes from them: the batch plan, thought dropout,
reward constants, the paper's main hyperparameters) and `trainer_args`, a mapping passed through to trl's
`SFTConfig` / `GRPOConfig` as is (attention, dataloader workers, gradient clipping, optimizer, logging and saving,
vLLM generation, …). A `trainer_args` key must be a field of that trl class and must not be one the project sets
itself; both are checked when the config loads, before any work.
"""

from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from data_contracts.config.base import Section
from data_contracts.config.rewards import RankRewardConfig, RewardWeights, ScoreRewardConfig
from data_contracts.config.trainer_fields import TRL_CONFIGS, trainer_fields


class LaunchConfig(Section):
    """How a training stage runs: in this process (small runs) or via `accelerate launch` (many devices)."""

    mode: Literal["inprocess", "accelerate"] = "inprocess"
    num_processes: int = Field(1, ge=1)
    cpu: bool = Field(True, description="pass --cpu to accelerate launch")
    deepspeed_config: Optional[str] = Field(None, description="path to a DeepSpeed ZeRO json (e.g. ZeRO-3)")
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    extra_args: list[str] = []
    torch_threads: Optional[int] = Field(
        None,
        ge=1,
        description="CPU intra-op threads for training in this process / each launched process "
        "(None = torch default). 1 is fastest for the tiny model on a shared 2-core machine.",
    )
    python: Optional[str] = Field(
        None,
        description="interpreter of the training environment that runs the launched job (e.g. "
        ".venv-gpu/bin/python from `make gpu-env`: CUDA torch, DeepSpeed, vLLM, no Prefect); None = this one. "
        "It needs the packages of requirements-gpu.txt; the project itself comes from PYTHONPATH.",
    )

    @model_validator(mode="after")
    def _python_needs_launch(self):
        if self.python and self.mode != "accelerate":
            raise ValueError("launch.python runs the launched job: it needs launch.mode: accelerate")
        return self


class LoraSection(Section):
    """LoRA adapters (peft) on the language model; merged into the saved model at the end of the stage."""

    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Optional[Union[str, list[str]]] = Field(
        None,
        description="peft target_modules: a regex matched against whole module names, or a list of name "
        "suffixes (these also match the vision tower's gate/up/down_proj). None = the language model's attention "
        "and MLP projections (tatar_core.models.lora.LANGUAGE_MODEL_TARGETS)",
    )


class VllmSection(Section):
    """GRPO rollouts with vLLM (trl's generation backend); vLLM must be importable in the training environment."""

    enabled: bool = Field(False, description="False: HF generate in the trainer")
    mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="colocate: an engine in every training process, sharing its GPU; server: a separate "
        "`trl vllm-serve` (with images: vLLM >= 0.30 started with --enable-scale-out)",
    )
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="colocate: share of each GPU for vLLM")
    tensor_parallel_size: int = Field(1, ge=1, description="colocate: GPUs per engine")
    enable_sleep_mode: bool = Field(False, description="colocate: offload vLLM's weights and cache while training")
    server_base_url: Optional[str] = Field(None, description="server: e.g. http://10.0.0.5:8000")
    importance_sampling_correction: bool = Field(
        False,
        description="trl's correction for vLLM-vs-trainer logprob mismatch (trl defaults it on; the TATAR "
        "paper has none)",
    )

    # section key -> trl GRPOConfig field
    TRL_FIELDS: ClassVar[dict[str, str]] = {
        "enabled": "use_vllm",
        "mode": "vllm_mode",
        "gpu_memory_utilization": "vllm_gpu_memory_utilization",
        "tensor_parallel_size": "vllm_tensor_parallel_size",
        "enable_sleep_mode": "vllm_enable_sleep_mode",
        "server_base_url": "vllm_server_base_url",
        "importance_sampling_correction": "vllm_importance_sampling_correction",
    }

    @model_validator(mode="after")
    def _server_url(self):
        if self.enabled and self.mode == "server" and not self.server_base_url:
            raise ValueError("mode 'server' needs server_base_url (the `trl vllm-serve` address)")
        return self

    def trl_kwargs(self) -> dict[str, Any]:
        """The GRPOConfig fields this section sets (all of them, so trl's defaults never decide)."""
        return {trl: getattr(self, key) for key, trl in self.TRL_FIELDS.items()}

    def describe(self) -> str:
        """One line for `tatar plan`."""
        if not self.enabled:
            return "HF generate (in the trainer, no vLLM)"
        where = (
            f"colocate (GPU memory {self.gpu_memory_utilization:g}, tensor parallel {self.tensor_parallel_size}, "
            f"sleep mode {'on' if self.enable_sleep_mode else 'off'})"
            if self.mode == "colocate"
            else f"server {self.server_base_url}"
        )
        return (
            f"vLLM {where}; importance-sampling correction "
            f"{'on' if self.importance_sampling_correction else 'off (as in the paper)'}"
        )


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

    @property
    def uses_deepspeed(self) -> bool:
        """Trained under DeepSpeed (launched with a DeepSpeed config, or trl's own `deepspeed` field)."""
        launched = self.launch.mode == "accelerate" and bool(self.launch.deepspeed_config)
        return launched or bool(self.trainer_args.get("deepspeed"))

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
    score_loss_weight: float = Field(
        0.0,
        ge=0,
        description="w in L = L_trl + w * L_score, L_score the cross-entropy of the answer's leading "
        "score token against a Gaussian soft label (tatar_core.training.score_loss); 0 = the paper's loss alone",
    )
    score_label_sigma: float = Field(0.0, ge=0, description="sigma of that soft label in score points (0 = one-hot)")
    lora: LoraSection = LoraSection()
    seed: int = 42
    launch: LaunchConfig = LaunchConfig()

    @model_validator(mode="after")
    def _sigma_needs_weight(self):
        if self.score_label_sigma > 0 and self.score_loss_weight <= 0:
            raise ValueError("score_label_sigma shapes the score-loss term: it needs score_loss_weight > 0")
        return self


class GrpoConfig(TrainerSection):
    stage: ClassVar[str] = "grpo"
    project_set: ClassVar[dict[str, str]] = (
        TrainerSection.project_set
        | {
            "steps_per_generation": "equals gradient_accumulation_steps (the cross-process IAA ranking needs it)",
            "num_iterations": "1 (the cross-process IAA ranking needs one pass per generation)",
            "shuffle_dataset": "the project lays out each step's images itself (plan_order)",
            "generation_batch_size": "one generation per optimizer step (prompts_per_step x num_generations)",
            "reward_weights": "use rewards_iqa / rewards_iaa (the weights are applied per task)",
        }
        | {trl: f"use grpo.vllm.{key}" for key, trl in VllmSection.TRL_FIELDS.items()}
    )

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
    rewards_iqa: RewardWeights = Field(
        RewardWeights(),
        description="IQA reward weights by reward name; unnamed rewards keep their registered "
        "defaults (score 1, rank 0, format 1)",
    )
    rewards_iaa: RewardWeights = Field(
        RewardWeights(),
        description="IAA reward weights by reward name; unnamed rewards keep their registered "
        "defaults (score 1, rank 1, format 1)",
    )
    ablation: Literal["none", "rank_only", "pointwise_iaa"] = Field(
        "none",
        description="applied on top of the weights: rank_only = no score reward and the rank reward for both "
        "tasks (paper Table 2; IQA rank weight = rewards_iqa.rank, or rewards_iaa.rank when that is 0); "
        "pointwise_iaa = no rank reward for IAA",
    )
    score_reward: ScoreRewardConfig = ScoreRewardConfig()
    rank_reward: RankRewardConfig = RankRewardConfig()
    lora: LoraSection = LoraSection()
    vllm: VllmSection = VllmSection()
    launch: LaunchConfig = LaunchConfig()

    @model_validator(mode="after")
    def _iaa_per_step(self):
        if self.min_iaa_images_per_step > self.prompts_per_step:
            raise ValueError(
                f"min_iaa_images_per_step ({self.min_iaa_images_per_step}) exceeds prompts_per_step "
                f"({self.prompts_per_step})"
            )
        return self
