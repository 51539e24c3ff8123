"""One Prefect flow per stage and the `tatar` flow that chains them.

Each flow validates the config first (a bad key fails before any work), then runs the plain
`tatar_core.pipeline.runner.Pipeline` stage, which is skipped when its cached folder is finished.

The `tatar` flow reports finished stages as cached without starting anything, and runs each unfinished one
(`orchestration.mode`):
- deployments: `run_deployment("tatar-<stage>/<stage>", as_subflow=True)`, so the stage runs on a worker of the
  pool prefect.yaml gives its deployment (CPU: samples, rationales, filtered; GPU: sft, grpo, benchmark), as its own
  flow run linked to the parent; the parent waits, fails naming the stage and linking its run when it did not
  complete, and re-reads the stage's manifest from the shared run folder;
- subflow: in the tatar flow's own process (what `auto` picks when the tatar flow does not run from a deployment).
"""

from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from data_contracts.config import STAGES, PipelineConfig, load_config
from flows.artifacts import PrefectReporter, publish_stage
from tatar_core.pipeline.keys import stage_keys
from tatar_core.pipeline.runner import Pipeline

DEFAULT_CONFIG = "configs/demo.yaml"
DEPLOYMENTS = {s: f"tatar-{s}/{s}" for s in STAGES}  # flow tatar-<stage>, deployment <stage> (prefect.yaml)


class StageRunFailed(RuntimeError):
    """A stage started as a deployment run did not complete (or left no manifest in the run folder)."""


def _secret(name: str) -> str:
    """Read an API key from a Prefect Secret block (the key never reaches logs or files)."""
    from prefect.blocks.system import Secret

    return Secret.load(name).get()


def check_key(stage: str, cfg: PipelineConfig, config: str, expect_key: Optional[str]) -> None:
    """Fail when this node computes another cache key for `stage` than the tatar flow that started the run."""
    key = stage_keys(cfg)[stage]
    if expect_key and key != expect_key:
        raise StageRunFailed(
            f"{stage}: this node computes cache key {key[:16]} for {config}, the tatar flow that started this run "
            f"computed {expect_key[:16]}: every node must run the same commit (keys hash the code) and read the same "
            "config file"
        )


def _run(stage: str, config: str, overrides: Optional[dict[str, Any]], expect_key: Optional[str] = None) -> dict:
    cfg = load_config(config, overrides)
    check_key(stage, cfg, config, expect_key)
    reporter = PrefectReporter(get_run_logger())  # progress artifact + flow-run log lines
    pipe = Pipeline(cfg, secret_resolver=_secret, log=reporter.log, progress=reporter.progress)
    with reporter.stage(stage, live=pipe.manifest(stage) is None):
        result = pipe.run(stage)
    publish_stage(result)
    m = result.manifest
    return {"stage": stage, "cached": result.cached, "dir": str(result.dir), "key": m.key, "rows": m.row_counts}


@flow(name="tatar-samples")
def samples(
    config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None, expect_key: Optional[str] = None
) -> dict:
    """Build or load the images + scores (samples.parquet)."""
    return _run("samples", config, overrides, expect_key)


@flow(name="tatar-rationales")
def rationales(
    config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None, expect_key: Optional[str] = None
) -> dict:
    """Teacher rationales for the train split (resumable shards)."""
    return _run("rationales", config, overrides, expect_key)


@flow(name="tatar-filtered")
def filtered(
    config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None, expect_key: Optional[str] = None
) -> dict:
    """Rule checks (+ optional LLM judge): kept.parquet / rejected.parquet."""
    return _run("filtered", config, overrides, expect_key)


@flow(name="tatar-sft")
def sft(
    config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None, expect_key: Optional[str] = None
) -> dict:
    """Supervised fine-tuning on the kept rationales (trl SFTTrainer)."""
    return _run("sft", config, overrides, expect_key)


@flow(name="tatar-grpo")
def grpo(
    config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None, expect_key: Optional[str] = None
) -> dict:
    """GRPO with the TATAR rewards (trl GRPOTrainer)."""
    return _run("grpo", config, overrides, expect_key)


@flow(name="tatar-benchmark")
def benchmark(
    config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None, expect_key: Optional[str] = None
) -> dict:
    """Score every benchmark (one task each) with the GRPO checkpoint, and with the models and baselines that
    `benchmark.compare` / `benchmark.baselines` name, on the same images; SRCC/PLCC and the report."""
    return _run("benchmark", config, overrides, expect_key)


