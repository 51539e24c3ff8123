"""Resumable, bounded-concurrency rationale generation with Parquet shards.

`generate_rationales(samples, teacher, out_dir, …)` asks `teacher` for one `RationaleRecord` per sample:

- teacher: anything with `.teacher_id` and either `async agenerate(sample)` or sync `generate(sample)` (run in a
  thread pool). At most `concurrency` samples are in flight. Errors a teacher raises may carry `.attempts`;
  a teacher with `.redact(text)` has its error texts redacted before they are stored.
- Finished rows are appended as shards to `out_dir/shards/` every `shard_size` rows, when the oldest unsaved
  row has waited `flush_every_s` seconds, and at the end (also on Ctrl-C / cancellation). A hard kill
  loses only rows not yet in a shard.
- Resume key = (sample_id, teacher_id): a rerun skips rows already in a shard. At the end it writes
  `out_dir/rationales.parquet` (exactly one row per sample that is done, in input order; duplicates left by a
  crash are dropped keeping the oldest) and `out_dir/failed.parquet` (rows that still failed; retried next run).
- Progress: a tqdm bar (`progress`), and `on_progress(done, total[, failed=k])` after every row (done counts
  resumed, new and failed rows; `failed` once there are any).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tqdm.auto import tqdm

from data_contracts.parquet_io import write_records
from data_contracts.records import FailedRecord, RationaleRecord, SampleRecord
from tatar_core.llm.client import run_coroutine
from tatar_core.rationales.shards import ShardWriter, dedupe, read_shards, remove_stale_tmp

RATIONALES_FILE = "rationales.parquet"
FAILED_FILE = "failed.parquet"
SHARD_DIR = "shards"
MAX_ERROR_CHARS = 2000


@dataclass
class RationaleRunResult:
    records: list[RationaleRecord]
    failed: list[FailedRecord]
    n_new: int  # rows produced by this run
    n_resumed: int  # rows found in shards of earlier runs


class TeacherOutputError(ValueError):
    """The teacher returned a record for another sample/teacher, or not a RationaleRecord."""


def _error_text(teacher: Any, exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    redact = getattr(teacher, "redact", None)
    if callable(redact):
        text = redact(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _check(rec: Any, sample: SampleRecord, teacher_id: str) -> RationaleRecord:
    if not isinstance(rec, RationaleRecord):
        raise TeacherOutputError(f"teacher returned {type(rec).__name__}, expected RationaleRecord")
    if rec.sample_id != sample.sample_id or rec.teacher != teacher_id:
        raise TeacherOutputError(
            f"teacher returned a record for ({rec.sample_id!r}, {rec.teacher!r}), "
            f"expected ({sample.sample_id!r}, {teacher_id!r})"
        )
    return rec


async def agenerate_rationales(
    samples: Sequence[SampleRecord],
    teacher: Any,
    out_dir: Path | str,
    shard_size: int = 32,
    concurrency: int = 4,
    progress: bool = True,
    flush_every_s: float = 5.0,
    run_root: Path | str | None = None,
    on_progress: Optional[Callable[..., None]] = None,
) -> RationaleRunResult:
    """Async version of `generate_rationales` (same arguments and outputs)."""
    if shard_size < 1 or concurrency < 1:
        raise ValueError(f"shard_size and concurrency must be >= 1 (got {shard_size}, {concurrency})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher_id = teacher.teacher_id
    samples = dedupe(samples, lambda s: s.sample_id)
    wanted = {s.sample_id for s in samples}

    remove_stale_tmp(out_dir / SHARD_DIR)
    done: dict[str, RationaleRecord] = {}
    for r in read_shards(out_dir / SHARD_DIR, RationaleRecord, run_root):
        if r.teacher == teacher_id and r.sample_id in wanted and r.sample_id not in done:
            done[r.sample_id] = r
    n_resumed = len(done)
    todo = [s for s in samples if s.sample_id not in done]

    writer = ShardWriter(out_dir / SHARD_DIR, RationaleRecord, run_root)
    failed: dict[str, FailedRecord] = {}
    buffer: list[RationaleRecord] = []
    is_async = inspect.iscoroutinefunction(getattr(teacher, "agenerate", None))
    if not is_async and not callable(getattr(teacher, "generate", None)):
        raise TypeError(f"teacher {type(teacher).__name__} has neither async agenerate() nor generate()")
    pool = None if is_async else ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="teacher")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    feed = iter(todo)

    async def one(sample: SampleRecord):
        try:
            if is_async:
                rec = await teacher.agenerate(sample)
            else:
                rec = await loop.run_in_executor(pool, teacher.generate, sample)
            return _check(rec, sample, teacher_id)
        except Exception as e:  # noqa: BLE001 - any teacher error becomes a failed row
            return FailedRecord(
                sample_id=sample.sample_id,
                task=sample.task,
                teacher=teacher_id,
                error=_error_text(teacher, e),
                attempts=int(getattr(e, "attempts", 1)),
            )

    async def worker():  # `concurrency` workers share one iterator: at most that many samples in flight
        for sample in feed:
            await queue.put(await one(sample))

    bar = tqdm(
        total=len(samples), initial=n_resumed, desc="rationales", unit="row", disable=not progress, dynamic_ncols=True
    )
    if on_progress is not None:
        on_progress(n_resumed, len(samples))
    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
    oldest = 0.0  # when the oldest row in `buffer` finished

    def flush():
        nonlocal buffer
        writer.write(buffer)
        buffer = []

    try:
        for i in range(len(todo)):
            while True:
                wait_s = max(0.05, flush_every_s - (time.monotonic() - oldest)) if buffer else 1.0
                try:
                    res = await asyncio.wait_for(queue.get(), timeout=wait_s)
                    break
                except asyncio.TimeoutError:
                    if buffer and time.monotonic() - oldest >= flush_every_s:  # rows waited long enough
                        flush()
                    if queue.empty() and all(w.done() for w in workers):  # a worker died: surface its error
                        for w in workers:
                            if not w.cancelled() and w.exception() is not None:
                                raise w.exception()
                        raise RuntimeError("rationale workers stopped before every sample was processed")
            if isinstance(res, FailedRecord):
                failed[res.sample_id] = res
                bar.set_postfix(failed=len(failed), refresh=False)
            else:
                if not buffer:
                    oldest = time.monotonic()
                buffer.append(res)
                done[res.sample_id] = res
            bar.update(1)
            if on_progress is not None:
                on_progress(n_resumed + i + 1, len(samples), **({"failed": len(failed)} if failed else {}))
            if len(buffer) >= shard_size or (buffer and time.monotonic() - oldest >= flush_every_s):
                flush()
    finally:
        writer.write(buffer)  # also on cancellation / Ctrl-C: keep what is finished
        for w in workers:
            w.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        bar.close()

    records = [done[s.sample_id] for s in samples if s.sample_id in done]
    failed_rows = [failed[s.sample_id] for s in samples if s.sample_id in failed and s.sample_id not in done]
    write_records(records, out_dir / RATIONALES_FILE, RationaleRecord, run_root=run_root)
    write_records(failed_rows, out_dir / FAILED_FILE, FailedRecord)
    return RationaleRunResult(records=records, failed=failed_rows, n_new=writer.n_rows, n_resumed=n_resumed)


def generate_rationales(
    samples: Sequence[SampleRecord],
    teacher: Any,
    out_dir: Path | str,
    shard_size: int = 32,
    concurrency: int = 4,
    progress: bool = True,
    flush_every_s: float = 5.0,
    run_root: Path | str | None = None,
    on_progress: Optional[Callable[..., None]] = None,
) -> RationaleRunResult:
    """Generate (or resume) one rationale per sample; see the module docstring for files and guarantees. With
    `run_root`, image paths inside it are stored relative to it (data_contracts.paths)."""
    return run_coroutine(
        lambda: agenerate_rationales(
            samples, teacher, out_dir, shard_size, concurrency, progress, flush_every_s, run_root, on_progress
        )
    )
