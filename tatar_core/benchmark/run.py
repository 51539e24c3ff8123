"""Score one benchmark with a `Scorer` and compute its metrics; each function is self-contained (one Prefect task
per benchmark can call `run_benchmark`).

    load_benchmark(src)                       -> (name, task, samples, skipped-at-load)
    benchmarks_from_samples(samples, split)   -> [(name, task, samples)] per source of a split (default test)
    benchmark_subset(name, task, samples, max_items)         -> the samples to score
    score_benchmark(name, task, samples, scorer, max_items)  -> [PredictionRecord]
    run_benchmark(name, task, samples, scorer, ...)         -> BenchmarkOutcome(predictions, skipped, metrics)
    benchmark_outcome(name, task, predictions, skipped, ...) -> BenchmarkOutcome (metrics of scored predictions)
    summarize(metrics)                        -> per-task means
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from data_contracts.config.samples import DatasetSource
from data_contracts.records import GroupMetricRecord, MetricRecord, PredictionRecord, SampleRecord, SkippedRecord
from tatar_core.benchmark.metrics import compute_metrics, group_metrics
from tatar_core.demo.data import GENERATED_META_KEY
from tatar_core.images import ImageLoadError, load_rgb
from tatar_core.progress import progress_bar
from tatar_core.samples.readers import load_dataset, select_subset
from tatar_core.samples.specs import get_spec


@dataclass
class BenchmarkOutcome:
    predictions: list[PredictionRecord]
    skipped: list[SkippedRecord]  # at load time (label rows, images) and at scoring time (undecodable images)
    metrics: MetricRecord
    groups: list[GroupMetricRecord] = field(default_factory=list)


def benchmark_source(src: DatasetSource) -> DatasetSource:
    """A benchmark reads the test split of its source unless the source sets `split`."""
    return src if "split" in src.model_fields_set else src.model_copy(update={"split": "test"})


def load_benchmark(
    src: DatasetSource, progress: bool = True
) -> tuple[str, str, list[SampleRecord], list[SkippedRecord]]:
    """(benchmark name, task, samples, skipped) of a dataset source; the test split unless `split` was set."""
    src = benchmark_source(src)
    spec = get_spec(src.name)
    result = load_dataset(src, progress=progress)
    return src.alias or src.name, spec.task or src.task, result.samples, result.skipped


TRAIN_PHOTOS = "train_photos"
IN_SAMPLE_SUFFIX = "-train-photos"  # benchmark-name suffix of the in-sample TRAIN_PHOTOS sets


def benchmarks_from_samples(
    samples: Sequence[SampleRecord], split: str = "test"
) -> list[tuple[str, str, list[SampleRecord]]]:
    """(name, task, samples) per (source, task) of a samples table's `split` rows, e.g. demo-iqa / demo-iaa.

    split "train_photos": the train split's rows that are not generated references (no GENERATED_META_KEY in
    their meta), i.e. the training photos' own versions: an in-sample fit, named e.g. demo-iqa-train-photos.
    """
    groups: dict[tuple[str, str], list[SampleRecord]] = {}
    for s in samples:
        if split == TRAIN_PHOTOS:
            if s.split != "train" or GENERATED_META_KEY in _meta(s):
                continue
        elif s.split != split:
            continue
        groups.setdefault((s.source, s.task), []).append(s)
    suffix = IN_SAMPLE_SUFFIX if split == TRAIN_PHOTOS else ""
    return [(src + suffix, task, rows) for (src, task), rows in sorted(groups.items())]


def _meta(s: SampleRecord) -> dict:
    """The sample's provenance dict, {} when absent or unreadable."""
    try:
        meta = json.loads(s.meta) if s.meta else {}
    except json.JSONDecodeError:
        return {}
    return meta if isinstance(meta, dict) else {}


def sample_group(s: SampleRecord) -> str:
    """The sample's distortion type (IQA) or manipulation (IAA) from its provenance, "" when unknown."""
    meta = _meta(s)
    return str(meta.get("type") or meta.get("manipulation") or "")


def benchmark_subset(
    name: str, task: str, samples: Sequence[SampleRecord], max_items: Optional[int] = None
) -> list[SampleRecord]:
    """The samples a benchmark scores: at most `max_items`, a fixed pseudo-random subset by sample id, in input
    order; every sample must be of `task`."""
    wrong = [s.sample_id for s in samples if s.task != task]
    if wrong:
        raise ValueError(f"{name}: {len(wrong)} samples are not {task!r} (e.g. {wrong[0]})")
    return [samples[i] for i in select_subset([s.sample_id for s in samples], max_items)]


