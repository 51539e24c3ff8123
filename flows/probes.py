"""The `tatar-probes` flow: the paper's controlled probes as a grid of cached stage runs, then one report.

The grid, its deduplication by cache key, the scheduling and the report are `tatar_core.probes` (no Prefect there);
this flow only says how a stage run starts: from a deployment (`orchestration.mode: auto`, the default) each
unfinished distinct stage run starts its stage's deployment on that deployment's pool, exactly as the `tatar` flow
does (`flows.stages._run_deployment`: the same idempotency keys and key check), up to `parallel` at once; otherwise
each runs as a subflow in this process, one at a time. Finished stage runs are reported as cached without starting
anything. The report (report.html, report.md) is published as a markdown artifact.
"""

from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from data_contracts.config.probes import load_probes
from flows.stages import STAGE_FLOWS, _run_deployment, dispatch_mode
from tatar_core.benchmark.report import inline_images
from tatar_core.probes.grid import Grid, Node, build_grid, plan_text
from tatar_core.probes.run import run_probes

DEFAULT_PROBES = "configs/probes.yaml"


def deployment_executor(grid: Grid):
    def execute(node: Node) -> dict:
        pipe = grid.pipeline(node)
        if pipe.manifest(node.stage) is not None:
            return {"cached": True, "dir": str(pipe.dir(node.stage)), "seconds": pipe.manifest(node.stage).seconds}
        r = _run_deployment(node.stage, pipe, grid.base, node.overrides)
        return {**r, "seconds": pipe.manifest(node.stage).seconds}

    return execute


def subflow_executor(grid: Grid):
    def execute(node: Node) -> dict:
        return STAGE_FLOWS[node.stage](config=grid.base, overrides=node.overrides)

    return execute


@flow(name="tatar-probes")
def probes(config: str = DEFAULT_PROBES, overrides: Optional[dict[str, Any]] = None) -> dict:
    """Run every variant x seed of the probes grid through the cached stages (each stage on its pool) and write the
    report; `overrides` are dotted keys of the probes config, e.g. {"seeds": [0], "scale.sft.max_steps": 100}."""
    logger = get_run_logger()
    grid = build_grid(load_probes(config, overrides))  # a bad grid fails here, naming the cell
    for line in plan_text(grid, config).splitlines():
        logger.info(line)
    mode = dispatch_mode(grid.cells[0].cfg)
    execute, parallel = (
        (deployment_executor(grid), None) if mode == "deployments" else (subflow_executor(grid), 1)
    )  # subflows train in this process: one at a time
    logger.info(f"stage runs: {'deployments on their pools' if mode == 'deployments' else 'subflows here'}")
    try:
        path = run_probes(grid, execute, log=logger.info, parallel=parallel)
    finally:
        from tatar_core.probes.report import REPORT_MD, report_dir

        md = report_dir(grid) / REPORT_MD
        if md.exists():
            create_markdown_artifact(
                f"Report page (open in a browser): `{md.with_suffix('.html')}`\n\n"
                + inline_images(md.read_text(), md.parent),
                key="tatar-probes-report",
                description="the probes report",
            )
    return {"report": str(path), "cells": len(grid.cells), "stage_runs": len(grid.nodes)}
