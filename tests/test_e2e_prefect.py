"""The real chain through a real local Prefect server, its two work pools and one process worker on each
(deployments from prefect.yaml).

One server for the module. test_full_pipeline_through_prefect, in steps: (1) with the GPU pool's worker stopped,
tatar/full runs samples, rationales and filtered on the CPU pool's worker and leaves sft Late; (2) starting the GPU
worker completes that same run without redoing a stage; every stage ran as its own flow run linked to the parent,
submitted by its pool's worker (Prefect events), and reported its progress through the Prefect API (progress
artifacts, per-step log lines, `flows.follow`); (3) a rerun reports every stage cached and starts no flow run;
(4) after an SFT change only sft starts, and when it fails the parent fails, naming the stage and linking its run,
and the next run would start a new one. test_worker_killed_…: killing the CPU worker mid-rationales and running
again gives exactly one rationale per train sample.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from e2e_support import (
    child_runs,
    deployment_run,
    flow_run,
    flow_run_logs,
    flow_runs_named,
    free_port,
    kill_tree,
    prefect_api,
    run_artifacts,
    run_log_messages,
    subflow_runs,
    submitting_workers,
    wait_for,
    write_config,
)

from data_contracts import read_records
from data_contracts.config import STAGES, load_config
from data_contracts.records import (
    KeptRecord,
    MetricRecord,
    PredictionRecord,
    RationaleRecord,
    RejectedRecord,
    SampleRecord,
    TrainLogRecord,
)
from flows.services import Services
from flows.stages import _idempotency_key
from tatar_core.pipeline.runner import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CPU_STAGES = ("samples", "rationales", "filtered")
GPU_STAGES = ("sft", "grpo", "benchmark")
# a Scheduled run nobody picked up is marked Late after 3 s (default 15 s)
SERVER_ENV = {
    "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "3",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "1",
}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    s = Services(home=tmp_path_factory.mktemp("prefect"), port=free_port(), extra_env=SERVER_ENV)
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


def _finished(services, run_id, timeout: float = 900):
    def final():
        with prefect_api(services) as api:
            r = flow_run(api, run_id)
        return r if r.state and r.state.is_final() else None

    return wait_for(final, timeout, f"flow run {run_id} to finish", interval=2)


def test_full_pipeline_through_prefect(services, tmp_path):
    run_dir = tmp_path / "run"
    cfg_path = write_config(tmp_path / "tiny.yaml", run_dir)
    cfg = load_config(cfg_path)
    pipe = Pipeline(cfg, log=lambda _: None)

    # 1. the GPU pool has no worker: the CPU stages run, sft waits (Late, as the UI shows it)
    services.stop_worker("gpu")
    first = deployment_run(services, "tatar/full", {"config": str(cfg_path)}, watch=False)
    sft_run = f"sft-{pipe.keys['sft'][:12]}"

    def sft_late():
        with prefect_api(services) as api:
            assert not flow_run(api, first).state.is_final(), "tatar/full finished while the GPU pool had no worker"
            return [r for r in flow_runs_named(api, sft_run) if r.state and r.state.name == "Late"]

    late = wait_for(sft_late, 600, "sft to be Late while the GPU pool has no worker", interval=1)
    with prefect_api(services) as api:
        assert flow_run(api, first).state.is_running()
    assert all(pipe.manifest(s) is not None for s in CPU_STAGES)
    assert all(pipe.manifest(s) is None for s in GPU_STAGES)
    cpu_created = {s: pipe.manifest(s).created_at for s in CPU_STAGES}

    # 2. a GPU worker starts: the same run goes on, nothing is redone
    services.start_worker("gpu")
    assert _finished(services, first).state.is_completed()
    assert _stage_lines(flow_run_logs(services, first)) == {s: "ran" for s in STAGES}
    assert {s: pipe.manifest(s).created_at for s in CPU_STAGES} == cpu_created
    with prefect_api(services) as api:
        children = child_runs(api, first)
        assert {s: len(runs) for s, runs in children.items()} == {s: 1 for s in STAGES}  # each once, linked
        ids = {s: str(runs[0].id) for s, runs in children.items()}

        def all_submitted():
            w = submitting_workers(api, [*ids.values(), first])
            return w if len(w) == len(STAGES) + 1 else None

        workers = wait_for(all_submitted, 60, "the workers' submitted-flow-run events", interval=1)
    assert str(children["sft"][0].id) == str(late[0].id)
    assert workers[first] == services.worker_name("cpu")
    for stage in STAGES:
        role = "cpu" if stage in CPU_STAGES else "gpu"
        assert children[stage][0].work_pool_name == services.pools[role], stage
        assert workers[ids[stage]] == services.worker_name(role), stage
        assert children[stage][0].state.is_completed(), stage
    for stage in STAGES:
        m = pipe.manifest(stage)
        assert m is not None and m.key == pipe.keys[stage], stage
    samples = read_records(pipe.result("samples").path("samples"), SampleRecord)
    train = [s for s in samples if s.split == "train"]
    test = [s for s in samples if s.split == "test"]
    assert {s.task for s in train} == {"iqa", "iaa"} and test
    assert not {s.ref_id for s in train} & {s.ref_id for s in test}
    assert all(s.image_path.startswith("samples/") for s in samples)  # stored relative to the run folder
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

    # 3. nothing changed: every stage cached, nothing rewritten, no stage run started
    second = deployment_run(services, "tatar/full", {"config": str(cfg_path)})
    assert _stage_lines(flow_run_logs(services, second)) == {s: "cached" for s in STAGES}
    assert {s: pipe.manifest(s).created_at for s in STAGES} == created
    with prefect_api(services) as api:
        assert child_runs(api, second) == {}

    # 4. an SFT setting changed: the stages before sft are cached and start nothing; an sft run that fails fails the
    #    tatar run, which names the stage and links the flow run; the next tatar run would start a new one
    broken = {"sft.launch.mode": "accelerate", "sft.launch.python": str(tmp_path / "no-such-python")}
    third = deployment_run(services, "tatar/full", {"config": str(cfg_path), "overrides": broken}, watch=False)
    parent = _finished(services, third)
    assert parent.state.is_failed()
    assert _stage_lines(flow_run_logs(services, third)) == {s: "cached" for s in CPU_STAGES}
    with prefect_api(services) as api:
        children = child_runs(api, third)
        assert list(children) == ["sft"]
        failed_sft = children["sft"][0]
        assert failed_sft.state.is_failed()
        broken_key = Pipeline(load_config(cfg_path, broken), log=lambda _: None).keys["sft"]
        assert _idempotency_key("sft", broken_key).endswith("-1")  # attempt 0 ended: never reused
    assert "stage sft" in parent.state.message and f"/runs/flow-run/{failed_sft.id}" in parent.state.message
    assert "no-such-python" in failed_sft.state.message


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

    follow = subprocess.run(
        [sys.executable, "-m", "flows.follow", "--run", run_id],
        env=services.env(),
        cwd=services.project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert follow.returncode == 0, follow.stdout[-2000:] + follow.stderr[-2000:]
    for stage in STAGES:
        assert f"[{stage}] start · reads " in follow.stdout and f"[{stage}] finished in " in follow.stdout
    assert "[sft] step 8/8 · loss " in follow.stdout and "[grpo] step 2/2 " in follow.stdout
    assert "Created task run" not in follow.stdout and follow.stdout.rstrip().endswith("COMPLETED")


def test_worker_killed_during_rationales_resumes_without_duplicates(services, tmp_path):
    # more photos and small shards so that the stage is still running when the worker dies
    cfg_path = write_config(
        tmp_path / "kill.yaml",
        tmp_path / "run",
        {"samples.demo.max_refs": None, "samples.demo.iqa_levels": [1, 2, 3, 4, 5], "rationales.shard_size": 4},
    )
    pipe = Pipeline(load_config(cfg_path), log=lambda _: None)
    shards = pipe.dir("rationales") / "shards"
    worker_pid = int((services.home / "worker-cpu.pid").read_text())

    deployment_run(services, "tatar-samples/samples", {"config": str(cfg_path)})  # single-stage deployments
    running = deployment_run(services, "tatar-rationales/rationales", {"config": str(cfg_path)}, watch=False)

    def first_shard():
        if shards.exists() and list(shards.glob("*.parquet")):
            return True
        with prefect_api(services) as api:
            state = flow_run(api, running).state
        assert not (state and state.is_final()), (
            f"the rationales run ended before a shard: {state.name} {state.message}"
        )

    wait_for(first_shard, 300, "the first rationale shard", interval=0.5)
    kill_tree(worker_pid)
    assert pipe.manifest("rationales") is None, "the stage finished before the kill: the test proves nothing"
    n_before = len(list(shards.glob("*.parquet")))

    services.start_worker("cpu")
    deployment_run(services, "tatar-rationales/rationales", {"config": str(cfg_path)})
    m = pipe.manifest("rationales")
    assert m is not None and m.row_counts["resumed"] >= n_before > 0
    train = [s for s in read_records(pipe.result("samples").path("samples"), SampleRecord) if s.split == "train"]
    ids = [r.sample_id for r in read_records(pipe.result("rationales").path("rationales"), RationaleRecord)]
    assert len(ids) == len(set(ids)) == len(train)
    assert set(ids) == {s.sample_id for s in train}


def test_probes_deployment_runs_each_distinct_stage_once_on_its_pool(services, tmp_path):
    """`tatar-probes/probes` on a 2-variant, 1-seed tiny grid: each distinct stage run is its stage's deployment run
    on its pool, linked to the probes run (the variants share samples → sft: 6 stage runs + 2 grpo + 2 benchmark = 8
    flow runs), and the report is written; a rerun starts no stage flow run."""
    import yaml
    from e2e_support import TINY

    from data_contracts.config.probes import load_probes
    from tatar_core.probes.grid import build_grid
    from tatar_core.probes.report import report_dir

    probes = {
        "base": "configs/demo.yaml",
        "run_dir": str(tmp_path / "run"),
        "seeds": [0],
        "scale": {**TINY, "benchmark.compare": []},
        "probes": {
            "t2": {
                "title": "Table 2 (tiny)",
                "claim": "c",
                "variants": {"rank_only": {"grpo.ablation": "rank_only"}, "task_conditioned": {}},
            }
        },
    }
    path = tmp_path / "probes.yaml"
    path.write_text(yaml.safe_dump(probes))
    grid = build_grid(load_probes(path))
    assert len(grid.nodes) == 8
    run = deployment_run(services, "tatar-probes/probes", {"config": str(path)})
    with prefect_api(services) as api:
        children = child_runs(api, run)
        assert {s: len(r) for s, r in children.items()} == {
            "samples": 1,
            "rationales": 1,
            "filtered": 1,
            "sft": 1,
            "grpo": 2,
            "benchmark": 2,
        }
        for stage, runs in children.items():
            role = "cpu" if stage in CPU_STAGES else "gpu"
            assert all(r.work_pool_name == services.pools[role] and r.state.is_completed() for r in runs), stage
    assert (report_dir(grid) / "report.html").exists()
    assert "tatar-probes-report" in run_artifacts(services, run)
    again = deployment_run(services, "tatar-probes/probes", {"config": str(path)})
    with prefect_api(services) as api:
        assert child_runs(api, again) == {}
