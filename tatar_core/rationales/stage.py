"""The rationales stage: one teacher rationale per train-split sample -> `rationales.parquet`.

Resumable: rows go into Parquet shards as they arrive (`tatar_core.rationales.runner`); rows that failed after
retries go to `failed.parquet`, the stage then stops as incomplete and the next run retries only those.
"""

from __future__ import annotations

from pathlib import Path

from data_contracts import StageContext, StageIncomplete, StageOutputs, StageResult
from data_contracts.config import PipelineConfig
from tatar_core.rationales.openai_teacher import make_teacher
from tatar_core.rationales.runner import generate_rationales
from tatar_core.samples.stage import read_samples

OFFLINE_CONCURRENCY = 2  # threads for the offline teacher (it measures images with numpy)


def run_stage(cfg: PipelineConfig, out_dir: Path, upstream: dict[str, StageResult], ctx: StageContext) -> StageOutputs:
    rc = cfg.rationales
    train = read_samples(upstream["samples"], "train")
    if rc.max_samples is not None:
        train = train[: rc.max_samples]
    teacher = make_teacher(rc.teacher, secret_resolver=ctx.secret_resolver)
    concurrency = rc.teacher.endpoint.concurrency if rc.teacher.kind == "openai" else OFFLINE_CONCURRENCY
    res = generate_rationales(
        train,
        teacher,
        out_dir,
        shard_size=rc.shard_size,
        concurrency=concurrency,
        run_root=ctx.run_root,
        progress=False,
        on_progress=lambda done, total, **info: ctx.progress("rationales", done, total, unit="rows", **info),
    )
    counts = {
        "train_samples": len(train),
        "rationales": len(res.records),
        "failed": len(res.failed),
        "resumed": res.n_resumed,
    }
    if res.failed:
        raise StageIncomplete(
            f"rationales: {len(res.failed)} of {len(train)} rows failed after retries "
            f"(errors in {out_dir / 'failed.parquet'}); {len(res.records)} are saved; run the stage again to retry "
            f"them"
        )
    return StageOutputs(
        {"rationales": "rationales.parquet", "failed": "failed.parquet"}, counts, {"teacher": teacher.teacher_id}
    )
