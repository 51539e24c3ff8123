"""Run a probes grid: every distinct stage run (`Node`) once, in dependency order, up to `parallel` at a time; then
the report.

How a node runs is the caller's `execute(node) -> dict` ({"cached": bool, ...}):
- `InProcess`: `Pipeline.run(stage)` in this process, one at a time (tests, `tatar probes run`);
- `Subprocesses`: `tatar run BASE --stage S --set …` in child processes (`tatar probes run --parallel N`);
- the `tatar-probes` Prefect flow (flows/probes.py) starts the stage's deployment on its pool, as the `tatar` flow
  does, and waits for it.
A finished node is reported as cached without calling `execute`. Two cells that need the same unfinished key never
both run it: it is one node. (Besides, the stage lock makes a second run of a key wait and report it cached, and
the `tatar` flow's idempotency keys make two deployment starts of one key join one flow run.) A failed node fails the
nodes that need it; the others go on, the report marks the missing cells, and `run_grid` raises at the end.
"""

from __future__ import annotations

import contextvars
import json
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from data_contracts.config import STAGES
from tatar_core.probes.grid import Grid, Node

Execute = Callable[[Node], dict]


class ProbesFailed(RuntimeError):
    """Some stage runs of the grid failed; the report was written for the cells that finished."""


@dataclass
class GridOutcome:
    results: dict[tuple[str, str], dict] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # node -> error
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)  # node -> the failed input
    seconds: float = 0.0

    @property
    def ran(self) -> int:
        return sum(not r.get("cached") for r in self.results.values())


class InProcess:
    """Run each node's stage in this process (`Pipeline.run`)."""

    def __init__(self, grid: Grid, log: Callable[[str], None] = print, progress=None):
        self.grid, self.log, self.progress = grid, log, progress

    def __call__(self, node: Node) -> dict:
        from tatar_core.pipeline.runner import Pipeline

        kw = {"progress": self.progress} if self.progress is not None else {}
        r = Pipeline(node.cells[0].cfg, base=self.grid.base_dir, log=self.log, **kw).run(node.stage)
        return {"cached": r.cached, "dir": str(r.dir), "seconds": r.manifest.seconds}


class Subprocesses:
    """Run each node as `tatar run BASE --stage S --set k=v …` in a child process (parallel-safe)."""

    def __init__(self, grid: Grid, log: Callable[[str], None] = print, python: str = sys.executable):
        self.grid, self.log, self.python = grid, log, python

    def command(self, node: Node) -> list[str]:
        sets = [a for k, v in node.overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]
        return [self.python, "-m", "tatar_core.cli.main", "run", self.grid.base, "--stage", node.stage, *sets]

    def __call__(self, node: Node) -> dict:
        p = subprocess.run(self.command(node), cwd=self.grid.base_dir, capture_output=True, text=True)
        for line in (p.stdout + p.stderr).splitlines()[-3:]:
            self.log(f"[{node.name}] {line}")
        if p.returncode != 0:
            raise RuntimeError(f"{node.name}: exit {p.returncode}: {(p.stderr or p.stdout).strip()[-800:]}")
        m = self.grid.pipeline(node).manifest(node.stage)
        if m is None:
            raise RuntimeError(f"{node.name}: finished without a manifest")
        return {"cached": False, "dir": str(self.grid.pipeline(node).dir(node.stage)), "seconds": m.seconds}


def run_grid(
    grid: Grid, execute: Execute, parallel: Optional[int] = None, log: Callable[[str], None] = print
) -> GridOutcome:
    """Every node once, inputs first, up to `parallel` (default: the config's) at a time; see the module doc."""
    parallel = parallel or grid.cfg.parallel
    out, t0 = GridOutcome(), time.time()
    pending = {n.id: n for n in grid.ordered()}
    running: dict[Future, Node] = {}
    total = len(pending)

    def ready(n: Node) -> bool:
        return all(i in out.results for i in n.inputs)

    def blocked(n: Node) -> Optional[str]:
        for i in n.inputs:
            if i in out.failed or i in out.skipped:
                return f"{i[0]} {i[1][:12]}"
        return None

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="probes") as pool:
        while pending or running:
            for nid, n in list(pending.items()):
                why = blocked(n)
                if why:
                    out.skipped[nid] = why
                    del pending[nid]
                    log(f"[probes] {n.name}: not run, its input {why} failed")
                    continue
                if not ready(n):
                    continue
                m = grid.pipeline(n).manifest(n.stage)
                if m is not None:
                    out.results[nid] = {
                        "cached": True,
                        "dir": str(grid.pipeline(n).dir(n.stage)),
                        "seconds": m.seconds,
                    }
                    del pending[nid]
                    log(f"[probes] {n.name}: cached ({len(n.cells)} cell(s)) · {len(out.results)}/{total} done")
                    continue
                if len(running) < parallel:
                    del pending[nid]
                    cells = ", ".join(c.label for c in n.cells[:3]) + (" …" if len(n.cells) > 3 else "")
                    log(f"[probes] {n.name}: start (for {len(n.cells)} cell(s): {cells})")
                    # each run in a copy of this context: a Prefect flow run's context reaches run_deployment
                    running[pool.submit(contextvars.copy_context().run, execute, n)] = n
            if not running:
                if pending and not any(ready(n) for n in pending.values()):
                    raise RuntimeError("probes: nodes wait on inputs that are not in the grid (a bug)")
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                n = running.pop(f)
                try:
                    out.results[n.id] = f.result()
                    r = out.results[n.id]
                    log(
                        f"[probes] {n.name}: {'cached' if r.get('cached') else 'ran'} "
                        f"({r.get('seconds', 0):.0f} s) · {len(out.results)}/{total} done, "
                        f"{time.time() - t0:.0f} s so far"
                    )
                except Exception as e:  # noqa: BLE001 - the other nodes go on; raised at the end
                    out.failed[n.id] = f"{type(e).__name__}: {e}"
                    log(f"[probes] {n.name}: FAILED: {out.failed[n.id][:300]}")
    out.seconds = round(time.time() - t0, 1)
    return out


def failure_text(grid: Grid, outcome: GridOutcome) -> str:
    lines = [f"{len(outcome.failed)} stage run(s) failed, {len(outcome.skipped)} not run because of them:"]
    for nid, err in outcome.failed.items():
        cells = ", ".join(c.label for c in grid.nodes[nid].cells[:4])
        lines.append(f"  {nid[0]} {nid[1][:12]} ({cells}): {err[:400]}")
    return "\n".join(lines)


def run_probes(
    grid: Grid, execute: Execute, log: Callable[[str], None] = print, parallel: Optional[int] = None
) -> Path:
    """Plan line, every node, the report; returns the report.html path (raises ProbesFailed after writing the report
    when some stage runs failed)."""
    from tatar_core.probes.report import write_probes_report

    log(
        f"[probes] {len(grid.cells)} cells, {len(grid.nodes)} distinct stage runs "
        + ", ".join(f"{s} {sum(n.stage == s for n in grid.nodes.values())}" for s in STAGES)
    )
    outcome = run_grid(grid, execute, parallel, log)
    path = write_probes_report(grid, outcome)
    log(
        f"[probes] report: {path} ({outcome.ran} stage run(s) ran, {len(outcome.results) - outcome.ran} cached, "
        f"{outcome.seconds:.0f} s)"
    )
    if outcome.failed:
        raise ProbesFailed(failure_text(grid, outcome) + f"\nReport of the finished cells: {path}")
    return path


__all__ = ["run_grid", "run_probes", "InProcess", "Subprocesses", "GridOutcome", "ProbesFailed", "failure_text"]
