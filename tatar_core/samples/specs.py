"""The dataset spec table: every supported dataset, where its files are, what its scores mean, and the
published TATAR numbers for the benchmarks the paper reports.

Every spec declares the native score range and direction (a `ScoreScale`); scores are mapped to 0–100
with that declared range only, never by looking at the values:

    score_100 = scale.to_100(native)      (clamped to [0, 100])

So an IQA label 1.0 on KADID's 1–5 scale is 0 (the reference code's `gt_to_100` makes it 100), and a
Flickr-AES list stored as score/5 (0.2–1.0) is declared as such, not read as 0–10.
The readers of these formats are in `tatar_core.samples.readers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Optional

from data_contracts.config.samples import DatasetSource
from tatar_core.method.scales import SCALE_0_10, SCALE_1_5, SCALE_1_10, SCALE_100, ScoreScale

Task = Literal["iqa", "iaa"]
SplitName = Literal["train", "test"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# KADID-10k: the 16 reference images of the TATAR / DeQA test split (16 refs x 125 = 2,000 images).
KADID_TEST_REFS = (
    "I03",
    "I12",
    "I13",
    "I16",
    "I22",
    "I26",
    "I29",
    "I37",
    "I41",
    "I45",
    "I48",
    "I50",
    "I51",
    "I57",
    "I63",
    "I66",
)

# PIPAL Elo: min and max of the 23,200 distributed training labels (916.7136 .. 1835.9856). Declaring this range
# reproduces DeQA's / TATAR's dataset min-max normalisation (to 1–5, then to 0–100) as a fixed, declared scale.
SCALE_PIPAL_ELO = ScoreScale(916.7136, 1835.9856)

HASH_TEST_FRACTION = 0.2  # hash-based 80/20 splits (SPAQ, PIPAL by reference) when no split file is given


class DatasetError(ValueError):
    """A dataset folder, label file or image folder is missing, or a source is misconfigured."""


@dataclass(frozen=True)
class DatasetSpec:
    """One benchmark/training set: where its files are and what its scores mean."""

    name: str
    task: Optional[Task]  # None: given by the source ("list", "table")
    format: str  # short description of the label format
    scale: Optional[ScoreScale]  # declared native range + direction; None: the source declares it
    scale_note: str
    label_files: tuple[str, ...]  # default label file(s) relative to root, first existing wins; globs allowed
    image_dirs: tuple[str, ...]  # image folder(s) relative to root
    test_split: str  # how the standard test split is defined
    reader: str  # name of the reader function in `_READERS`
    score_columns: dict[str, ScoreScale] = field(default_factory=dict)  # alternative declared columns
    paper: Optional["PaperNumbers"] = None  # the TATAR paper's result on this benchmark (Table 1)
    aliases: tuple[str, ...] = ()  # other spellings of the benchmark name (matched case/punctuation-insensitively)


@dataclass(frozen=True)
class PaperNumbers:
    """SRCC / PLCC that the TATAR paper (arXiv 2603.19779, Table 1) reports for a benchmark's test split."""

    srcc: float
    plcc: float


