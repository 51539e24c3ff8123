"""The six stages as plain functions, with cache keys, stage folders, manifests and locks (no Prefect here).

    samples ─► rationales ─► filtered ─► sft ─► grpo ─► benchmark

A stage writes into `<run_dir>/<stage>/<key[:16]>/` and writes `manifest.json` last; a folder with a
manifest is finished and is reused (cached) by every later run with the same key. A folder without one
is work in progress: rationale shards and trainer checkpoints in it are resumed. Each stage's work is the
`run_stage` function of its entry module (`tatar_core.pipeline.keys.STAGE_ENTRY`).

Finished means more than "has a manifest": the manifest parses, every output file it records has its recorded size
(`tatar verify` also compares sha256), and every input stage is still the one it read (same `digest()`). Otherwise
the stage is unfinished, with a message naming the file; the rerun first moves the old parts aside into
`<stage>/<key16>.stale-<UTC time>/` (the manifest and the outputs it names; everything when an input changed, since
work in progress then belongs to other inputs), never deleting them, and rebuilds the stage.

A stage runs under its folder's lock (`tatar_core.pipeline.locks`): a second run of the same key waits and then
reports the stage as cached, or fails at once naming the holder (`locking.wait: false`).

While a stage runs, its folder holds `status.json` (`tatar_core.pipeline.runs.StageStatus`: running with pid, host
and the last progress, or failed with the error); it is removed when the manifest is written. The runner logs one
line when a stage starts (what it reads) and one when it ends (time and headline numbers).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Optional

from data_contracts import (
    ConfigError,
    StageContext,
    StageIncomplete,
    StageLocked,
    StageManifest,
    StageNotReady,
    StageResult,
)
from data_contracts.config import STAGES, PipelineConfig
from data_contracts.manifest import (
    MANIFEST_NAME,
    ProgressFn,
    check_finished,
    no_progress,
    output_files,
    stage_folder,
)
from tatar_core.method.rewards import check_weights
from tatar_core.pipeline.describe import headline, start_line
from tatar_core.pipeline.keys import STAGE_ENTRY, STAGE_INPUTS, code_version, run_root, stage_config, stage_keys
from tatar_core.pipeline.locks import stage_lock
from tatar_core.pipeline.runs import StatusWriter

__all__ = ["Pipeline", "StageResult", "StageNotReady", "StageIncomplete", "StageLocked"]


class Pipeline:
    """One configured run. `run(stage)` reuses a finished folder or computes it; `run_all()` chains all six.
    A config naming an unregistered GRPO reward raises ConfigError here, before any stage."""

    def __init__(
        self,
        cfg: PipelineConfig,
        base: Path | None = None,
        secret_resolver: Callable[[str], str] | None = None,
        log: Callable[[str], None] = print,
        progress: ProgressFn = no_progress,
    ):
        try:
            check_weights(cfg.grpo)  # the reward names against the registry, before any stage runs
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.cfg = cfg
        self.keys = stage_keys(cfg)
        self.root = run_root(cfg, base)
        self.ctx = StageContext(run_root=self.root, secret_resolver=secret_resolver, log=log, progress=progress)
        self.log = log

    # ---- folders and manifests -------------------------------------------------------------------
    def dir(self, stage: str) -> Path:
        return stage_folder(self.root, stage, self.keys[stage])

    def check(self, stage: str, hashes: bool = False) -> tuple[Optional[StageManifest], Optional[str]]:
        """(manifest, None) when `stage` is finished: manifest valid, outputs as recorded (sizes; sha256 with
        `hashes`), inputs unchanged. Else (None, why); why is None when the stage never finished."""
        m, problem = check_finished(self.dir(stage), hashes)
        if m is None:
            return None, problem
        changed = self._input_changed(stage, m)
        return (None, changed) if changed else (m, None)

    def _input_changed(self, stage: str, m: StageManifest) -> Optional[str]:
        """Why `stage` no longer matches its inputs: a finished input stage whose outputs are not the ones it read.
        (An input that is unfinished right now changes nothing until it is rebuilt.)"""
        for u in STAGE_INPUTS[stage]:
            um = self.manifest(u)
            if um is not None and m.input_digests.get(u, um.digest()) != um.digest():
                return f"its input stage '{u}' was rebuilt with other outputs since it ran ({self.dir(u)})"
        return None

    def manifest(self, stage: str) -> StageManifest | None:
        """The manifest of a finished stage (see `check`), else None."""
        return self.check(stage)[0]

    def result(self, stage: str) -> StageResult:
        """The finished result of `stage`, or StageNotReady naming what to run."""
        m, problem = self.check(stage)
        if m is None:
            why = (
                f"not finished ({problem})"
                if problem
                else f"has not finished for this config (expected {self.dir(stage)}/{MANIFEST_NAME})"
            )
            raise StageNotReady(
                f"stage '{stage}' {why}; run the '{stage}' stage (deployment tatar-{stage}/{stage}) "
                "or the whole pipeline (tatar/full)"
            )
        return StageResult(stage, self.dir(stage), m, cached=True)

    def status(self) -> dict[str, str]:
        out = {}
        for s in STAGES:
            m, problem = self.check(s)
            out[s] = (
                "finished"
                if m is not None
                else f"needs a rerun: {problem}"
                if problem
                else "in progress"
                if self.dir(s).exists()
                else "not run"
            )
        return out

    def set_aside(self, stage: str, problem: str, everything: bool = False) -> Optional[Path]:
        """Move the parts of an unfinished stage's old result into `<key16>.stale-<UTC time>/` (call under the lock):
        the manifest and the outputs it names, or `everything` (when an input changed: work in progress then belongs
        to other inputs). Returns the folder (None when there was nothing to move)."""
        d = self.dir(stage)
        names = [MANIFEST_NAME]
        if everything:
            names = sorted(p.name for p in d.iterdir())
        else:
            try:
                m = StageManifest.read(d)
                names += sorted({Path(rel).parts[0] for rel in m.outputs.values()}) if m else []
            except ValueError:  # corrupt: only the manifest is known
                pass
        names = [n for n in names if (d / n).exists() or (d / n).is_symlink()]
        if not names:
            return None
        stale = d.with_name(f"{d.name}.stale-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')}")
        stale.mkdir()
        for n in names:
            os.replace(d / n, stale / n)
        self.log(f"[{stage}] not finished: {problem}; moved {', '.join(names)} to {stale}; rebuilding it")
        return stale

    def verify(self, stage: str) -> tuple[str, Optional[str]]:
        """Check a stage's outputs against the sha256 in its manifest: ("ok" | "not finished" | "mismatch" |
        "in use", detail). A mismatch moves the stage's parts aside (`set_aside`) so that the next run rebuilds it."""
        if not (self.dir(stage) / MANIFEST_NAME).exists():
            return "not finished", None
        try:
            with stage_lock(self.dir(stage), stage, self.cfg.locking, wait=False, log=self.log):
                m, problem = check_finished(self.dir(stage), hashes=True)
                if m is not None:
                    changed = self._input_changed(stage, m)
                    if changed is None:
                        return "ok", f"{len(m.files)} files"
                    return "mismatch", f"{changed}; moved aside to {self.set_aside(stage, changed, everything=True)}"
                if problem is None:
                    return "not finished", None
                return "mismatch", f"{problem}; moved aside to {self.set_aside(stage, problem)}"
        except StageLocked as e:
            return "in use", str(e)

    # ---- running ---------------------------------------------------------------------------------
    def run(self, stage: str) -> StageResult:
        if stage not in STAGES:
            raise ValueError(f"unknown stage '{stage}' (stages: {', '.join(STAGES)})")
        d = self.dir(stage)
        done, _ = self.check(stage)
        if done is not None:
            self.log(f"[{stage}] cached: {d}")
            return StageResult(stage, d, done, cached=True)
        upstream = {u: self.result(u) for u in STAGE_INPUTS[stage]}
        with stage_lock(d, stage, self.cfg.locking, log=self.log):
            done, problem = check_finished(d)
            changed = self._input_changed(stage, done) if done is not None else None
            if done is not None and changed is None:  # finished by the run we waited for
                self.log(f"[{stage}] cached (finished by another run meanwhile): {d}")
                return StageResult(stage, d, done, cached=True)
            if problem or changed:
                self.set_aside(stage, problem or changed, everything=changed is not None)
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
                stage=stage,
                key=self.keys[stage],
                code_version=code_version(stage),
                inputs={u: r.manifest.key for u, r in upstream.items()},
                config=stage_config(self.cfg, stage),
                outputs=out.outputs,
                files=output_files(d, out.outputs),
                input_digests={u: r.manifest.digest() for u, r in upstream.items()},
                row_counts=out.row_counts,
                metrics=json.loads(json.dumps(out.metrics, default=str)),
                seconds=round(time.time() - t0, 2),
            )
            manifest.write(d)
            status.remove()
        self.log(f"[{stage}] finished in {manifest.seconds:.1f} s · {headline(manifest)}")
        return StageResult(stage, d, manifest, cached=False)

    def run_all(self, stages: Iterable[str] = STAGES) -> list[StageResult]:
        return [self.run(s) for s in stages]
