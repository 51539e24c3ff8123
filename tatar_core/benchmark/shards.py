"""Every GPU busy: the images of all benchmarks split into shards by expected cost, one scoring engine per shard.

    items  = every (benchmark, sample) the stage scores, each scored by every model
    cost   = TASK_COST[task]           (an IAA completion is ~5x as long as an IQA one; prefill is alike)
    shards = lpt_split(costs, n)       n = benchmark.num_gpus, default: every visible GPU (1 on CPU)

Each shard is a scoring-worker spec (`tatar_core.scoring.worker`) in `<stage folder>/shards/`:
`shard-II-of-NN-<digest>.json`, its rows in `….parquet` (written atomically, last), `….info.json` (engine, speed)
and `….log` (the worker's output). The digest hashes the spec's content (models, items, engine, settings), so a
finished shard is reused exactly when it would be computed the same way: after a failure or a kill only the shards
without their Parquet file run again.

How shards run (`run_shards`): one shard with the transformers engine scores in this process (no subprocess, the
common CPU case); otherwise every unfinished shard is a worker subprocess at once, each with one GPU
(`CUDA_VISIBLE_DEVICES`) or, on CPU, its share of the cores. A worker that fails or is killed is reported after the
others have finished (their files stay). A shard is a self-contained unit (a spec file and the files it names), so
another dispatcher can run `python -m tatar_core.scoring.worker SPEC` elsewhere (e.g. one flow run per shard on a
GPU pool, with the run folder on shared storage) and `merge_shards` reads the results the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from data_contracts.parquet_io import read_records
from data_contracts.records import ScoredRecord

TASK_COST = {"iqa": 1.0, "iaa": 5.0}  # relative scoring time per image: IAA completions are ~5x longer than IQA


class ShardFailed(RuntimeError):
    """A scoring worker exited without writing its shard."""


def lpt_split(costs: Sequence[float], n: int) -> list[list[int]]:
    """Longest processing time first (Graham 1969): items by decreasing cost (ties: input order), each to the shard
    with the least cost so far (ties: the lowest index); each shard's item indices in input order. The largest
    shard costs at most (4/3 − 1/(3n)) × the best possible split's."""
    if n < 1:
        raise ValueError(f"lpt_split: n must be ≥ 1, got {n}")
    loads, shards = [0.0] * n, [[] for _ in range(n)]
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        j = min(range(n), key=lambda j: (loads[j], j))
        loads[j] += costs[i]
        shards[j].append(i)
    return [sorted(s) for s in shards]


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    spec: Path
    items: int  # images
    cost: float
    models: int = 1  # each image is scored by every model

    @property
    def out(self) -> Path:
        return self.spec.with_suffix(".parquet")

    @property
    def log(self) -> Path:
        return self.spec.with_suffix(".log")

    @property
    def name(self) -> str:
        return f"shard {self.index + 1}/{self.count}"

    def done(self) -> bool:
        return self.out.is_file()


def write_shards(
    shard_dir: Path,
    items: Sequence[tuple[str, str, str]],
    models: Sequence[tuple[str, Path]],
    n: int,
    *,
    engine: str,
    model_cfg,
    scorer: dict,
    vllm_args: dict,
) -> list[Shard]:
    """Split `items` ([item id, image path, task]) into `n` shards by `TASK_COST` and write one worker spec each;
    every shard scores its items with every model. A shard with no items is left out."""
    from tatar_core.scoring.worker import write_spec

    costs = [TASK_COST[task] for _, _, task in items]
    groups = [g for g in lpt_split(costs, n) if g]
    shards = []
    for i, group in enumerate(groups):
        part = [list(items[k]) for k in group]
        content = {
            "engine": engine,
            "models": [[m, str(Path(p).resolve())] for m, p in models],
            "model_cfg": model_cfg.model_dump(mode="json"),
            "scorer": scorer,
            "vllm": vllm_args,
            "items": part,
        }
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
        stem = f"shard-{i:02d}-of-{len(groups):02d}-{digest}"
        spec = write_spec(
            Path(shard_dir) / f"{stem}.json",
            engine=engine,
            models=models,
            items=part,
            out=f"{stem}.parquet",
            model_cfg=model_cfg,
            scorer=scorer,
            vllm_args=vllm_args,
        )
        shards.append(Shard(i, len(groups), spec, len(part), sum(costs[k] for k in group), len(models)))
    return shards