STAGE_FLOWS = {
    "samples": samples,
    "rationales": rationales,
    "filtered": filtered,
    "sft": sft,
    "grpo": grpo,
    "benchmark": benchmark,
}


def dispatch_mode(cfg: PipelineConfig) -> str:
    """ "deployments" or "subflow" (`auto`: deployments when this flow run belongs to a deployment)."""
    if cfg.orchestration.mode != "auto":
        return cfg.orchestration.mode
    from prefect.runtime import deployment

    return "deployments" if deployment.id else "subflow"


def _idempotency_key(stage: str, key: str) -> str:
    """`tatar-<stage>-<key>-<n>`, n the first attempt with no flow run yet or one still going: tatar runs that need
    the same stage share its run, and a run that ended without finishing the stage is never reused."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    def ended(ik: str) -> bool:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[ik])), limit=1
        )
        return bool(runs) and runs[0].state is not None and runs[0].state.is_final()

    with get_client(sync_client=True) as client:
        n = 0
        while ended(f"tatar-{stage}-{key}-{n}"):
            n += 1
    return f"tatar-{stage}-{key}-{n}"


def _run_deployment(stage: str, pipe: Pipeline, config: str, overrides: Optional[dict[str, Any]]) -> dict:
    """Start (or join) the stage's deployment run, wait for it, and return its result from the run folder."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from prefect.utilities.urls import url_for

    oc, key = pipe.cfg.orchestration, pipe.keys[stage]
    try:
        fr = run_deployment(
            DEPLOYMENTS[stage],
            parameters={"config": config, "overrides": overrides, "expect_key": key},
            flow_run_name=f"{stage}-{key[:12]}",
            idempotency_key=_idempotency_key(stage, key),
            as_subflow=True,
            timeout=oc.stage_timeout_s,
            poll_interval=oc.poll_seconds,
            job_variables=oc.job_variables.get(stage),
        )
    except ObjectNotFound:
        raise StageRunFailed(
            f"{stage}: deployment {DEPLOYMENTS[stage]} is not registered on {PREFECT_API_URL.value()}: register it "
            "(`make up`, or `prefect deploy --all`) or set orchestration.mode: subflow"
        ) from None
    link = url_for(fr) or f"flow run id {fr.id}"
    state = fr.state
    if state is None or not state.is_completed():
        name = state.name if state else "unknown"
        what = (
            f"ended {name}"
            if state and state.is_final()
            else f"is still {name} after orchestration.stage_timeout_s = {oc.stage_timeout_s:g} s"
        )
        detail = f": {state.message}" if state and state.message else ""
        raise StageRunFailed(f"stage {stage}: flow run {fr.name} {what}{detail} ({link})")
    m = pipe.manifest(stage)
    if m is None:
        raise StageRunFailed(
            f"stage {stage}: flow run {fr.name} completed but {pipe.dir(stage)}/manifest.json is not here: every node "
            f"must see the run folder on shared storage at the same run_dir ({link})"
        )
    return {
        "stage": stage,
        "cached": False,
        "dir": str(pipe.dir(stage)),
        "key": m.key,
        "rows": m.row_counts,
        "flow_run": fr.name,
        "url": link,
    }


@flow(name="tatar")
def tatar(config: str = DEFAULT_CONFIG, overrides: Optional[dict[str, Any]] = None) -> list[dict]:
    """The whole pipeline: finished stages are reported as cached without starting anything; each unfinished one
    runs as its deployment on its pool, or as a subflow here (`orchestration.mode`)."""
    logger = get_run_logger()
    pipe = Pipeline(load_config(config, overrides), log=logger.info)  # a bad config fails here, before any stage
    mode = dispatch_mode(pipe.cfg)
    results = []
    for stage in STAGES:
        m = pipe.manifest(stage)
        if m is not None:
            r = {"stage": stage, "cached": True, "dir": str(pipe.dir(stage)), "key": m.key, "rows": m.row_counts}
        elif mode == "deployments":
            logger.info(f"{stage}: starting deployment {DEPLOYMENTS[stage]}")
            r = _run_deployment(stage, pipe, config, overrides)
        else:
            r = STAGE_FLOWS[stage](config=config, overrides=overrides)
        logger.info(f"{stage}: {'cached' if r['cached'] else 'ran'} -> {r['dir']}")
        results.append(r)
    create_table_artifact(
        [
            {
                "stage": r["stage"],
                "status": "cached" if r["cached"] else "ran",
                "folder": r["dir"],
                "flow run": r.get("url", ""),
            }
            for r in results
        ],
        key="tatar-run",
        description="stages of this run",
    )
    return results
