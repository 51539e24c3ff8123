"""One Prefect flow per stage and the `tatar` flow that chains them.

Each flow validates the config first (a bad key fails before any work), then runs the plain
`tatar_core.pipeline.runner.Pipeline` stage, which is skipped when its cached folder is finished.
"""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from data_contracts.config import STAGES, load_config
from flows.artifacts import PrefectReporter, publish_stage
from tatar_core.pipeline.runner import Pipeline

DEFAULT_CONFIG = "configs/demo.yaml"


def _secret(name: str) -> str:
    """Read an API key from a Prefect Secret block (the key never reaches logs or files)."""
    from prefect.blocks.system import Secret

    return Secret.load(name).get()


@task(task_run_name="benchmark-{item[0]}", cache_policy=NO_CACHE)  # its inputs (a closure over the scorer) cannot be hashed
def _benchmark_one(fn, item):
    return fn(item)


def _prefect_mapper(fn, items: list) -> list:
    futures = [_benchmark_one.submit(fn, it) for it in items]
    return [f.result() for f in futures]


def _run(stage: str, config: str, overrides: Optional[dict[str, Any]]) -> dict:
    reporter = PrefectReporter(get_run_logger())  # progress artifact + flow-run log lines
    pipe = Pipeline(load_config(config, overrides), mapper=_prefect_mapper, secret_resolver=_secret,
                    log=reporter.log, progress=reporter.progress)
    with reporter.stage(stage, live=pipe.manifest(stage) is None):
        result = pipe.run(stage)
    publish_stage(result)
    m = result.manifest
    return {"stage": stage, "cached": result.cached, "dir": str(result.dir), "key": m.key, "rows": m.row_counts}


@flow(name="tatar-samples")
def samples(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> dict:
    """Build or load the images + scores (samples.parquet)."""
    return _run("samples", config, overrides)


@flow(name="tatar-rationales")
def rationales(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> dict:
    """Teacher rationales for the train split (resumable shards)."""
    return _run("rationales", config, overrides)


@flow(name="tatar-filtered")
def filtered(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> dict:
    """Rule checks (+ optional LLM judge): kept.parquet / rejected.parquet."""
    return _run("filtered", config, overrides)


@flow(name="tatar-sft")
def sft(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> dict:
    """Supervised fine-tuning on the kept rationales (trl SFTTrainer)."""
    return _run("sft", config, overrides)


@flow(name="tatar-grpo")
def grpo(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> dict:
    """GRPO with the TATAR rewards (trl GRPOTrainer)."""
    return _run("grpo", config, overrides)


@flow(name="tatar-benchmark", task_runner=ThreadPoolTaskRunner(max_workers=2))
def benchmark(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> dict:
    """Score every benchmark (one task each) with the GRPO checkpoint; SRCC/PLCC and the report."""
    return _run("benchmark", config, overrides)


STAGE_FLOWS = {"samples": samples, "rationales": rationales, "filtered": filtered, "sft": sft, "grpo": grpo,
               "benchmark": benchmark}


@flow(name="tatar")
def tatar(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> list[dict]:
    """The whole pipeline. A stage whose folder is finished is reported as cached without starting its subflow."""
    logger = get_run_logger()
    pipe = Pipeline(load_config(config, overrides), log=logger.info)  # a bad config fails here, before any stage
    results = []
    for stage in STAGES:
        m = pipe.manifest(stage)
        if m is None:
            r = STAGE_FLOWS[stage](config=config, overrides=overrides)
        else:
            r = {"stage": stage, "cached": True, "dir": str(pipe.dir(stage)), "key": m.key, "rows": m.row_counts}
        logger.info(f"{stage}: {'cached' if r['cached'] else 'ran'} -> {r['dir']}")
        results.append(r)
    create_table_artifact([{"stage": r["stage"], "status": "cached" if r["cached"] else "ran", "folder": r["dir"]}
                           for r in results], key="tatar-run", description="stages of this run")
    return results
