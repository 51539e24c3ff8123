"""The real chain through a real local Prefect server and process worker (deployments from prefect.yaml).

One test, in steps, sharing one server: (1) tatar/full on a tiny config writes every stage's Parquet files
and manifest, and reports its progress through the Prefect API (progress artifacts, per-step log lines); (2) a rerun reports every stage cached; (3) an SFT change reruns sft, grpo, benchmark only;
(4) killing the worker mid-rationales and running again gives exactly one rationale per train sample.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from data_contracts import read_records
from data_contracts.config import STAGES, load_config
from data_contracts.records import (
    KeptRecord, MetricRecord, PredictionRecord, RationaleRecord, RejectedRecord, SampleRecord, TrainLogRecord,
)
from flows.services import Services
from tatar_core.pipeline.runner import Pipeline
from e2e_support import (
    deployment_run, flow_run_logs, free_port, kill_tree, run_artifacts, run_log_messages, subflow_runs, wait_for,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    s = Services(home=tmp_path_factory.mktemp("prefect"), port=free_port())
    s.up()
    yield s
    s.down()


def _stage_lines(logs: str) -> dict[str, str]:
    """'samples: cached -> …' lines the tatar flow logs, per stage."""
    out = {}
    for stage in STAGES:
        for line in logs.splitlines():
            if f"{stage}: cached ->" in line:
                out[stage] = "cached"
            elif f"{stage}: ran ->" in line:
                out[stage] = "ran"
    return out


def test_full_pipeline_through_prefect(services, tmp_path):
    run_dir = tmp_path / "run"
    cfg_path = write_config(tmp_path / "tiny.yaml", run_dir)
    cfg = load_config(cfg_path)
    pipe = Pipeline(cfg, log=lambda _: None)

    # 1. the whole chain
    first = deployment_run(services, "tatar/full", {"config": str(cfg_path)})
    assert _stage_lines(flow_run_logs(services, first)) == {s: "ran" for s in STAGES}
    for stage in STAGES:
        m = pipe.manifest(stage)
        assert m is not None and m.key == pipe.keys[stage], stage
    samples = read_records(pipe.result("samples").path("samples"), SampleRecord)
    train = [s for s in samples if s.split == "train"]
    test = [s for s in samples if s.split == "test"]
    assert {s.task for s in train} == {"iqa", "iaa"} and test
    assert not {s.ref_id for s in train} & {s.ref_id for s in test}
    rationales = read_records(pipe.result("rationales").path("rationales"), RationaleRecord)
    assert sorted(r.sample_id for r in rationales) == sorted(s.sample_id for s in train)
    kept = read_records(pipe.result("filtered").path("kept"), KeptRecord)
    rejected = read_records(pipe.result("filtered").path("rejected"), RejectedRecord)
    assert len(kept) + len(rejected) == len(rationales) and kept
    assert all(r.reasons for r in rejected)
    assert (pipe.result("sft").path("model") / "config.json").exists()
    assert (pipe.result("grpo").path("model") / "config.json").exists()
    log = read_records(pipe.result("grpo").path("train_log"), TrainLogRecord)
    assert {r.task for r in log} == {"iqa", "iaa"}
    preds = read_records(pipe.result("benchmark").path("predictions"), PredictionRecord)
    metrics = read_records(pipe.result("benchmark").path("metrics"), MetricRecord)
    assert {m.task for m in metrics} == {"iqa", "iaa"} and len(preds) == sum(m.n for m in metrics)
    assert pipe.result("benchmark").path("report").exists()
    created = {s: pipe.manifest(s).created_at for s in STAGES}
    _check_progress_through_the_api(services, first)

    # 2. nothing changed: every stage cached, nothing rewritten
    second = deployment_run(services, "tatar/full", {"config": str(cfg_path)})
    assert _stage_lines(flow_run_logs(services, second)) == {s: "cached" for s in STAGES}
    assert {s: pipe.manifest(s).created_at for s in STAGES} == created

    # 3. one SFT setting changed: sft, grpo, benchmark rerun; nothing before them
    third = deployment_run(services, "tatar/full", {"config": str(cfg_path), "overrides": {"sft.learning_rate": 0.002}})
    assert _stage_lines(flow_run_logs(services, third)) == {
        "samples": "cached", "rationales": "cached", "filtered": "cached", "sft": "ran", "grpo": "ran", "benchmark": "ran"}


def _check_progress_through_the_api(services, run_id: str) -> None:
    """Each long stage's progress artifact reached total/total; the training subflows' logs hold a line per logging
    step (SFT: loss, GRPO: reward per task); the benchmark card embeds its pictures; `flows.follow` shows it all."""
    subs = subflow_runs(services, run_id)
    for stage, total, steps, word in (("sft", 8, [2, 4, 6, 8], " · loss "), ("grpo", 2, [1, 2], " iaa reward ")):
        sub = subs[f"tatar-{stage}"]["id"]
        art = run_artifacts(services, sub)[f"tatar-{stage}-progress"]
        assert art["type"] == "progress" and art["data"] == 100.0, art
        assert f"[{stage}] {total}/{total} steps (100%)" in art["description"], art
        messages = run_log_messages(services, sub)
        step_lines = [m for m in messages if m.startswith(f"[{stage}] step ")]
        assert [int(m.split()[2].split("/")[0]) for m in step_lines] == steps, messages
        assert all(word in m and f"/{total}" in m for m in step_lines), step_lines
        assert any(m.startswith(f"[{stage}] start · reads ") for m in messages), messages
    for stage, unit in (("rationales", "rows"), ("benchmark", "images")):
        art = run_artifacts(services, subs[f"tatar-{stage}"]["id"])[f"tatar-{stage}-progress"]
        assert art["data"] == 100.0 and f" {unit} (100%)" in art["description"], art
    card = run_artifacts(services, subs["tatar-benchmark"]["id"])["tatar-benchmark-files"]["data"]
    assert card.count("data:image/png;base64,") >= 4 and "file://" not in card  # scatter plots + curves embedded

    follow = subprocess.run([sys.executable, "-m", "flows.follow", "--run", run_id], env=services.env(),
                            cwd=services.project, capture_output=True, text=True, timeout=120)
    assert follow.returncode == 0, follow.stdout[-2000:] + follow.stderr[-2000:]
    for stage in STAGES:
        assert f"[{stage}] start · reads " in follow.stdout and f"[{stage}] finished in " in follow.stdout
    assert "[sft] step 8/8 · loss " in follow.stdout and "[grpo] step 2/2 " in follow.stdout
    assert "Created task run" not in follow.stdout and follow.stdout.rstrip().endswith("COMPLETED")


def test_worker_killed_during_rationales_resumes_without_duplicates(services, tmp_path):
    # more photos and small shards so that the stage is still running when the worker dies
    cfg_path = write_config(tmp_path / "kill.yaml", tmp_path / "run",
                            {"samples.demo.max_refs": None, "samples.demo.iqa_levels": [1, 2, 3, 4, 5],
                             "rationales.shard_size": 4})
    pipe = Pipeline(load_config(cfg_path), log=lambda _: None)
    shards = pipe.dir("rationales") / "shards"
    worker_pid = int((services.home / "worker.pid").read_text())

    deployment_run(services, "tatar-samples/samples", {"config": str(cfg_path)})  # single-stage deployments
    deployment_run(services, "tatar-rationales/rationales", {"config": str(cfg_path)}, watch=False)
    wait_for(lambda: list(shards.glob("*.parquet")) if shards.exists() else None, 300, "the first rationale shard")
    kill_tree(worker_pid)
    assert pipe.manifest("rationales") is None, "the stage finished before the kill: the test proves nothing"
    n_before = len(list(shards.glob("*.parquet")))

    services.start_worker()
    deployment_run(services, "tatar-rationales/rationales", {"config": str(cfg_path)})
    m = pipe.manifest("rationales")
    assert m is not None and m.row_counts["resumed"] >= n_before > 0
    train = [s for s in read_records(pipe.result("samples").path("samples"), SampleRecord) if s.split == "train"]
    ids = [r.sample_id for r in read_records(pipe.result("rationales").path("rationales"), RationaleRecord)]
    assert len(ids) == len(set(ids)) == len(train)
    assert set(ids) == {s.sample_id for s in train}
