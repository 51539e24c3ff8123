"""The benchmark stage: score every benchmark with the GRPO checkpoint; SRCC/PLCC, the report.

With `benchmark.compare` the model before SFT ("base") and the SFT checkpoint score the same images, and with
`benchmark.baselines` so do classical baselines (`tatar_core.benchmark.baselines`): the report then shows what
each training stage added, beside what simple methods reach on the same held-out images.

The models score in shards (`tatar_core.benchmark.shards`): the images of all benchmarks are split by expected cost
over `benchmark.num_gpus` engines (default: every visible GPU, 1 on CPU), each shard scoring its images with every
model; one shard with the transformers engine runs in this process, anything else as scoring-worker subprocesses
(`benchmark.engine: vllm` always). The shards are merged and the metrics computed once, here; the baselines are
cheap and score in this process. Progress: (image, model) pairs scored / total. Writes `predictions.parquet`,
`metrics.parquet`, `groups.parquet` (per distortion type / manipulation), `skipped.parquet`, `report.md`,
`report.html` (with the curves of the scored model: its GRPO stage and the SFT stage it started from), scatter
plots, and `shards/` (kept: a rerun after a failure reuses the finished shards).
"""

from __future__ import annotations

import sys
from pathlib import Path

from data_contracts import StageContext, StageOutputs, StageResult, write_records
from data_contracts.config import PipelineConfig
from data_contracts.manifest import stage_folder
from data_contracts.records import GroupMetricRecord, MetricRecord, PredictionRecord, SampleRecord, SkippedRecord
from tatar_core.benchmark.report import REPORT_HTML, format_table, write_report
from tatar_core.benchmark.run import (
    benchmark_outcome,
    benchmark_subset,
    benchmarks_from_samples,
    load_benchmark,
    prediction,
    run_benchmark,
)
from tatar_core.samples.stage import read_samples
from tatar_core.training.curves import curve_files


