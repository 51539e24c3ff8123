"""Start a deployment run and follow it in the terminal: its log lines and those of its subflows, as they arrive.

    python -m flows.follow tatar/full -p config=configs/demo.yaml [-p overrides='{"sft.max_steps": 10}']
    python -m flows.follow --run FLOW_RUN_ID          # follow a run that already exists

The run is a real deployment run (`prefect.deployments.run_deployment`, picked up by a worker); this command only
reads the Prefect API: every `poll_s` seconds the flow runs below the followed one (subflows, at any depth) and
their new logs (INFO and above, by timestamp; a window of `LATE_S` seconds back catches lines that were sent late,
lines already shown are skipped). Prefect's own bookkeeping lines (task-run creation, task states) are left out,
warnings and errors never are. It ends when the run is final and the logs are drained; exit code 0 when it
COMPLETED, 1 otherwise. Ctrl-C stops following, not the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from typing import Optional, TextIO
from uuid import UUID

LATE_S = 15.0
DRAIN_S = 3.0
_NOISE = (
    "Created task run",
    "Executing '",
    "Submitting task run",
    "Beginning subflow run",
    "Created subflow run",
    "Running 1 deployment pull step",
    "Executing deployment step",
    "Deployment step '",
    "All deployment steps completed",
    "Finished in state Completed()",
)


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"-p expects KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def shown(log) -> bool:
    """Whether a Prefect log line goes to the terminal (see the module docstring)."""
    if log.level >= 30:
        return True
    if log.name == "prefect.task_runs":
        return False
    return not log.message.startswith(_NOISE)


def follow(run_id: UUID, out: TextIO = sys.stdout, poll_s: float = 1.0, timeout_s: Optional[float] = None):
    """Print the logs of flow run `run_id` and its subflows until it is final; return its final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
        LogFilterLevel,
        LogFilterTimestamp,
    )

    ids, seen = {run_id}, set()
    newest, final_at, t0 = None, None, time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            frontier = list(ids)
            while frontier:  # subflows at any depth
                kids = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
                )
                frontier = [k.id for k in kids if k.id not in ids]
                ids |= set(frontier)
            after = newest - timedelta(seconds=LATE_S) if newest else None
            offset = 0
            while True:
                batch = client.read_logs(
                    LogFilter(
                        flow_run_id=LogFilterFlowRunId(any_=list(ids)),
                        level=LogFilterLevel(ge_=20),
                        timestamp=LogFilterTimestamp(after_=after),
                    ),
                    limit=200,
                    offset=offset,
                )
                for lg in batch:
                    if lg.id in seen:
                        continue
                    seen.add(lg.id)
                    newest = max(newest, lg.timestamp) if newest else lg.timestamp
                    if shown(lg):
                        level = "" if lg.level < 30 else ("WARNING " if lg.level < 40 else "ERROR ")
                        print(f"{lg.timestamp.astimezone():%H:%M:%S}  {level}{lg.message}", file=out, flush=True)
                if len(batch) < 200:
                    break
                offset += len(batch)
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                final_at = final_at or time.monotonic()
                if time.monotonic() - final_at >= DRAIN_S:
                    return run.state
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"flow run {run_id} not final after {timeout_s:.0f} s")
            time.sleep(poll_s)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m flows.follow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("deployment", nargs="?", help="FLOW/DEPLOYMENT, e.g. tatar/full")
    ap.add_argument(
        "-p",
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a flow parameter (the value is read as JSON when it parses, else as text)",
    )
    ap.add_argument("--run", help="follow this existing flow run instead of starting one")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between API reads (default 1)")
    args = ap.parse_args(argv)
    if not args.deployment and not args.run:
        ap.error("give a deployment (e.g. tatar/full) or --run FLOW_RUN_ID")
    from prefect.settings import PREFECT_API_URL

    ui = (PREFECT_API_URL.value() or "").removesuffix("/api")
    if args.run:
        run_id = UUID(args.run)
    else:
        from prefect.deployments import run_deployment

        run = run_deployment(args.deployment, parameters=dict(args.param), timeout=0)
        run_id = run.id
        print(f"Started {args.deployment}: flow run '{run.name}' ({run.id})", flush=True)
    print(f"Follow it in the UI: {ui}/runs/flow-run/{run_id}", flush=True)
    try:
        state = follow(run_id, poll_s=args.poll)
    except KeyboardInterrupt:
        print(f"\nStopped following; the run goes on: {ui}/runs/flow-run/{run_id}")
        return 130
    print(f"Flow run {run_id}: {state.type.value}" + (f" ({state.message})" if state.message else ""), flush=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
