"""The scoring worker: score a list of images with one or more models on one engine and write the rows to Parquet.

    python -m tatar_core.scoring.worker SPEC.json

One entry point for every out-of-process scoring job: a benchmark shard on its own GPU (or CPU process), and the
vLLM engine, which runs in the GPU environment's interpreter (`start_worker(python=...)`). The spec and the files
it names are the only interface, like a launched training job's (`tatar_core.training.launch`).

SPEC (JSON, written by `write_spec`; paths of `out` relative to the spec's folder):

    {"engine": "transformers" | "vllm",
     "models": [[label, model folder], ...],            scored one after another, each loaded once
     "model_cfg": {ModelConfig fields},                   dtype, pixel range, load_args
     "scorer": {"batch_size", "max_new_tokens", "readout", "draft_tokens", "device"},
     "vllm": {extra vllm.LLM arguments},
     "items": [[item id, image path, task], ...],
     "out": "<name>.parquet"}

It writes `<name>.info.json` (engine, interpreter, device, seconds and images/s per model), then `<name>.parquet`
(`ScoredRecord`: every item × every model, in spec order; an image that cannot be decoded gets parse "unreadable"
and the reason), atomically: the Parquet file exists only when the job finished.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from data_contracts.config.model import ModelConfig
from data_contracts.parquet_io import write_records
from data_contracts.records import ScoredRecord
from tatar_core.code_version import PROJECT_ROOT
from tatar_core.scoring.engines import ENGINES, free_memory, make_scorer

SCORER_KEYS = ("batch_size", "max_new_tokens", "readout", "draft_tokens", "device")
CHUNK_BATCHES = 16  # images are decoded CHUNK_BATCHES batches at a time


class SpecError(ValueError):
    """A worker spec that cannot be used (names the file and the key)."""


def write_spec(
    path: Path | str,
    *,
    engine: str,
    models: Sequence[tuple[str, Path | str]],
    items: Sequence[tuple[str, str, str]],
    out: str,
    model_cfg: Optional[ModelConfig] = None,
    scorer: Optional[dict[str, Any]] = None,
    vllm_args: Optional[dict[str, Any]] = None,
) -> Path:
    """Write a worker spec (module docstring) atomically; returns its path."""
    path = Path(path)
    spec = {
        "engine": engine,
        "models": [[label, str(Path(p).resolve())] for label, p in models],
        "model_cfg": (model_cfg or ModelConfig()).model_dump(mode="json"),
        "scorer": {k: v for k, v in (scorer or {}).items()},
        "vllm": dict(vllm_args or {}),
        "items": [list(it) for it in items],
        "out": out,
    }
    read_spec_dict(spec, path)  # refuse to write what the worker would refuse to read
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(spec, indent=1))
    tmp.replace(path)
    return path


def read_spec_dict(raw: dict, path: Path | str) -> dict[str, Any]:
    """Check a spec's keys and types; the spec with `model_cfg` as a ModelConfig and `out` as an absolute path."""
    where = f"{path}: worker spec"
    need = {"engine", "models", "model_cfg", "scorer", "vllm", "items", "out"}
    if not isinstance(raw, dict) or set(raw) != need:
        got = set(raw) if isinstance(raw, dict) else set()
        raise SpecError(
            f"{where}: keys must be {sorted(need)} (missing {sorted(need - got)}, unknown {sorted(got - need)})"
        )
    if raw["engine"] not in ENGINES:
        raise SpecError(f"{where}: key 'engine': {raw['engine']!r} is not one of {', '.join(ENGINES)}")
    if not raw["models"] or not all(isinstance(m, list) and len(m) == 2 for m in raw["models"]):
        raise SpecError(f"{where}: key 'models': a non-empty list of [label, model folder]")
    bad = [
        i
        for i, it in enumerate(raw["items"])
        if not (isinstance(it, list) and len(it) == 3 and it[2] in ("iqa", "iaa"))
    ]
    if bad:
        raise SpecError(
            f"{where}: key 'items': item {bad[0]} is not [id, image path, 'iqa'|'iaa']: {raw['items'][bad[0]]!r}"
        )
    ids = [it[0] for it in raw["items"]]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SpecError(f"{where}: key 'items': item id {dup!r} occurs more than once")
    unknown = set(raw["scorer"]) - set(SCORER_KEYS)
    if unknown:
        raise SpecError(f"{where}: key 'scorer': unknown {sorted(unknown)} (known: {', '.join(SCORER_KEYS)})")
    if not str(raw["out"]).endswith(".parquet"):
        raise SpecError(f"{where}: key 'out': {raw['out']!r} must name a .parquet file")
    return {
        **raw,
        "model_cfg": ModelConfig.model_validate(raw["model_cfg"]),
        "out": (Path(path).parent / raw["out"]).resolve(),
    }


