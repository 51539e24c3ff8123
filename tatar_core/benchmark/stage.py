"""The benchmark stage: score every benchmark with the GRPO checkpoint; SRCC/PLCC, the report.

One unit of work per benchmark, mapped by `ctx.mapper` (a Prefect task runner under Prefect, a loop otherwise);
progress: images done / total over all benchmarks. Writes `predictions.parquet`, `metrics.parquet`,
`skipped.parquet`, `report.md`, `report.html` and scatter plots; the report shows the curves of the scored model
(its GRPO stage and the SFT stage that GRPO started from).
"""
from __future__ import annotations

import threading
from pathlib import Path

from data_contracts import StageContext, StageOutputs, StageResult, write_records
from data_contracts.config import PipelineConfig
from data_contracts.manifest import stage_folder
from data_contracts.records import MetricRecord, PredictionRecord, SampleRecord, SkippedRecord
from tatar_core.benchmark.report import REPORT_HTML, format_table, write_report
from tatar_core.benchmark.run import benchmarks_from_samples, load_benchmark, run_benchmark
from tatar_core.samples.readers import select_subset
from tatar_core.training.curves import curve_files
from tatar_core.samples.stage import read_samples


def benchmark_sets(cfg: PipelineConfig, samples: StageResult
                   ) -> list[tuple[str, str, list[SampleRecord], list[SkippedRecord]]]:
    """(name, task, samples, skipped) for every benchmark the config asks for."""
    bc = cfg.benchmark
    sets = []
    if bc.include_demo_test:
        sets += [(name, task, rows, []) for name, task, rows in benchmarks_from_samples(read_samples(samples), "test")]
    sets += [load_benchmark(src) for src in bc.datasets]
    return sets


def model_curves(grpo: StageResult, run_root: Path) -> list[tuple[str, list[Path]]]:
    """(heading, PNGs) of the scored model's GRPO stage and of the SFT stage it started from (when they have any)."""
    out = []
    dirs = [("GRPO", grpo.dir)]
    if "sft" in grpo.manifest.inputs:
        dirs.append(("SFT", stage_folder(run_root, "sft", grpo.manifest.inputs["sft"])))
    for name, d in dirs:
        pngs = curve_files(d)
        if pngs:
            out.append((f"{name} (`{d.parent.name}/{d.name}`)", pngs))
    return out


def run_stage(cfg: PipelineConfig, out_dir: Path, upstream: dict[str, StageResult], ctx: StageContext) -> StageOutputs:
    from tatar_core.scoring.scorer import Scorer

    bc = cfg.benchmark
    sets = benchmark_sets(cfg, upstream["samples"])
    if not sets:
        raise ValueError("benchmark: nothing to score (include_demo_test is off and benchmark.datasets is empty)")
    model_dir = upstream["grpo"].path("model")
    lock, scorers = threading.Lock(), {}

    def scorer() -> Scorer:
        with lock:  # one model per process, loaded once
            if "s" not in scorers:
                scorers["s"] = Scorer(model_dir, model_cfg=cfg.model, batch_size=bc.batch_size,
                                      max_new_tokens=bc.max_new_tokens, readout=bc.readout, device=bc.device,
                                      draft_tokens=bc.draft_tokens)
            return scorers["s"]

    total = sum(len(select_subset([s.sample_id for s in samples], bc.max_items)) for _, _, samples, _ in sets)
    done = {"n": 0}

    def advance(n: int) -> None:
        with lock:
            done["n"] += n
            ctx.progress("benchmark", done["n"], total, unit="images")

    def one(item):
        name, task, samples, skipped = item
        return run_benchmark(name, task, samples, scorer(), skipped=skipped, max_items=bc.max_items,
                             bootstrap=bc.bootstrap, seed=bc.seed, progress=False, on_progress=advance)

    ctx.progress("benchmark", 0, total, unit="images")

    outcomes = ctx.mapper(one, sets)
    preds = [p for o in outcomes for p in o.predictions]
    metrics = [o.metrics for o in outcomes]
    skipped = [s for o in outcomes for s in o.skipped]
    write_records(preds, out_dir / "predictions.parquet", PredictionRecord)
    write_records(metrics, out_dir / "metrics.parquet", MetricRecord)
    write_records(skipped, out_dir / "skipped.parquet", SkippedRecord)
    report = write_report(metrics, preds, out_dir, curves=model_curves(upstream["grpo"], ctx.run_root))
    ctx.log("\n" + format_table(metrics))
    return StageOutputs(
        {"predictions": "predictions.parquet", "metrics": "metrics.parquet", "skipped": "skipped.parquet",
         "report": Path(report).name, "report_html": REPORT_HTML},
        {"predictions": len(preds), "benchmarks": len(metrics), "skipped": len(skipped)},
        {"benchmarks": [m.model_dump(mode="json") for m in metrics], "model": str(model_dir)},
    )
