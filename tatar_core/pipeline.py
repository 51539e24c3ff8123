"""The six stages as plain functions, with cache keys, stage folders and manifests (no Prefect here).

    samples ─► rationales ─► filtered ─► sft ─► grpo ─► benchmark

A stage writes into `<run_dir>/<stage>/<key[:16]>/` and writes `manifest.json` last; a folder with a
manifest is finished and is reused (cached) by every later run with the same key. A folder without one
is work in progress: rationale shards and trainer checkpoints in it are resumed.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from data_contracts import StageManifest, read_records, write_records
from data_contracts.config import STAGES, PipelineConfig
from data_contracts.records import (
    KeptRecord, MetricRecord, PredictionRecord, RationaleRecord, RejectedRecord, SampleRecord,
    SkippedRecord,
)
from tatar_core.stage_keys import STAGE_INPUTS, code_version, run_root, stage_config, stage_keys

Mapper = Callable[[Callable[[Any], Any], list], list]


class StageNotReady(RuntimeError):
    """A stage was asked to run before the stages it reads have finished."""


class StageIncomplete(RuntimeError):
    """A stage stopped with work left (e.g. teacher rows that failed); rerunning resumes it."""


@dataclass
class StageResult:
    stage: str
    dir: Path
    manifest: StageManifest
    cached: bool

    def path(self, name: str) -> Path:
        return self.manifest.output_path(self.dir, name)


@dataclass
class _Outputs:
    outputs: dict[str, str] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def _serial_map(fn: Callable[[Any], Any], items: list) -> list:
    return [fn(x) for x in items]


class Pipeline:
    """One configured run. `run(stage)` reuses a finished folder or computes it; `run_all()` chains all six."""

    def __init__(self, cfg: PipelineConfig, base: Path | None = None, mapper: Mapper | None = None,
                 secret_resolver: Callable[[str], str] | None = None, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.keys = stage_keys(cfg)
        self.root = run_root(cfg, base)
        self.mapper = mapper or _serial_map
        self.secret_resolver = secret_resolver
        self.log = log

    # ---- folders and manifests -------------------------------------------------------------------
    def dir(self, stage: str) -> Path:
        return self.root / stage / self.keys[stage][:16]

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
        self.log(f"[{stage}] running into {d}")
        t0 = time.time()
        out: _Outputs = getattr(self, f"_run_{stage}")(d, upstream)
        manifest = StageManifest(
            stage=stage, key=self.keys[stage], code_version=code_version(stage),
            inputs={u: r.manifest.key for u, r in upstream.items()}, config=stage_config(self.cfg, stage),
            outputs=out.outputs, row_counts=out.row_counts, metrics=out.metrics, seconds=round(time.time() - t0, 2),
        )
        manifest.write(d)
        self.log(f"[{stage}] finished in {manifest.seconds:.1f} s: {out.row_counts}")
        return StageResult(stage, d, manifest, cached=False)

    def run_all(self, stages: Iterable[str] = STAGES) -> list[StageResult]:
        return [self.run(s) for s in stages]

    # ---- stage implementations -------------------------------------------------------------------
    def _run_samples(self, d: Path, up: dict[str, StageResult]) -> _Outputs:
        sc = self.cfg.samples
        skipped: list[SkippedRecord] = []
        if sc.source == "demo":
            from tatar_core.demo_data import build_demo_samples

            samples = build_demo_samples(sc.demo, d)
        else:
            from tatar_core.datasets import load_dataset

            if not sc.datasets:
                raise ValueError("samples.source is 'datasets' but samples.datasets is empty")
            samples = []
            for src in sc.datasets:
                res = load_dataset(src)
                samples += res.samples
                skipped += res.skipped
        ids = [s.sample_id for s in samples]
        if len(set(ids)) != len(ids):
            raise ValueError("samples: sample_id values are not unique")
        write_records(samples, d / "samples.parquet", SampleRecord)
        write_records(skipped, d / "skipped.parquet", SkippedRecord)
        counts = {"samples": len(samples), "skipped": len(skipped)}
        for split in ("train", "test"):
            for task in ("iqa", "iaa"):
                counts[f"{split}_{task}"] = sum(s.split == split and s.task == task for s in samples)
        return _Outputs({"samples": "samples.parquet", "skipped": "skipped.parquet"}, counts)

    def _samples(self, up: dict[str, StageResult], split: str | None = None) -> list[SampleRecord]:
        rows = read_records(up["samples"].path("samples"), SampleRecord)
        return [s for s in rows if split is None or s.split == split]

    def _run_rationales(self, d: Path, up: dict[str, StageResult]) -> _Outputs:
        from tatar_core.rationale_runner import generate_rationales
        from tatar_core.teacher_openai import make_teacher

        rc = self.cfg.rationales
        train = self._samples(up, "train")
        if rc.max_samples is not None:
            train = train[: rc.max_samples]
        teacher = make_teacher(rc.teacher, secret_resolver=self.secret_resolver)
        concurrency = rc.teacher.endpoint.concurrency if rc.teacher.kind == "openai" else 2
        res = generate_rationales(train, teacher, d, shard_size=rc.shard_size, concurrency=concurrency)
        counts = {"train_samples": len(train), "rationales": len(res.records), "failed": len(res.failed),
                  "resumed": res.n_resumed}
        if res.failed:
            raise StageIncomplete(
                f"rationales: {len(res.failed)} of {len(train)} rows failed after retries "
                f"(errors in {d / 'failed.parquet'}); {len(res.records)} are saved; run the stage again to retry them"
            )
        return _Outputs({"rationales": "rationales.parquet", "failed": "failed.parquet"}, counts,
                        {"teacher": teacher.teacher_id})

    def _run_filtered(self, d: Path, up: dict[str, StageResult]) -> _Outputs:
        from tatar_core.filtering import filter_rationales, reason_counts

        records = read_records(up["rationales"].path("rationales"), RationaleRecord)
        samples = {s.sample_id: s for s in self._samples(up)}
        kept, rejected = filter_rationales(records, samples, self.cfg.filtered, secret_resolver=self.secret_resolver)
        write_records(kept, d / "kept.parquet", KeptRecord)
        write_records(rejected, d / "rejected.parquet", RejectedRecord)
        counts = {"rationales": len(records), "kept": len(kept), "rejected": len(rejected)}
        for task in ("iqa", "iaa"):
            counts[f"kept_{task}"] = sum(k.task == task for k in kept)
        if not kept:
            raise StageIncomplete(f"filtered: every rationale was rejected (reasons in {d / 'rejected.parquet'})")
        return _Outputs({"kept": "kept.parquet", "rejected": "rejected.parquet"}, counts,
                        {"reasons": reason_counts(rejected)})

    def _run_sft(self, d: Path, up: dict[str, StageResult]) -> _Outputs:
        from tatar_core.modeling import resolve_model
        from tatar_core.sft import run_sft

        kept = read_records(up["filtered"].path("kept"), KeptRecord)
        base = resolve_model(self.cfg.model, self.root / "models")
        metrics = run_sft(kept, base, self.cfg.sft, self.cfg.model, d)
        counts = {"train_rows": len(kept), **{k: int(metrics[k]) for k in ("steps", "dropped_iqa", "dropped_iaa") if k in metrics}}
        return _Outputs({"model": "model"}, counts, _jsonable(metrics) | {"base_model": str(base)})

    def _run_grpo(self, d: Path, up: dict[str, StageResult]) -> _Outputs:
        from tatar_core.grpo import run_grpo

        train = self._samples(up, "train")
        metrics = run_grpo(train, up["sft"].path("model"), self.cfg.grpo, self.cfg.model, d)
        counts = {"train_samples": len(train), **({"steps": int(metrics["steps"])} if "steps" in metrics else {})}
        return _Outputs({"model": "model", "train_log": "train_log.parquet"}, counts, _jsonable(metrics))

    # ---- benchmark: one unit of work per benchmark, mapped by `self.mapper` (a Prefect task runner) ----
    def benchmark_sets(self, up: dict[str, StageResult]) -> list[tuple[str, str, list[SampleRecord], list[SkippedRecord]]]:
        """(name, task, samples, skipped) for every benchmark the config asks for."""
        from tatar_core.benchmarking import benchmarks_from_samples, load_benchmark

        bc = self.cfg.benchmark
        sets = []
        if bc.include_demo_test:
            sets += [(name, task, rows, []) for name, task, rows in benchmarks_from_samples(self._samples(up), "test")]
        sets += [load_benchmark(src) for src in bc.datasets]
        return sets

    def _run_benchmark(self, d: Path, up: dict[str, StageResult]) -> _Outputs:
        import threading

        from tatar_core.benchmarking import run_benchmark
        from tatar_core.report import format_table, write_report
        from tatar_core.scoring import Scorer

        bc = self.cfg.benchmark
        sets = self.benchmark_sets(up)
        if not sets:
            raise ValueError("benchmark: nothing to score (include_demo_test is off and benchmark.datasets is empty)")
        model_dir = up["grpo"].path("model")
        lock, scorers = threading.Lock(), {}

        def scorer() -> Scorer:
            with lock:  # one model per process, loaded once
                if "s" not in scorers:
                    scorers["s"] = Scorer(model_dir, model_cfg=self.cfg.model, batch_size=bc.batch_size,
                                          max_new_tokens=bc.max_new_tokens, readout=bc.readout, device=bc.device,
                                          draft_tokens=bc.draft_tokens)
                return scorers["s"]

        def one(item):
            name, task, samples, skipped = item
            return run_benchmark(name, task, samples, scorer(), skipped=skipped, max_items=bc.max_items,
                                 bootstrap=bc.bootstrap, seed=bc.seed)

        outcomes = self.mapper(one, sets)
        preds = [p for o in outcomes for p in o.predictions]
        metrics = [o.metrics for o in outcomes]
        skipped = [s for o in outcomes for s in o.skipped]
        write_records(preds, d / "predictions.parquet", PredictionRecord)
        write_records(metrics, d / "metrics.parquet", MetricRecord)
        write_records(skipped, d / "skipped.parquet", SkippedRecord)
        report = write_report(metrics, preds, d)
        self.log("\n" + format_table(metrics))
        return _Outputs(
            {"predictions": "predictions.parquet", "metrics": "metrics.parquet", "skipped": "skipped.parquet",
             "report": Path(report).name},
            {"predictions": len(preds), "benchmarks": len(metrics), "skipped": len(skipped)},
            {"benchmarks": [m.model_dump(mode="json") for m in metrics], "model": str(model_dir)},
        )


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))
