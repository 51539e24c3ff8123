"""Which backbone to train: the embedded tiny model, or a local `from_pretrained` folder."""
from pydantic import Field

from data_contracts.config.base import Section

EMBEDDED_MODEL = "embedded:tiny-qwen2.5-vl"


class ModelConfig(Section):
    path: str = Field(EMBEDDED_MODEL, description=f"'{EMBEDDED_MODEL}' or a local model folder (never fetched)")
    seed: int = Field(0, description="seed for building the embedded model (same seed -> identical weights)")
    min_pixels: int = Field(28 * 28, description="image processor min pixels")
    max_pixels: int = Field(112 * 112, description="image processor max pixels (112x112 -> 16 image tokens)")
    dtype: str = Field("float32", description="float32 | bfloat16 | float16")
