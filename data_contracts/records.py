"""Pydantic record schemas, one per Parquet file a stage writes.

Scores are always on 0–100, higher is better. `task` is "iqa" (quality) or "iaa" (aesthetics).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

Task = Literal["iqa", "iaa"]
Split = Literal["train", "validation", "test"]
ParseStatus = Literal["strict", "lenient", "failed"]
# A file path stored relative to the run folder when the file is inside it (data_contracts.paths): converted by
# write_records / read_records given the run root.
RunPath = Annotated[str, Field(json_schema_extra={"run_relative": True})]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleRecord(Record):
    """One image with its known score (`samples.parquet`)."""

    sample_id: str
    image_path: RunPath = Field(description="the image file (in the file: relative to the run folder when inside it)")
    task: Task
    score: float = Field(ge=0, le=100, description="ground truth on 0–100, higher is better")
    split: Split
    source: str = Field(description="dataset name, e.g. demo-iqa, koniq")
    ref_id: str = Field(description="reference photo / content id; train and test never share one")
    attributes: str = Field(default="", description="JSON object of per-attribute texts (ArtiMuse), or empty")
    meta: str = Field(default="", description="JSON object with provenance (distortion type, level, ...)")


class RationaleRecord(Record):
    """A teacher-written rationale ending in the known score (`rationales.parquet`)."""

    sample_id: str
    image_path: RunPath
    task: Task
    score: float = Field(ge=0, le=100)
    rationale: str = Field(description="the text inside <think>…</think>")
    target: str = Field(description="full training target: <think>…</think><answer>NN.NN</answer>")
    teacher: str = Field(description="teacher id + settings hash; part of the resume key")
    n_words: int


class FailedRecord(Record):
    """A row the teacher could not produce after all retries (`failed.parquet`); retried next run."""

    sample_id: str
    task: Task
    teacher: str
    error: str
    attempts: int


class KeptRecord(RationaleRecord):
    """A rationale that passed the rule checks and the judge (`kept.parquet`)."""

    judge: str = Field(default="", description="JSON verdict of the LLM judge, or empty for rules only")


class RejectedRecord(RationaleRecord):
    """A rationale that failed; `reasons` lists every failed check (`rejected.parquet`)."""

    reasons: list[str]
    judge: str = ""


class PredictionRecord(Record):
    """One scored benchmark image (`predictions.parquet`)."""

    benchmark: str
    sample_id: str
    image_path: RunPath
    task: Task
    gt: float = Field(description="ground truth on 0–100")
    pred: Optional[float] = Field(
        default=None, description="score on 0–100 by the benchmark's readout; None when unparsable"
    )
    parse: ParseStatus
    completion: str
    n_words: int
    model: str = Field(
        default="grpo",
        description="what scored it: grpo | sft | base (the model before SFT) | a baseline (laplacian, random_forest)",
    )
    pred_greedy: Optional[float] = Field(default=None, description="the parsed greedy answer (= pred for greedy)")
    ref_id: str = Field(default="", description="the sample's reference/content id")
    group: str = Field(default="", description="the sample's distortion type or manipulation, when known")


class ScoredRecord(Record):
    """One image scored by one model: the rows of a scoring worker's output (a benchmark shard's Parquet file)."""

    item: str = Field(description="the caller's id of the image (unique within one worker spec)")
    model: str = Field(description="label of the model that scored it (grpo, sft, base, ...)")
    score: Optional[float] = Field(default=None, description="0–100 by the readout; None when unparsable/unreadable")
    greedy: Optional[float] = Field(default=None, description="the parsed greedy answer")
    parse: Literal["strict", "lenient", "failed", "unreadable"]
    completion: str = ""
    n_words: int = 0
    error: str = Field(default="", description="unreadable: why the image could not be decoded")


class SkippedRecord(Record):
    """A benchmark row that could not be used (`skipped.parquet`)."""

    benchmark: str
    item: str = Field(description="image path or label-file row")
    reason: str
    split: str = Field(
        "",
        description="train | test | validation | unknown (a label row whose split cannot be told); "
        "empty when not known to the writer",
    )


class MetricRecord(Record):
    """Correlation metrics per benchmark (`metrics.parquet`); NaN where n_valid < 3."""

    benchmark: str
    task: Task
    n: int
    n_valid: int
    n_skipped: int
    n_lenient: int = 0
    srcc: float
    plcc: float
    plcc_logistic: float = float("nan")
    srcc_lo: float = float("nan")
    srcc_hi: float = float("nan")
    plcc_lo: float = float("nan")
    plcc_hi: float = float("nan")
    mean_words: float = float("nan")
    model: str = "grpo"
    readout: str = Field(default="greedy", description="greedy | expected: how `pred` was read out")
    srcc_greedy: float = float("nan")
    plcc_greedy: float = float("nan")
    pair_acc: float = Field(
        default=float("nan"),
        description="within-reference pairwise accuracy: over pairs of "
        "images of the same reference with different ground truth, the share the prediction "
        "orders correctly (ties count 1/2)",
    )


class GroupMetricRecord(Record):
    """SRCC per distortion type / manipulation within a benchmark (`groups.parquet`)."""

    benchmark: str
    model: str
    task: Task
    group: str
    n_valid: int
    srcc: float
    srcc_greedy: float = float("nan")
    pair_acc: float = float("nan")


REWARD_COLUMN = re.compile(r"reward_[A-Za-z_][A-Za-z0-9_]*")


class TrainLogRecord(Record):
    """Per GRPO logging step and task: the mean weighted value of every reward, their sum, completion length and
    parse rate (`train_log.parquet`).

    Besides the fixed columns, one float column `reward_<name>` per reward registered in
    tatar_core.method.rewards.REWARDS (by default reward_score, reward_rank, reward_format): the mean over the
    step's completions of that task of weight × reward; reward_total is their sum. The group statistics of the summed
    reward (group_std, adv_var, zero_std_frac, groups) come from tatar_core.training.group_stats.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, float]

    step: int
    task: Task
    n: int
    reward_total: float
    words: float
    parse_rate: float
    group_std: float = Field(default=float("nan"), description="mean within-group std of the summed reward")
    adv_var: float = Field(
        default=float("nan"), description="mean squared advantage (their variance) over the task's completions"
    )
    zero_std_frac: float = Field(
        default=float("nan"),
        description="share of groups whose rewards are all equal (zero advantage: no learning signal)",
    )
    groups: int = Field(default=0, description="prompt groups of this task in the logging step")

    @model_validator(mode="after")
    def _reward_columns(self):
        bad = [k for k in self.model_extra if not REWARD_COLUMN.fullmatch(k)]
        if bad:
            raise ValueError(f"unexpected column(s) {bad}: the extra columns are rewards, named reward_<name>")
        return self

    def rewards(self) -> dict[str, float]:
        """{reward name: mean weighted value}, e.g. {"score": 0.41, "rank": 0.0, "format": 1.0}."""
        return {k.removeprefix("reward_"): v for k, v in self.model_extra.items()}
