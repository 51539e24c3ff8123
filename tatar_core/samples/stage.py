"""The samples stage: the built-in demo set or datasets in their native formats -> `samples.parquet`.

Writes `samples.parquet` (SampleRecord: image path, task, score on 0–100, split, source, ref id) and
`skipped.parquet` (unreadable images and label rows, with reasons and their split; each row once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from data_contracts import StageContext, StageOutputs, StageResult, write_records
from data_contracts.config import PipelineConfig
from data_contracts.records import SampleRecord, SkippedRecord
from tatar_core.method.prompts import TASKS

SPLITS = ("train", "test")


def read_samples(result: StageResult, split: Optional[str] = None) -> list[SampleRecord]:
    """The rows of a finished samples stage, optionally only one split."""
    rows = result.records("samples", SampleRecord)
    return [s for s in rows if split is None or s.split == split]


def run_stage(cfg: PipelineConfig, out_dir: Path, upstream: dict[str, StageResult], ctx: StageContext) -> StageOutputs:
    sc = cfg.samples
    skipped: list[SkippedRecord] = []
    if sc.source == "demo":
        from tatar_core.demo.data import build_demo_samples

        samples = build_demo_samples(
            sc.demo, out_dir, on_progress=lambda done, total: ctx.progress("samples", done, total, unit="images")
        )
    else:
        from tatar_core.samples.readers import load_dataset

        if not sc.datasets:
            raise ValueError("samples.source is 'datasets' but samples.datasets is empty")
        samples = []
        for src in sc.datasets:
            res = load_dataset(src)
            samples += res.samples
            skipped += res.skipped
        # two sources on one label file (e.g. its train and its test split) both list its rows of unknown split
        skipped = list({(r.benchmark, r.item, r.reason): r for r in skipped}.values())
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("samples: sample_id values are not unique")
    write_records(samples, out_dir / "samples.parquet", SampleRecord, run_root=ctx.run_root)
    write_records(skipped, out_dir / "skipped.parquet", SkippedRecord)
    counts = {"samples": len(samples), "skipped": len(skipped)}
    for split in SPLITS:
        for task in TASKS:
            counts[f"{split}_{task}"] = sum(s.split == split and s.task == task for s in samples)
    return StageOutputs({"samples": "samples.parquet", "skipped": "skipped.parquet"}, counts)