def visible_gpus(probe: bool = True) -> list[str]:
    """The GPUs this process can use, as CUDA_VISIBLE_DEVICES entries ([] without CUDA). `probe`: ask torch
    (authoritative); else count the NVIDIA driver's GPUs (/proc/driver/nvidia/gpus) without importing torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    listed = [d.strip() for d in env.split(",") if d.strip()] if env is not None else None
    if probe:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    else:
        driver = Path("/proc/driver/nvidia/gpus")
        n = len(list(driver.iterdir())) if driver.is_dir() else 0
        n = min(n, len(listed)) if listed is not None else n
    return (listed if listed is not None else [str(i) for i in range(n)])[:n]


def _exit_text(rc: Optional[int]) -> str:
    if rc is not None and rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with {rc}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def _speed(s: Shard) -> str:
    """'grpo 12.3 img/s, sft 11.9 img/s' from the shard's info file."""
    try:
        info = json.loads(s.out.with_suffix(".info.json").read_text())
        return ", ".join(f"{m} {v['img_per_s']} img/s" for m, v in info["models"].items()) + f" on {info['engine']}"
    except (OSError, ValueError, KeyError):
        return "no info file"


def run_shards(
    shards: Sequence[Shard],
    *,
    in_process: bool,
    python: str = sys.executable,
    gpus: Sequence[str] = (),
    log: Callable[[str], None] = print,
    on_start: Optional[Callable] = None,
    on_progress: Optional[Callable[[int], None]] = None,
) -> list[Shard]:
    """Run every shard without its Parquet file; returns those it ran. `in_process`: here, one after another;
    else all at once as worker subprocesses of `python`, shard i on GPU `gpus[i % len(gpus)]` (none: CPU).
    `on_start(shard, process)` is called after each subprocess starts; `on_progress(n)`: n more (image, model) pairs
    done (per chunk in this process, per shard from subprocesses). Raises ShardFailed naming every shard that did
    not finish, after all have ended."""
    from tatar_core.scoring.worker import run_spec, start_worker

    todo = [s for s in shards if not s.done()]
    for s in shards:
        if s.done():
            log(f"benchmark {s.name}: reused {s.out.name}")
    if in_process:
        for s in todo:
            run_spec(s.spec, log=log, on_progress=on_progress)
        return todo
    procs = []
    for s in todo:
        env = {}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[s.index % len(gpus)]
        elif "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(todo)))
        p = start_worker(s.spec, python=python, env=env, log_file=s.log)
        where = f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else "CPU"
        log(f"benchmark {s.name}: {s.items} images (cost {s.cost:g}) on {where}, pid {p.pid}, log {s.log}")
        if on_start is not None:
            on_start(s, p)
        procs.append((s, p))
    failed = []
    for s, p in procs:
        rc = p.wait()
        if rc != 0 or not s.done():
            failed.append(f"{s.name} ({s.spec.name}) {_exit_text(rc)}; last output of {s.log}:\n{_tail(s.log)}")
        else:
            log(f"benchmark {s.name}: finished ({_speed(s)})")
            if on_progress is not None:
                on_progress(s.items * s.models)
    if failed:
        done = sum(s.done() for s in shards)
        raise ShardFailed(
            f"benchmark: {len(failed)} of {len(shards)} shards did not finish ({done} finished shards "
            "are kept and reused when the stage runs again):\n" + "\n".join(failed)
        )
    return todo


def merge_shards(
    shards: Sequence[Shard], models: Sequence[str], items: Sequence[str]
) -> dict[tuple[str, str], ScoredRecord]:
    """(model, item) -> its row, from every shard's Parquet file; every (model, item) exactly once."""
    rows: dict[tuple[str, str], ScoredRecord] = {}
    for s in shards:
        for r in read_records(s.out, ScoredRecord):
            key = (r.model, r.item)
            if key in rows:
                raise ShardFailed(f"{s.out}: {r.model} scored item {r.item!r} again (already in another shard)")
            rows[key] = r
    missing = [(m, i) for m in models for i in items if (m, i) not in rows]
    if missing or len(rows) != len(models) * len(items):
        raise ShardFailed(
            f"benchmark shards in {shards[0].spec.parent if shards else '?'}: {len(missing)} "
            f"(model, image) pairs missing (e.g. {missing[:1]}), {len(rows)} rows for "
            f"{len(models)} models x {len(items)} images"
        )
    return rows


def shard_plan_text(costs_by_task: dict[str, int], n: int) -> list[str]:
    """Lines for `tatar plan`: the LPT split of that many IQA / IAA images into n shards."""
    tasks = [t for t in ("iqa", "iaa") for _ in range(costs_by_task.get(t, 0))]
    groups = [g for g in lpt_split([TASK_COST[t] for t in tasks], n) if g]
    out = []
    for i, g in enumerate(groups):
        n_iqa = sum(tasks[k] == "iqa" for k in g)
        out.append(
            f"shard {i + 1}/{len(groups)}: {n_iqa} iqa + {len(g) - n_iqa} iaa images, cost "
            f"{sum(TASK_COST[tasks[k]] for k in g):g}"
        )
    return out


__all__ = [
    "TASK_COST",
    "ShardFailed",
    "Shard",
    "lpt_split",
    "write_shards",
    "visible_gpus",
    "run_shards",
    "merge_shards",
    "shard_plan_text",
]