DATASET_SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            "koniq",
            "iqa",
            "csv image_name,c1..c5,c_total,MOS,SD,MOS_zscore[,set]",
            SCALE_100,
            "MOS_zscore on 0–100, higher better (the values TATAR's KonIQ test list holds, e.g. "
            "10007357496.jpg = 68.73); score_column=MOS uses the raw 1–5 MOS instead",
            ("koniq10k_distributions_sets.csv", "koniq10k_scores_and_distributions.csv"),
            ("1024x768", "512x384"),
            "official 7,058 train / 1,000 validation / 2,015 test from the `set` column of "
            "koniq10k_distributions_sets.csv (validation rows only under split=all, labelled train); "
            "or split_file (e.g. TATAR's KonIQ json list)",
            "koniq",
            {"MOS_zscore": SCALE_100, "MOS": SCALE_1_5},
            PaperNumbers(0.941, 0.942),
            ("koniq10k",),
        ),
        DatasetSpec(
            "spaq",
            "iqa",
            "xlsx 'Image name','MOS',...",
            SCALE_100,
            "MOS 0–100, higher better",
            ("Annotations/MOS and Image attribute scores.xlsx",),
            ("TestImage",),
            "no official split: split_file (e.g. TATAR's SPAQ list, 2,224 images) or a fixed hash-based 80/20 "
            "split of the image names",
            "spaq",
            paper=PaperNumbers(0.897, 0.894),
        ),
        DatasetSpec(
            "kadid",
            "iqa",
            "csv dist_img,ref_img,dmos,var",
            SCALE_1_5,
            "'dmos' 1–5, higher better despite the name",
            ("dmos.csv",),
            ("images",),
            f"by reference: the 16 TATAR/DeQA test refs {', '.join(KADID_TEST_REFS)} (x125 = 2,000 images)",
            "kadid",
            paper=PaperNumbers(0.731, 0.727),
            aliases=("kadid10k",),
        ),
        DatasetSpec(
            "pipal",
            "iqa",
            "per-reference txt lines 'A0001_00_00.bmp,elo'",
            SCALE_PIPAL_ELO,
            "Elo, higher better; declared range 916.7136–1835.9856 = min/max of the 23,200 distributed labels",
            ("Train_Label/*.txt",),
            ("Distortion_1", "Distortion_2", "Distortion_3", "Distortion_4"),
            "by reference: split_file (e.g. TATAR's PIPAL list, 40 refs x 116) or a fixed hash-based 20% of "
            "the references",
            "pipal",
            paper=PaperNumbers(0.501, 0.498),
        ),
        DatasetSpec(
            "artimuse10k",
            "iaa",
            "json list [{'image','gt_score'[,'aesthetic_attributes']}]",
            SCALE_0_10,
            "gt_score 0–10, higher better",
            ("score/train.json", "score/test.json"),
            ("images",),
            "the files: score/train.json (8,998) = train, score/test.json (1,002) = test",
            "artimuse",
            paper=PaperNumbers(0.586, 0.595),
            aliases=("artimuse",),
        ),
        DatasetSpec(
            "ava",
            "iaa",
            "AVA.txt: index image_id n1..n10 tag1 tag2 challenge (vote counts)",
            SCALE_1_10,
            "mean vote Σ s·n_s / Σ n_s on 1–10, higher better",
            ("AVA.txt",),
            ("images",),
            "aesthetics_image_lists/generic_test.jpgl (19,930 ids) = test, the rest train; or split_file",
            "ava",
            paper=PaperNumbers(0.518, 0.524),
        ),
        DatasetSpec(
            "tad66k",
            "iaa",
            "csv image,score",
            SCALE_0_10,
            "score 0–10, higher better",
            ("labels/merge/train.csv", "labels/merge/test.csv"),
            ("TAD66K", "images"),
            "the files: labels/merge/train.csv = train, labels/merge/test.csv (14,079) = test",
            "tad66k",
            paper=PaperNumbers(0.334, 0.349),
        ),
        DatasetSpec(
            "flickr_aes",
            "iaa",
            "txt 'name score' per line (whitespace-separated)",
            SCALE_1_5,
            "mean of 5 AMT workers on 1–5, higher better (TATAR's list stores score/5: declare scale 0.2–1.0)",
            ("FLICKR-AES_image_score.txt",),
            ("40K",),
            "images of the held-out workers (4,737): give split_file (e.g. TATAR's FLICKR-AES list)",
            "flickr_aes",
            paper=PaperNumbers(0.604, 0.633),
            aliases=("flickraes", "flickr"),
        ),
        DatasetSpec(
            "list",
            None,
            "json list [{'image','gt_score'}] (or 'img_path', string scores; .jsonl too)",
            None,
            "declared by the source: scale=[low, high] (+ higher_is_better) and task are required",
            (),
            ("",),
            "the file is the split (benchmark lists are test lists)",
            "list",
        ),
        DatasetSpec(
            "table",
            None,
            "CSV/TSV/Parquet with image and score columns (optional 'split', 'type' (per-type "
            "metrics) and 'ref' (reference photo) columns)",
            None,
            "declared by the source: scale=[low, high] (+ higher_is_better) and task are required",
            (),
            ("",),
            "a 'split' column (train/test) if present, else the file is the split",
            "table",
        ),
    ]
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASET_SPECS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASET_SPECS)}") from None


def declared_scale(src: DatasetSource, spec: Optional[DatasetSpec] = None) -> ScoreScale:
    """The scale scores of `src` are mapped with: `src.scale` if given, else the spec's (column's) scale."""
    spec = spec or get_spec(src.name)
    if src.scale is not None:
        try:
            return ScoreScale(float(src.scale[0]), float(src.scale[1]), src.higher_is_better)
        except ValueError as e:
            raise DatasetError(f"{src.name}: scale {list(src.scale)}: {e}") from None
    if spec.score_columns and src.score_column:
        if src.score_column not in spec.score_columns:
            raise DatasetError(
                f"{src.name}: score_column {src.score_column!r} has no declared scale; known "
                f"columns {sorted(spec.score_columns)} or set scale=[low, high]"
            )
        return spec.score_columns[src.score_column]
    if spec.scale is None:
        raise DatasetError(f"{src.name}: the source must declare its native score range: scale=[low, high]")
    return spec.scale


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def spec_for_benchmark(benchmark: str) -> Optional[DatasetSpec]:
    """The spec a benchmark name refers to (its name or an alias, case/punctuation-insensitive, e.g. 'KonIQ-10k')."""
    key = _norm(benchmark)
    for s in DATASET_SPECS.values():
        if key in {_norm(s.name), *(_norm(a) for a in s.aliases)}:
            return s
    return None


def describe_specs() -> str:
    """A plain-text table of the specs (for docs and `--help`)."""
    lines = []
    for s in DATASET_SPECS.values():
        lines.append(
            f"{s.name:12s} {s.task or '-':4s} {s.scale_note}\n{'':17s}labels: {s.format}; "
            f"files: {', '.join(s.label_files) or '(label_file)'}; images: {', '.join(s.image_dirs)}\n"
            f"{'':17s}test split: {s.test_split}"
        )
    return "\n".join(lines)


PAPER_SOURCE = "TATAR paper (arXiv 2603.19779), Table 1; task means are over the paper's 4 benchmarks per task"
