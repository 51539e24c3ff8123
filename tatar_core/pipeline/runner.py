"""The six stages as plain functions, with cache keys, stage folders and manifests (no Prefect here).

    samples ─► rationales ─► filtered ─► sft ─► grpo ─► benchmark

A stage writes into `<run_dir>/<stage>/<key[:16]>/` and writes `manifest.json` last; a folder with a
manifest is finished and is reused (cached) by every later run with the same key. A folder without one
is work in progress: rationale shards and trainer checkpoints in it are resumed. Each stage's work is the
`run_stage` function of its entry module (`tatar_core.pipeline.keys.STAGE_ENTRY`).

While a stage runs, its folder holds `status.json` (`tatar_core.pipeline.runs.StageStatus`: running with pid, host
and the last progress, or failed with the error); it is removed when the manifest is written. The runner logs one
line when a stage starts (what it reads) and one when it ends (time and headline numbers).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import time
from pathlib import Path
from typing import Callable, Iterable

from data_contracts import StageContext, StageIncomplete, StageManifest, StageNotReady, StageResult
from data_contracts.config import STAGES, PipelineConfig
from data_contracts.manifest import Mapper, serial_map, stage_folder
from data_contracts.manifest import ProgressFn, no_progress
from tatar_core.pipeline.describe import headline, start_line
from tatar_core.pipeline.keys import STAGE_ENTRY, STAGE_INPUTS, code_version, run_root, stage_config, stage_keys
from tatar_core.pipeline.runs import StatusWriter

__all__ = ["Pipeline", "StageResult", "StageNotReady", "StageIncomplete"]


class Pipeline:
    """One configured run. `run(stage)` reuses a finished folder or computes it; `run_all()` chains all six."""

    def __init__(self, cfg: PipelineConfig, base: Path | None = None, mapper: Mapper | None = None,
                 secret_resolver: Callable[[str], str] | None = None, log: Callable[[str], None] = print,
                 progress: ProgressFn = no_progress):
        self.cfg = cfg
        self.keys = stage_keys(cfg)
        self.root = run_root(cfg, base)
        self.ctx = StageContext(run_root=self.root, mapper=mapper or serial_map, secret_resolver=secret_resolver,
                                log=log, progress=progress)
        self.log = log

    # ---- folders and manifests -------------------------------------------------------------------
    def dir(self, stage: str) -> Path:
        return stage_folder(self.root, stage, self.keys[stage])

    def manifest(self, stage: str) -> StageManifest | None:
        return StageManifest.read(self.dir(stage))

    def result(self, stage: str) -> StageResult:
        """The finished result of `stage`, or StageNotReady naming what to run."""
        m = self.manifest(stage)
        if m is None:
            raise StageNotReady(
                f"stage '{stage}' has not finished for this config (expected {self.dir(stage)}/manifest.json); "
                f"run the '{stage}' stage (deployment tatar-{stage}/{stage}) or the whole pipeline (tatar/full)"
            )
        return StageResult(stage, self.dir(stage), m, cached=True)

    def status(self) -> dict[str, str]:
        out = {}
        for s in STAGES:
            d = self.dir(s)
            out[s] = "finished" if (d / "manifest.json").exists() else ("in progress" if d.exists() else "not run")
        return out

    # ---- running ---------------------------------------------------------------------------------
    def run(self, stage: str) -> StageResult:
        if stage not in STAGES:
            raise ValueError(f"unknown stage '{stage}' (stages: {', '.join(STAGES)})")
        d = self.dir(stage)
        done = StageManifest.read(d)
        if done is not None:
            self.log(f"[{stage}] cached: {d}")
            return StageResult(stage, d, done, cached=True)
        upstream = {u: self.result(u) for u in STAGE_INPUTS[stage]}
        d.mkdir(parents=True, exist_ok=True)
        self.log(start_line(self.cfg, stage, upstream, d))
        t0 = time.time()
        status = StatusWriter(d, stage)
        ctx = dataclasses.replace(self.ctx, progress=status.tee(self.ctx.progress))
        try:
            out = importlib.import_module(STAGE_ENTRY[stage]).run_stage(self.cfg, d, upstream, ctx)
        except BaseException as e:
            status.failed(e)
            raise
        manifest = StageManifest(
            stage=stage, key=self.keys[stage], code_version=code_version(stage),
            inputs={u: r.manifest.key for u, r in upstream.items()}, config=stage_config(self.cfg, stage),
            outputs=out.outputs, row_counts=out.row_counts, metrics=json.loads(json.dumps(out.metrics, default=str)),
            seconds=round(time.time() - t0, 2),
        )
        manifest.write(d)
        status.remove()
        self.log(f"[{stage}] finished in {manifest.seconds:.1f} s · {headline(manifest)}")
        return StageResult(stage, d, manifest, cached=False)

    def run_all(self, stages: Iterable[str] = STAGES) -> list[StageResult]:
        return [self.run(s) for s in stages]
