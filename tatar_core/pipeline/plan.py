"""Text for `tatar plan` (what would run, with which inputs, code, keys and launch commands) and `tatar summary`."""
from __future__ import annotations

from pathlib import Path

from data_contracts.config import EMBEDDED_MODEL, STAGES, PipelineConfig
from tatar_core.pipeline.runner import Pipeline
from tatar_core.code_version import import_closure
from tatar_core.pipeline.describe import reads
from tatar_core.pipeline.keys import STAGE_ENTRY, code_version


def missing_paths(cfg: PipelineConfig) -> list[str]:
    """Every local path the config names that does not exist, as 'key: path (what)'."""
    out = []
    if cfg.model.path != EMBEDDED_MODEL and not (Path(cfg.model.path) / "config.json").exists():
        out.append(f"model.path: {cfg.model.path} (a local model folder with config.json)")
    sources = [("samples", cfg.samples.datasets if cfg.samples.source == "datasets" else []),
               ("benchmark", cfg.benchmark.datasets)]
    for section, datasets in sources:
        for i, src in enumerate(datasets):
            if not Path(src.root).is_dir():
                out.append(f"{section}.datasets[{i}].root: {src.root} ({src.name} dataset folder)")
            if src.split_file and not (Path(src.root) / src.split_file).exists():
                out.append(f"{section}.datasets[{i}].split_file: {src.split_file} (list of {src.name} test images)")
    for stage in ("sft", "grpo"):
        ds = getattr(cfg, stage).launch.deepspeed_config
        if ds and not Path(ds).exists():
            out.append(f"{stage}.launch.deepspeed_config: {ds} (DeepSpeed json)")
    return out


def _launch(cfg: PipelineConfig, stage: str, pipe: Pipeline) -> str:
    launch = getattr(cfg, stage).launch
    if launch.mode == "inprocess":
        return "in-process (trl, this Python process)"
    from tatar_core.training.launch import launch_command, spec_path

    return " ".join(launch_command(stage, launch, spec_path(pipe.dir(stage))))


def _batch(cfg: PipelineConfig, stage: str) -> str:
    c = getattr(cfg, stage)
    n = c.launch.num_processes
    if stage == "sft":
        eff = c.per_device_train_batch_size * c.gradient_accumulation_steps * n
        return (f"{c.per_device_train_batch_size} per device x {c.gradient_accumulation_steps} accumulation x {n} "
                f"process(es) = effective batch {eff}; lr {c.learning_rate}")
    return (f"{c.prompts_per_step} prompts x G={c.num_generations} = {c.prompts_per_step * c.num_generations} "
            f"completions per step over {n} process(es), >= {c.min_iaa_images_per_step} IAA images per step; "
            f"lr {c.learning_rate}, beta {c.beta}")


def format_plan(cfg: PipelineConfig, source: str = "") -> tuple[str, list[str]]:
    pipe = Pipeline(cfg, log=lambda _: None)
    status = pipe.status()
    lines = [f"Config {source}: valid", f"Run folder: {pipe.root}", ""]
    for stage in STAGES:
        lines.append(f"{stage}  [{status[stage]}]  key {pipe.keys[stage][:16]}")
        lines.append(f"    reads:  {reads(cfg, stage)}")
        lines.append(f"    folder: {pipe.dir(stage)}")
        lines.append(f"    code:   {STAGE_ENTRY[stage]} + {len(import_closure(STAGE_ENTRY[stage])) - 1} project modules "
                     f"it imports (version {code_version(stage)})")
        if stage in ("sft", "grpo"):
            lines.append(f"    batch:  {_batch(cfg, stage)}")
            lines.append(f"    launch: {_launch(cfg, stage, pipe)}")
    missing = missing_paths(cfg)
    lines.append("")
    if missing:
        lines.append(f"Missing paths ({len(missing)}): the plan is valid, but these must exist before the stages that read them run:")
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
        lines += ["Benchmark (SRCC/PLCC per task):", format_table(read_records(d / "metrics.parquet", MetricRecord)), ""]
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
        lines.append(f"Report page (tables, plots, training curves; open in a browser): "
                     f"{pipe.dir('benchmark') / bench.outputs['report_html']}")
    lines.append("Inspect a dataset: tatar inspect <file.parquet>   All runs: tatar runs")
    if ui_url:
        lines.append(f"Prefect UI: {ui_url}")
        lines.append("Rerun: prefect deployment run tatar/full   (with .venv active)   Stop the services: make down")
    return "\n".join(lines)