def read_spec(path: Path | str) -> dict[str, Any]:
    """Inverse of `write_spec`."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: worker spec not found")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: worker spec is not valid JSON: {e}") from None
    return read_spec_dict(raw, path)


def info_path(out: Path) -> Path:
    """`<name>.info.json` beside `<name>.parquet`."""
    return out.with_suffix(".info.json")


def score_spec(
    spec: dict[str, Any], log: Callable[[str], None] = print, on_progress: Optional[Callable[[int], None]] = None
) -> tuple[list[ScoredRecord], dict]:
    """Score every item of a (read) spec with every model: (rows in spec order, info); `on_progress(n)` after each
    chunk of n (image, model) pairs."""
    from tatar_core.images import ImageLoadError, load_rgb

    items, sc = spec["items"], spec["scorer"]
    rows: list[ScoredRecord] = []
    info: dict[str, Any] = {"engine": spec["engine"], "python": sys.executable, "pid": os.getpid(), "models": {}}
    for label, path in spec["models"]:
        t0 = time.perf_counter()
        scorer = make_scorer(spec["engine"], path, spec["model_cfg"], vllm_args=spec["vllm"], **sc)
        load_s = time.perf_counter() - t0
        info["device"] = str(getattr(scorer, "device", "vllm"))
        t0 = time.perf_counter()
        chunk = max(1, scorer.batch_size) * CHUNK_BATCHES
        for task in ("iqa", "iaa"):
            todo = [it for it in items if it[2] == task]
            for start in range(0, len(todo), chunk):
                part, images = [], []
                for item, image, _ in todo[start : start + chunk]:
                    try:
                        images.append(load_rgb(image))
                        part.append(item)
                    except ImageLoadError as e:
                        rows.append(ScoredRecord(item=item, model=label, parse="unreadable", error=e.reason))
                for item, r in zip(part, scorer.score(images, task) if images else []):
                    rows.append(
                        ScoredRecord(
                            item=item,
                            model=label,
                            score=r.score,
                            greedy=r.greedy,
                            parse=r.parse,
                            completion=r.completion,
                            n_words=r.n_words,
                        )
                    )
                if on_progress is not None:
                    on_progress(len(todo[start : start + chunk]))
        seconds = time.perf_counter() - t0
        info["models"][label] = {
            "load_s": round(load_s, 2),
            "seconds": round(seconds, 2),
            "images": len(items),
            "img_per_s": round(len(items) / seconds, 3) if seconds > 0 else None,
        }
        log(f"scored {len(items)} images with {label} ({spec['engine']}) in {seconds:.1f} s")
        del scorer
        free_memory()
    order = {it[0]: i for i, it in enumerate(items)}
    labels = {label: i for i, (label, _) in enumerate(spec["models"])}
    rows.sort(key=lambda r: (labels[r.model], order[r.item]))
    return rows, info


def run_spec(
    path: Path | str, log: Callable[[str], None] = print, on_progress: Optional[Callable[[int], None]] = None
) -> Path:
    """Read the spec at `path`, score it, write `<out>.json` then `<out>.parquet` (atomically); returns `out`."""
    spec = read_spec(path)
    rows, info = score_spec(spec, log, on_progress)
    out = spec["out"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{info_path(out).name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(info_path(out))
    write_records(rows, out, ScoredRecord)
    return out


def worker_command(spec_path: Path | str, python: str = sys.executable) -> list[str]:
    """`PYTHON -m tatar_core.scoring.worker SPEC` (`python`: the interpreter of the environment that scores)."""
    return [python, "-m", "tatar_core.scoring.worker", str(spec_path)]


def start_worker(
    spec_path: Path | str,
    python: str = sys.executable,
    env: Optional[dict[str, str]] = None,
    log_file: Optional[Path] = None,
) -> subprocess.Popen:
    """Start the worker on `spec_path` as a subprocess (output to `log_file`, else inherited); this project first on
    its PYTHONPATH; `env` entries added to this process's environment."""
    full = dict(os.environ, **(env or {}), PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    full.setdefault("HF_HUB_OFFLINE", "1")
    full["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + full["PYTHONPATH"] if full.get("PYTHONPATH") else "")
    out = open(log_file, "w") if log_file else None
    try:
        return subprocess.Popen(
            worker_command(spec_path, python),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            env=full,
            cwd=str(PROJECT_ROOT),
        )
    finally:
        if out:
            out.close()


def main(argv: Optional[list[str]] = None) -> int:
    from tatar_core.scoring.vllm_engine import EngineUnavailable

    ap = argparse.ArgumentParser(
        prog="python -m tatar_core.scoring.worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("spec", help="worker spec JSON (tatar_core.scoring.worker.write_spec)")
    ns = ap.parse_args(argv)
    try:  # a missing vLLM fails in VllmScorer before any model loads
        out = run_spec(ns.spec, log=lambda m: print(m, flush=True))
    except (SpecError, EngineUnavailable) as e:
        print(f"scoring worker: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}", flush=True)
    return 0


__all__ = [
    "write_spec",
    "read_spec",
    "score_spec",
    "run_spec",
    "worker_command",
    "start_worker",
    "SpecError",
    "info_path",
]

if __name__ == "__main__":
    sys.exit(main())