def prediction(
    name: str,
    task: str,
    s: SampleRecord,
    model: str,
    score: Optional[float],
    parse: str,
    completion: str,
    n_words: int,
    greedy: Optional[float],
) -> PredictionRecord:
    """The PredictionRecord of sample `s` scored by `model`."""
    return PredictionRecord(
        benchmark=name,
        sample_id=s.sample_id,
        image_path=s.image_path,
        task=task,
        gt=s.score,
        pred=score,
        parse=parse,
        completion=completion,
        n_words=n_words,
        model=model,
        pred_greedy=greedy,
        ref_id=s.ref_id,
        group=sample_group(s),
    )


def score_benchmark(
    name: str,
    task: str,
    samples: Sequence[SampleRecord],
    scorer,
    max_items: Optional[int] = None,
    skipped: Optional[list[SkippedRecord]] = None,
    progress: bool = True,
    model: str = "grpo",
    on_progress: Optional[Callable[[int], None]] = None,
) -> list[PredictionRecord]:
    """Predictions of `scorer` (labelled `model`) for `samples` (at most `max_items`, a fixed pseudo-random subset by
    sample id). `on_progress(n)`: n more images done (scored, or skipped as undecodable).

    Images are decoded in chunks; one that cannot be decoded is appended to `skipped` as a SkippedRecord
    (raised as `ImageLoadError` when `skipped` is None). Unparsable completions are kept with pred=None.
    """
    todo = benchmark_subset(name, task, samples, max_items)
    chunk = max(1, scorer.batch_size) * 16
    out: list[PredictionRecord] = []
    bar = progress_bar(len(todo), f"benchmark {name}", "images", disable=not progress)
    for start in range(0, len(todo), chunk):
        part, images = [], []
        for s in todo[start : start + chunk]:
            try:
                images.append(load_rgb(s.image_path))
                part.append(s)
            except ImageLoadError as e:
                if skipped is None:
                    raise
                skipped.append(SkippedRecord(benchmark=name, item=s.image_path, reason=e.reason, split=s.split))
        if on_progress is not None and len(part) < len(todo[start : start + chunk]):
            on_progress(len(todo[start : start + chunk]) - len(part))
        results = scorer.score(images, task, on_batch=on_progress) if images else []
        for s, r in zip(part, results):
            out.append(prediction(name, task, s, model, r.score, r.parse, r.completion, r.n_words, r.greedy))
        if bar is not None:
            bar.update(len(todo[start : start + chunk]))
    if bar is not None:
        bar.close()
    return out


def run_benchmark(
    name: str,
    task: str,
    samples: Sequence[SampleRecord],
    scorer,
    *,
    skipped: Sequence[SkippedRecord] = (),
    max_items: Optional[int] = None,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    model: str = "grpo",
    on_progress: Optional[Callable[[int], None]] = None,
) -> BenchmarkOutcome:
    """Score one benchmark with one model and compute its MetricRecord (n_skipped counts load-time and
    scoring-time skips) and per-group metrics."""
    all_skipped = list(skipped)
    preds = score_benchmark(
        name,
        task,
        samples,
        scorer,
        max_items,
        skipped=all_skipped,
        progress=progress,
        model=model,
        on_progress=on_progress,
    )
    return benchmark_outcome(name, task, preds, all_skipped, bootstrap=bootstrap, seed=seed, readout=scorer.readout)


def benchmark_outcome(
    name: str,
    task: str,
    predictions: list[PredictionRecord],
    skipped: list[SkippedRecord],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    readout: str = "greedy",
) -> BenchmarkOutcome:
    """The metrics and per-group metrics of one benchmark's predictions by one model. n_skipped counts the load-time
    and scoring-time skips of this split; label rows whose split cannot be told (split "unknown") are not counted."""
    n_skipped = sum(s.split != "unknown" for s in skipped)
    metrics = compute_metrics(
        name, task, predictions, n_skipped=n_skipped, bootstrap=bootstrap, seed=seed, readout=readout
    )
    return BenchmarkOutcome(predictions, skipped, metrics, group_metrics(name, task, predictions))


def _mean(values) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def summarize(metrics: Sequence[MetricRecord]) -> dict[str, dict[str, float]]:
    """Per task: number of benchmarks and the mean SRCC / PLCC / PLCC-logistic / valid fraction (NaNs ignored)."""
    out: dict[str, dict[str, float]] = {}
    for task in ("iqa", "iaa"):
        ms = [m for m in metrics if m.task == task]
        if not ms:
            continue
        out[task] = {
            "n_benchmarks": len(ms),
            "srcc": _mean(m.srcc for m in ms),
            "plcc": _mean(m.plcc for m in ms),
            "plcc_logistic": _mean(m.plcc_logistic for m in ms),
            "valid_fraction": _mean((m.n_valid / m.n) if m.n else float("nan") for m in ms),
        }
    return out


__all__ = [
    "BenchmarkOutcome",
    "load_benchmark",
    "benchmarks_from_samples",
    "benchmark_subset",
    "prediction",
    "score_benchmark",
    "run_benchmark",
    "benchmark_outcome",
    "summarize",
]
