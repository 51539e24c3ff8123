"""Text for `tatar plan` (what would run, with which inputs, code, keys and launch commands) and `tatar summary`."""

from __future__ import annotations

from pathlib import Path

from data_contracts.config import EMBEDDED_MODELS, STAGES, PipelineConfig
from tatar_core.benchmark.run import benchmark_source
from tatar_core.code_version import import_closure
from tatar_core.pipeline.describe import reads
from tatar_core.pipeline.keys import STAGE_ENTRY, code_version
from tatar_core.pipeline.runner import Pipeline
from tatar_core.samples.readers import check_source
from tatar_core.samples.specs import DATASET_SPECS


def missing_paths(cfg: PipelineConfig) -> list[str]:
    """Every local path the config names that does not exist, as 'key: path (what)', and every dataset source that
    the samples loader would refuse (unknown name, label file or image folder not under its root): the loader's own
    checks (`readers.check_source`), without reading labels or images."""
    out = []
    if cfg.model.path not in EMBEDDED_MODELS and not (Path(cfg.model.path) / "config.json").exists():
        out.append(f"model.path: {cfg.model.path} (a local model folder with config.json)")
    sources = [
        ("samples", cfg.samples.datasets if cfg.samples.source == "datasets" else []),
        ("benchmark", cfg.benchmark.datasets),
    ]
    for section, datasets in sources:
        for i, src in enumerate(datasets):
            if not Path(src.root).expanduser().is_dir():
                out.append(f"{section}.datasets[{i}].root: {src.root} ({src.name} dataset folder)")
                if src.name in DATASET_SPECS:
                    continue
            problem = check_source(benchmark_source(src) if section == "benchmark" else src)  # the loader's checks
            if problem:
                out.append(f"{section}.datasets[{i}]: {problem}")
    for stage in ("sft", "grpo"):
        launch = getattr(cfg, stage).launch
        if launch.deepspeed_config and not Path(launch.deepspeed_config).exists():
            out.append(f"{stage}.launch.deepspeed_config: {launch.deepspeed_config} (DeepSpeed json)")
        if launch.python and not Path(launch.python).is_file():
            out.append(
                f"{stage}.launch.python: {launch.python} (the training environment's interpreter; "
                "on the node that trains)"
            )
    return out


def _launch(cfg: PipelineConfig, stage: str, pipe: Pipeline) -> str:
    launch = getattr(cfg, stage).launch
    if launch.mode == "inprocess":
        return "in-process (trl, this Python process)"
    from tatar_core.training.launch import launch_command, spec_path

    return " ".join(launch_command(stage, launch, spec_path(pipe.dir(stage))))


# The paper's GRPO layout: 8 GPUs, 16 prompts x G=8 per step -> 16 completions per device per micro-step.
PAPER_COMPLETIONS_PER_DEVICE = 16


def _batch(cfg: PipelineConfig, stage: str) -> list[str]:
    c = getattr(cfg, stage)
    n = c.launch.num_processes
    if stage == "sft":
        eff = c.per_device_train_batch_size * c.gradient_accumulation_steps * n
        score = (
            f"; score-token loss w {c.score_loss_weight:g}, soft label sigma {c.score_label_sigma:g} points"
            if c.score_loss_weight > 0
            else ""
        )
        return [
            f"{c.per_device_train_batch_size} per device x {c.gradient_accumulation_steps} accumulation x {n} "
            f"process(es) = effective batch {eff}; lr {c.learning_rate}{score}"
        ]
    from tatar_core.training.grpo import batch_plan

    C = c.prompts_per_step * c.num_generations
    lines = [
        f"{c.prompts_per_step} prompts x G={c.num_generations} = {C} completions per step over {n} process(es), "
        f">= {c.min_iaa_images_per_step} IAA images per step; lr {c.learning_rate}, beta {c.beta}"
    ]
    try:
        plan = batch_plan(c, n)
    except ValueError as e:
        return lines + [f"NOT RUNNABLE: {e}"]
    per = plan.per_device_train_batch_size
    lines.append(
        f"{per} completions per device per micro-step x {plan.gradient_accumulation_steps} accumulation; "
        f"each process generates {per * plan.gradient_accumulation_steps} per step"
    )
    if per > PAPER_COMPLETIONS_PER_DEVICE:
        fits = [
            ga
            for ga in range(plan.gradient_accumulation_steps, C + 1)
            if C % (n * ga) == 0 and C // (n * ga) <= PAPER_COMPLETIONS_PER_DEVICE
        ]
        hint = (
            f"set grpo.gradient_accumulation_steps: {fits[0]} for {C // (n * fits[0])} per device per micro-step"
            if fits
            else "lower prompts_per_step or num_generations"
        )
        lines.append(
            f"WARNING: {per} completions per device per micro-step with {n} process(es) (the paper has "
            f"{PAPER_COMPLETIONS_PER_DEVICE} per GPU on 8 GPUs); that many sequences' activations at once rarely "
            f"fit one device: {hint}"
        )
    return lines


