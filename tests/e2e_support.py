"""Helpers for the end-to-end test: a tiny config, deployment runs, the Prefect API, killing a process tree."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import yaml

from data_contracts.config import load_config

# The demo recipe cut down to seconds per stage (same code paths, fewer photos/steps/tokens).
TINY = {
    "samples.demo.max_refs": 3,
    "samples.demo.test_refs": 1,
    "samples.demo.validation_refs": 0,
    "samples.demo.generated_refs": 3,
    "samples.demo.iqa_levels": [1, 3, 5],
    "rationales.shard_size": 8,
    "sft.max_steps": 8,
    "sft.trainer_args": {"save_steps": 4, "logging_steps": 2},
    "grpo.max_steps": 2,
    "grpo.trainer_args": {"save_steps": 1},
    "grpo.num_generations": 2,
    "grpo.prompts_per_step": 4,
    "grpo.min_iaa_images_per_step": 2,
    "grpo.max_completion_length": 32,
    "benchmark.max_items": 6,
    "benchmark.max_new_tokens": 48,
    "benchmark.bootstrap": 20,
}

# Only the samples stage, as small as it gets (two photos, one type and level, one manipulation).
TINY_SAMPLES = {
    "samples.demo.max_refs": 2,
    "samples.demo.test_refs": 1,
    "samples.demo.validation_refs": 0,
    "samples.demo.generated_refs": 0,
    "samples.demo.iqa_levels": [2],
    "samples.demo.iqa_types": ["gblur"],
    "samples.demo.iaa_manipulations": ["tilt"],
}


def write_config(path: Path, run_dir: Path, extra: dict | None = None) -> Path:
    cfg = load_config("configs/demo.yaml", {**TINY, "run_dir": str(run_dir), **(extra or {})})
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deployment_run(services, name: str, params: dict, watch: bool = True, timeout: int = 900) -> str:
    """`prefect deployment run NAME -p k=v ... [--watch]`; returns the flow run id."""
    args = ["deployment", "run", name]
    for k, v in params.items():
        args += ["-p", f"{k}={v if isinstance(v, str) else __import__('json').dumps(v)}"]
    if watch:
        args += ["--watch", "--watch-interval", "2", "--watch-timeout", str(timeout)]
    p = services.cli(*args, check=False)
    out = p.stdout + p.stderr
    m = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
    assert m, f"no flow run id in output:\n{out[-2000:]}"
    assert p.returncode == 0, f"prefect deployment run {name} failed:\n{out[-3000:]}"
    if watch:
        assert "COMPLETED" in out.upper(), out[-3000:]
    return m.group(1)


def flow_run_logs(services, run_id: str) -> str:
    return services.cli("flow-run", "logs", run_id).stdout


def descendants(pid: int) -> list[int]:
    """All descendants of `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (the flow run process runs in its own session); wait until gone."""
    from flows.services import _alive

    pids = [pid, *descendants(pid)]
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not any(_alive(p) for p in pids), 30, f"processes {pids} to die")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---------------------------------------------------------------- the Prefect API, as the UI sees it
@contextmanager
def prefect_api(services):
    """A sync Prefect client on the test server."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: services.api_url}), get_client(sync_client=True) as client:
        yield client


def flow_run(client, run_id):
    return client.read_flow_run(UUID(str(run_id)))


def flow_runs_named(client, name: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))


def child_runs(client, parent_id) -> dict[str, list]:
    """Stage -> the flow runs linked to the parent flow run as its subflows (flow `tatar-<stage>`)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(str(parent_id))]))
    )
    flows = {f.id: f.name for f in client.read_flows()}
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(flows[r.flow_id].removeprefix("tatar-"), []).append(r)
    return out


def submitting_workers(client, run_ids) -> dict[str, str]:
    """Flow run id -> name of the worker that submitted it (`prefect.worker.submitted-flow-run` events)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventRelatedFilter

    ids = [f"prefect.flow-run.{i}" for i in run_ids]
    page = client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter(since=datetime.now(timezone.utc) - timedelta(hours=2)),
            event=EventNameFilter(name=["prefect.worker.submitted-flow-run"]),
            related=EventRelatedFilter(id=ids),
        ),
        limit=50,
    )
    out = {}
    for e in page.events:
        for r in e.related:
            if r.role == "flow-run" and r.id in ids:
                out[r.id.removeprefix("prefect.flow-run.")] = e.resource.get("prefect.resource.name")
    return out


def api(services, path: str, body: dict | None = None):
    """POST (or GET without a body) to the Prefect REST API; the decoded JSON answer."""
    import json
    import urllib.request

    req = urllib.request.Request(
        f"{services.api_url}/{path}",
        method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def subflow_runs(services, run_id: str) -> dict[str, dict]:
    """The subflow runs of a flow run, by flow name (e.g. 'tatar-sft')."""
    runs = api(services, "flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})
    flows = {f["id"]: f["name"] for f in api(services, "flows/filter", {})}
    return {flows[r["flow_id"]]: r for r in runs}


def run_artifacts(services, run_id: str) -> dict[str, dict]:
    """The artifacts of a flow run, by key."""
    arts = api(services, "artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    return {a["key"]: a for a in arts if a.get("key")}


def run_log_messages(services, run_id: str) -> list[str]:
    logs = api(
        services, "logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    )
    return [lg["message"] for lg in logs]
