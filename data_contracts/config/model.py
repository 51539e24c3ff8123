"""Which backbone to train: the embedded tiny model, or a local `from_pretrained` folder."""
from typing import Any, Optional

from pydantic import Field, field_validator

from data_contracts.config.base import Section

EMBEDDED_MODEL = "embedded:tiny-qwen2.5-vl"


class ModelConfig(Section):
    path: str = Field(EMBEDDED_MODEL, description=f"'{EMBEDDED_MODEL}' or a local model folder (never fetched)")
    seed: int = Field(0, description="seed for building the embedded model (same seed -> identical weights)")
    min_pixels: int = Field(28 * 28, description="image processor min pixels")
    max_pixels: int = Field(112 * 112, description="image processor max pixels (112x112 -> 16 image tokens)")
    dtype: str = Field("float32", description="float32 | bfloat16 | float16")
    freeze_vision: Optional[bool] = Field(
        None, description="keep the vision tower fixed in SFT and GRPO; default: true for the embedded model (its "
        "hand-set tower stands in for a pretrained one), false for a real backbone (the paper trains everything)"
    )
    load_args: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments for from_pretrained, e.g. attn_implementation: sdpa"
    )

    @property
    def vision_frozen(self) -> bool:
        """`freeze_vision`, or its default for this model (embedded: frozen; a real backbone: trained)."""
        return self.path.startswith("embedded:") if self.freeze_vision is None else self.freeze_vision

    @field_validator("load_args")
    @classmethod
    def _own_keys(cls, args: dict[str, Any]) -> dict[str, Any]:
        for key, why in {"dtype": "use model.dtype", "torch_dtype": "use model.dtype",
                         "local_files_only": "models are always loaded from local files"}.items():
            if key in args:
                raise ValueError(f"'{key}' is set by the project: {why}")
        return args