def _rewards(cfg: PipelineConfig) -> str:
    """The GRPO reward weights per task after defaults and ablation, e.g. `iqa score 1 rank 0 format 1 | iaa …`."""
    from tatar_core.method.rewards import effective_weights

    w = effective_weights(cfg.grpo)  # names checked by Pipeline(cfg)
    return " | ".join(f"{t} " + " ".join(f"{k} {v:g}" for k, v in ws.items()) for t, ws in w.items()) + (
        f" (ablation {cfg.grpo.ablation})" if cfg.grpo.ablation != "none" else ""
    )


def _precision(cfg: PipelineConfig, stage: str) -> str:
    c, m = getattr(cfg, stage), cfg.model
    if c.uses_deepspeed:
        return (
            f"DeepSpeed ({c.launch.deepspeed_config or 'trainer_args.deepspeed'}): its "
            f"{('bf16' if c.bf16 else 'fp32')} engine keeps fp32 master weights"
        )
    if m.train_dtype == "float32":
        return "fp32 master weights" + (", bf16 autocast compute" if c.bf16 else ", fp32 compute")
    return f"PURE {m.train_dtype} weights (model.pure_low_precision_training): updates below half an ulp are lost"


def _scoring(cfg: PipelineConfig, pipe: Pipeline) -> list[str]:
    """The benchmark's engine and shard plan: processes, where they run, and the split of the images known so far."""
    from tatar_core.benchmark.shards import shard_plan_text, visible_gpus
    from tatar_core.scoring.worker import worker_command

    bc = cfg.benchmark
    gpus = visible_gpus(probe=False) if bc.device != "cpu" else []  # without importing torch
    n = bc.num_gpus or max(1, len(gpus))
    why = "benchmark.num_gpus" if bc.num_gpus else f"{len(gpus)} GPU(s) visible here" if gpus else "no GPU here"
    if bc.engine == "transformers" and n == 1:
        run = "in this process"
    else:
        run = f"{n} scoring worker process(es), one engine each on {'its own GPU' if gpus else 'CPU'}: " + " ".join(
            worker_command(pipe.dir("benchmark") / "shards" / "shard-II-of-NN-<digest>.json")
        )
    engine = {
        "transformers": "transformers (batched greedy scorer, speculative verification)",
        "vllm": f"vllm (offline LLM.generate; extra LLM arguments: {bc.vllm or 'none'})",
    }[bc.engine]
    lines = [f"engine: {engine}", f"shards: {n} ({why}); {run}"]
    counts: dict[str, int] = {}
    if bc.include_demo_test and pipe.manifest("samples") is not None:
        from tatar_core.benchmark.run import benchmarks_from_samples
        from tatar_core.samples.stage import read_samples

        for _, task, rows in benchmarks_from_samples(read_samples(pipe.result("samples")), bc.demo_split):
            counts[task] = counts.get(task, 0) + min(len(rows), bc.max_items or len(rows))
    if counts:
        lines += [f"  {t}" for t in shard_plan_text(counts, n)]
        if bc.datasets:
            lines.append("  (+ benchmark.datasets, split with them when loaded)")
    else:
        lines.append("  images split by expected cost (iqa 1, iaa 5) when the samples stage has finished")
    return lines