def benchmark_sets(
    cfg: PipelineConfig, samples: StageResult
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


def shard_count(cfg: PipelineConfig, n_items: int, gpus: list[str]) -> int:
    """How many shards: benchmark.num_gpus, else one per visible GPU (1 on CPU); at most one per image."""
    n = cfg.benchmark.num_gpus or max(1, len(gpus))
    if gpus and n > len(gpus):
        raise ValueError(
            f"benchmark.num_gpus: {n}, but this node sees {len(gpus)} GPU(s) (CUDA_VISIBLE_DEVICES={','.join(gpus)})"
        )
    return max(1, min(n, n_items))


def prepare_shards(cfg: PipelineConfig, out_dir: Path, sets, model_dirs: dict[str, Path], gpus: list[str]):
    """(shards, todo, in_process): the worker specs of this stage in out_dir/shards, the samples each benchmark
    scores (`todo[k]` for `sets[k]`), and whether the shards run in this process."""
    from tatar_core.benchmark.shards import write_shards

    bc = cfg.benchmark
    todo = [benchmark_subset(name, task, samples, bc.max_items) for name, task, samples, _ in sets]
    items = [(f"{k}:{s.sample_id}", s.image_path, s.task) for k, rows in enumerate(todo) for s in rows]
    n = shard_count(cfg, len(items), gpus)
    in_process = bc.engine == "transformers" and n == 1
    device = bc.device if in_process or not gpus else ("cpu" if bc.device == "cpu" else "cuda")
    scorer = {
        "batch_size": bc.batch_size,
        "max_new_tokens": bc.max_new_tokens,
        "readout": bc.readout,
        "draft_tokens": bc.draft_tokens,
        "device": device,
    }
    shards = write_shards(
        Path(out_dir) / "shards",
        items,
        list(model_dirs.items()),
        n,
        engine=bc.engine,
        model_cfg=cfg.model,
        scorer=scorer,
        vllm_args=bc.vllm,
    )
    return shards, todo, in_process


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
    from tatar_core.benchmark.shards import merge_shards, run_shards, visible_gpus

    bc = cfg.benchmark
    sets = benchmark_sets(cfg, upstream["samples"])
    if not sets:
        raise ValueError("benchmark: nothing to score (include_demo_test is off and benchmark.datasets is empty)")
    model_dirs = _model_dirs(cfg, upstream, ctx)
    gpus = visible_gpus() if bc.device != "cpu" else []
    shards, todo, in_process = prepare_shards(cfg, out_dir, sets, model_dirs, gpus)
    ctx.log(
        f"benchmark: {sum(map(len, todo))} images x {len(model_dirs)} model(s) in {len(shards)} shard(s), "
        f"engine {bc.engine}" + (" (in this process)" if in_process else "")
    )
    total, done = sum(map(len, todo)) * len(model_dirs), [0]

    def advance(n: int) -> None:  # (image, model) pairs scored
        done[0] += n
        ctx.progress("benchmark", done[0], total, unit="images")

    ctx.progress("benchmark", 0, total, unit="images")
    # the interpreter of the scoring environment: `launch.python` (the training / GPU environment) plugs in here
    run_shards(shards, in_process=in_process, python=sys.executable, gpus=gpus, log=ctx.log, on_progress=advance)
    rows = merge_shards(shards, list(model_dirs), [f"{k}:{s.sample_id}" for k, t in enumerate(todo) for s in t])

    outcomes, skipped = [], []
    for model in model_dirs:
        for k, (name, task, _, load_skipped) in enumerate(sets):
            preds, scoring_skipped = [], []
            for s in todo[k]:
                r = rows[(model, f"{k}:{s.sample_id}")]
                if r.parse == "unreadable":
                    scoring_skipped.append(SkippedRecord(benchmark=name, item=s.image_path, reason=r.error))
                else:
                    preds.append(prediction(name, task, s, model, r.score, r.parse, r.completion, r.n_words, r.greedy))
            all_skipped = list(load_skipped) + scoring_skipped
            outcomes.append(
                benchmark_outcome(
                    name, task, preds, all_skipped, bootstrap=bc.bootstrap, seed=bc.seed, readout=bc.readout
                )
            )
            if model == "grpo":
                skipped += all_skipped
    for baseline in bc.baselines:  # IQA methods, cheap: in this process
        scorer = _baseline(baseline, cfg, upstream)
        for name, task, samples, load_skipped in sets:
            if task == "iqa":
                outcomes.append(
                    run_benchmark(
                        name,
                        task,
                        samples,
                        scorer,
                        skipped=load_skipped,
                        max_items=bc.max_items,
                        bootstrap=bc.bootstrap,
                        seed=bc.seed,
                        model=baseline,
                        progress=False,
                    )
                )
    preds = [p for o in outcomes for p in o.predictions]
    metrics = [o.metrics for o in outcomes]
    groups = [g for o in outcomes for g in o.groups]
    write_records(preds, out_dir / "predictions.parquet", PredictionRecord, run_root=ctx.run_root)
    write_records(metrics, out_dir / "metrics.parquet", MetricRecord)
    write_records(groups, out_dir / "groups.parquet", GroupMetricRecord)
    write_records(skipped, out_dir / "skipped.parquet", SkippedRecord)
    report = write_report(
        metrics, preds, out_dir, groups=groups, engine=bc.engine, curves=model_curves(upstream["grpo"], ctx.run_root)
    )
    ctx.log("\n" + format_table(metrics))
    return StageOutputs(
        {
            "predictions": "predictions.parquet",
            "metrics": "metrics.parquet",
            "groups": "groups.parquet",
            "skipped": "skipped.parquet",
            "report": Path(report).name,
            "report_html": REPORT_HTML,
        },
        {"predictions": len(preds), "benchmarks": len(sets), "skipped": len(skipped), "shards": len(shards)},
        {
            "benchmarks": [m.model_dump(mode="json") for m in metrics],
            "model": str(model_dirs["grpo"]),
            "readout": bc.readout,
            "engine": bc.engine,
        },
    )


def _baseline(name: str, cfg: PipelineConfig, upstream: dict[str, StageResult]):
    if name == "laplacian":
        from tatar_core.benchmark.baselines import LaplacianScorer

        return LaplacianScorer()
    from tatar_core.benchmark.baselines import ForestScorer

    train = [s for s in read_samples(upstream["samples"], "train") if s.task == "iqa"]
    return ForestScorer(train, seed=cfg.benchmark.seed)
