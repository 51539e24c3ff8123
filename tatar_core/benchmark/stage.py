"""The benchmark stage: score every benchmark with the GRPO checkpoint; SRCC/PLCC, the report.

With `benchmark.compare` the model before SFT ("base") and the SFT checkpoint score the same images, and with
`benchmark.baselines` so do classical baselines (`tatar_core.benchmark.baselines`): the report then shows what
each training stage added, beside what simple methods reach on the same held-out images.

One unit of work per (model, benchmark), mapped by `ctx.mapper` (a Prefect task runner under Prefect, a loop
otherwise). Writes `predictions.parquet`, `metrics.parquet`, `groups.parquet` (per distortion type /
manipulation), `skipped.parquet`, `report.md` and scatter plots.
"""
from __future__ import annotations

import threading
from pathlib import Path

from data_contracts import StageContext, StageOutputs, StageResult, write_records
from data_contracts.config import PipelineConfig
from data_contracts.records import GroupMetricRecord, MetricRecord, PredictionRecord, SampleRecord, SkippedRecord
from tatar_core.benchmark.report import format_table, write_report
from tatar_core.benchmark.run import benchmarks_from_samples, load_benchmark, run_benchmark
from tatar_core.samples.stage import read_samples


def benchmark_sets(cfg: PipelineConfig, samples: StageResult
                   ) -> list[tuple[str, str, list[SampleRecord], list[SkippedRecord]]]:
    """(name, task, samples, skipped) for every benchmark the config asks for."""
    bc = cfg.benchmark
    sets = []
    if bc.include_demo_test:
        held_out = benchmarks_from_samples(read_samples(samples), bc.demo_split)
        sets += [(name, task, rows, []) for name, task, rows in held_out]
    sets += [load_benchmark(src) for src in bc.datasets]
    return sets


def _model_dirs(cfg: PipelineConfig, upstream: dict[str, StageResult], ctx: StageContext) -> dict[str, Path]:
    """model label -> checkpoint folder: grpo, then the `compare` models."""
    dirs = {"grpo": upstream["grpo"].path("model")}
    if "sft" in cfg.benchmark.compare:
        dirs["sft"] = upstream["sft"].path("model")
    if "base" in cfg.benchmark.compare:
        from tatar_core.models.loading import resolve_model

        dirs["base"] = resolve_model(cfg.model, ctx.run_root / "models")
    return dirs


def run_stage(cfg: PipelineConfig, out_dir: Path, upstream: dict[str, StageResult], ctx: StageContext) -> StageOutputs:
    from tatar_core.scoring.scorer import Scorer

    bc = cfg.benchmark
    sets = benchmark_sets(cfg, upstream["samples"])
    if not sets:
        raise ValueError("benchmark: nothing to score (include_demo_test is off and benchmark.datasets is empty)")
    model_dirs = _model_dirs(cfg, upstream, ctx)
    lock, scorers = threading.Lock(), {}

    def scorer(model: str):
        with lock:  # one instance per model and process, loaded once
            if model not in scorers:
                if model == "laplacian":
                    from tatar_core.benchmark.baselines import LaplacianScorer

                    scorers[model] = LaplacianScorer()
                elif model == "random_forest":
                    from tatar_core.benchmark.baselines import ForestScorer

                    train = [s for s in read_samples(upstream["samples"], "train") if s.task == "iqa"]
                    scorers[model] = ForestScorer(train, seed=bc.seed)
                else:
                    scorers[model] = Scorer(model_dirs[model], model_cfg=cfg.model, batch_size=bc.batch_size,
                                            max_new_tokens=bc.max_new_tokens, readout=bc.readout, device=bc.device,
                                            draft_tokens=bc.draft_tokens)
            return scorers[model]

    def one(item):
        model, (name, task, samples, skipped) = item
        return run_benchmark(name, task, samples, scorer(model), skipped=skipped, max_items=bc.max_items,
                             bootstrap=bc.bootstrap, seed=bc.seed, model=model)

    units = [(m, s) for m in model_dirs for s in sets]
    units += [(b, s) for b in bc.baselines for s in sets if s[1] == "iqa"]  # the baselines are IQA methods
    outcomes = ctx.mapper(one, units)
    preds = [p for o in outcomes for p in o.predictions]
    metrics = [o.metrics for o in outcomes]
    groups = [g for o in outcomes for g in o.groups]
    skipped = [s for (m, _), o in zip(units, outcomes) if m == "grpo" for s in o.skipped]
    write_records(preds, out_dir / "predictions.parquet", PredictionRecord)
    write_records(metrics, out_dir / "metrics.parquet", MetricRecord)
    write_records(groups, out_dir / "groups.parquet", GroupMetricRecord)
    write_records(skipped, out_dir / "skipped.parquet", SkippedRecord)
    report = write_report(metrics, preds, out_dir, groups=groups)
    ctx.log("\n" + format_table(metrics))
    return StageOutputs(
        {"predictions": "predictions.parquet", "metrics": "metrics.parquet", "groups": "groups.parquet",
         "skipped": "skipped.parquet", "report": Path(report).name},
        {"predictions": len(preds), "benchmarks": len(sets), "skipped": len(skipped)},
        {"benchmarks": [m.model_dump(mode="json") for m in metrics], "model": str(model_dirs["grpo"]),
         "readout": bc.readout},
    )