def format_plan(cfg: PipelineConfig, source: str = "") -> tuple[str, list[str]]:
    pipe = Pipeline(cfg, log=lambda _: None)
    status = pipe.status()
    lines = [f"Config {source}: valid", f"Run folder: {pipe.root}", ""]
    for stage in STAGES:
        lines.append(f"{stage}  [{status[stage]}]  key {pipe.keys[stage][:16]}")
        lines.append(f"    reads:  {reads(cfg, stage)}")
        lines.append(f"    folder: {pipe.dir(stage)}")
        lines.append(
            f"    code:   {STAGE_ENTRY[stage]} + {len(import_closure(STAGE_ENTRY[stage])) - 1} project modules "
            f"it imports (version {code_version(stage)})"
        )
        if stage in ("sft", "grpo"):
            batch = _batch(cfg, stage)
            lines.append(f"    batch:  {batch[0]}")
            lines += [f"            {b}" for b in batch[1:]]
            lines.append(
                f"    weights: {_precision(cfg, stage)}"
                + (f"; LoRA r={getattr(cfg, stage).lora.r}" if getattr(cfg, stage).lora.enabled else "")
            )
            if stage == "grpo":
                lines.append(f"    generation: {cfg.grpo.vllm.describe()}")
                lines.append(f"    rewards: {_rewards(cfg)}")
            lines.append(f"    launch: {_launch(cfg, stage, pipe)}")
        if stage == "benchmark":
            lines += [f"    {line}" for line in _scoring(cfg, pipe)]
    missing = missing_paths(cfg)
    lines.append("")
    if missing:
        lines.append(
            f"Missing paths ({len(missing)}): the plan is valid, but these must exist before the stages that read "
            f"them run:"
        )
        lines += [f"  - {m}" for m in missing]
    else:
        lines.append("All paths the config names exist.")
    return "\n".join(lines), missing


def format_summary(cfg: PipelineConfig, ui_url: str | None = None) -> str:
    pipe = Pipeline(cfg, log=lambda _: None)
    lines = []
    bench = pipe.manifest("benchmark")
    if bench is not None:
        from data_contracts import read_records
        from data_contracts.records import MetricRecord
        from tatar_core.benchmark.report import format_table

        d = pipe.dir("benchmark")
        lines += [
            "Benchmark (SRCC/PLCC per task):",
            format_table(read_records(d / "metrics.parquet", MetricRecord)),
            "",
        ]
    else:
        lines.append("The benchmark stage has not finished for this config.")
    lines.append("Stage outputs:")
    for stage in STAGES:
        m = pipe.manifest(stage)
        if m is None:
            lines.append(f"  {stage:<10} not finished ({pipe.dir(stage)})")
            continue
        lines.append(f"  {stage:<10} {m.seconds:7.1f} s  {pipe.dir(stage)}")
        for name, rel in m.outputs.items():
            lines.append(f"      {name:<12} {pipe.dir(stage) / rel}")
    if bench is not None and "report" in bench.outputs:
        lines.append(f"\nReport: {pipe.dir('benchmark') / bench.outputs['report']}")
    if bench is not None and "report_html" in bench.outputs:
        lines.append(
            f"Report page (tables, plots, training curves; open in a browser): "
            f"{pipe.dir('benchmark') / bench.outputs['report_html']}"
        )
    lines.append("Inspect a dataset: tatar inspect <file.parquet>   All runs: tatar runs")
    if ui_url:
        lines.append(f"Prefect UI: {ui_url}")
        lines.append("Rerun: prefect deployment run tatar/full   (with .venv active)   Stop the services: make down")
    return "\n".join(lines)
