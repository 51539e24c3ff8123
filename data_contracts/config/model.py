"""Which backbone to train: an embedded tiny model, or a local `from_pretrained` folder; its dtypes."""

from typing import Any, Literal, Optional

from pydantic import Field, field_validator

from data_contracts.config.base import Section

EMBEDDED_MODEL = "embedded:tiny-qwen2.5-vl"
EMBEDDED_REALVOCAB_MODEL = "embedded:tiny-qwen2.5-vl-realvocab"
# name -> tokenizer of the embedded model (both: a tiny Qwen2.5-VL-architecture model built offline)
EMBEDDED_MODELS = {
    EMBEDDED_MODEL: "tiny",  # a small byte-level BPE trained on the project's text (vocab 3,072)
    EMBEDDED_REALVOCAB_MODEL: "qwen2.5-vl",  # Qwen2.5-VL-7B-Instruct's tokenizer (vocab 151,665, config 152,064)
}
Dtype = Literal["float32", "bfloat16", "float16"]


class ModelConfig(Section):
    path: str = Field(
        EMBEDDED_MODEL, description=f"one of {sorted(EMBEDDED_MODELS)} or a local model folder (never fetched)"
    )
    seed: int = Field(0, description="seed for building the embedded model (same seed -> identical weights)")
    min_pixels: int = Field(28 * 28, description="image processor min pixels")
    max_pixels: int = Field(
        112 * 112,
        description="image processor max pixels: a real Qwen2.5-VL checkpoint resizes "
        "every image to at most this many (raise it for native-resolution quality, e.g. the "
        "paper's 1,572,864); the embedded models see a native-resolution quality view and a "
        "global view of this many pixels each (12,544: 112x112, 16 + 16 tokens)",
    )
    dtype: Dtype = Field("float32", description="dtype for scoring (scorer, benchmark)")
    train_dtype: Dtype = Field(
        "float32",
        description="dtype of the weights the optimizer updates (master weights); bf16 compute comes "
        "from sft.bf16 / grpo.bf16 (autocast). Under DeepSpeed bf16 the engine keeps its own fp32 master copy.",
    )
    pure_low_precision_training: bool = Field(
        False,
        description="allow train_dtype bfloat16/float16 without DeepSpeed: the optimizer then updates 16-bit "
        "weights and every update below half an ulp (≈6e-5 at |w| = 0.02 in bf16) is lost",
    )
    freeze_vision: Optional[bool] = Field(
        None,
        description="keep the vision tower fixed in SFT and GRPO; default: true for the embedded model (its "
        "hand-set tower stands in for a pretrained one), false for a real backbone (the paper trains everything)",
    )
    load_args: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments for from_pretrained, e.g. attn_implementation: sdpa"
    )

    @property
    def vision_frozen(self) -> bool:
        """`freeze_vision`, or its default for this model (embedded: frozen; a real backbone: trained)."""
        return self.path.startswith("embedded:") if self.freeze_vision is None else self.freeze_vision

    @field_validator("path")
    @classmethod
    def _known_embedded(cls, path: str) -> str:
        if path.startswith("embedded:") and path not in EMBEDDED_MODELS:
            raise ValueError(f"unknown embedded model {path!r} (known: {', '.join(sorted(EMBEDDED_MODELS))})")
        return path

    @field_validator("load_args")
    @classmethod
    def _own_keys(cls, args: dict[str, Any]) -> dict[str, Any]:
        for key, why in {
            "dtype": "use model.dtype / model.train_dtype",
            "torch_dtype": "use model.dtype / model.train_dtype",
            "local_files_only": "models are always loaded from local files",
        }.items():
            if key in args:
                raise ValueError(f"'{key}' is set by the project: {why}")
        return args


def pure_low_precision_reason(model: ModelConfig, stage: str, bf16: bool, deepspeed: bool) -> str | None:
    """Why training `stage` with these settings would update 16-bit weights directly (None when it would not)."""
    if model.train_dtype == "float32" or deepspeed or model.pure_low_precision_training:
        return None
    return (
        f"model.train_dtype {model.train_dtype} with {stage} outside DeepSpeed trains pure {model.train_dtype} "
        f"weights: AdamW's updates (≈ learning rate per step) below half an ulp (≈6e-5 at |w| = 0.02 in bf16) "
        f"round to zero. Keep model.train_dtype: float32 (fp32 master weights{', bf16 autocast' if bf16 else ''}"
        f"), train under DeepSpeed ({stage}.launch.deepspeed_config), or set "
        "model.pure_low_precision_training: true if you mean it"
    )
