"""The scoring engines behind one interface (`.score(images, task) -> [ScoreResult]`, `.batch_size`, `.readout`,
`.engine`):

- "transformers": `tatar_core.scoring.scorer.Scorer` (batched greedy, speculative verification, shared prefix);
- "vllm": `tatar_core.scoring.vllm_engine.VllmScorer` (vLLM's offline engine; GPU environment only).

`scorer_speed` measures images/s of each engine on the same images (for the GPU check script). No pydantic here.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ENGINES = ("transformers", "vllm")


def make_scorer(
    engine: str,
    model_path: Path | str,
    model_cfg=None,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    readout: str = "greedy",
    device: Optional[str] = None,
    draft_tokens: int = 6,
    vllm_args: Optional[dict[str, Any]] = None,
):
    """A scorer of `engine` for the checkpoint folder `model_path` (`draft_tokens`/`device`: transformers only;
    `vllm_args`: extra `vllm.LLM` arguments)."""
    if engine == "transformers":
        from tatar_core.scoring.scorer import Scorer

        return Scorer(
            model_path,
            model_cfg=model_cfg,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            readout=readout,
            device=device,
            draft_tokens=draft_tokens,
        )
    if engine == "vllm":
        from tatar_core.scoring.vllm_engine import VllmScorer

        return VllmScorer(
            model_path,
            model_cfg=model_cfg,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            readout=readout,
            engine_args=vllm_args,
        )
    raise ValueError(f"unknown scoring engine {engine!r} (known: {', '.join(ENGINES)})")


def free_memory() -> None:
    """After the caller dropped its scorer: collect it and give its GPU memory back (before the next model loads;
    vLLM may keep some of its memory until the process ends, so the GPU check runs it last)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def scorer_speed(
    model_path: Path | str,
    images: Sequence[Any],
    task: str = "iqa",
    engines: Sequence[str] = ENGINES,
    model_cfg=None,
    repeat: int = 2,
    **scorer_kwargs,
) -> list[dict]:
    """Per engine: {"engine", "n", "load_s", "seconds" (fastest of `repeat` timed calls after one warm-up call on
    one image), "img_per_s", "parsed"}, or {"engine", "error"} when it cannot run here (e.g. vLLM not installed).
    One engine at a time; each is released before the next loads."""
    from tatar_core.scoring.vllm_engine import EngineUnavailable

    out = []
    for engine in engines:
        t0 = time.perf_counter()
        try:
            scorer = make_scorer(engine, model_path, model_cfg, **scorer_kwargs)
        except EngineUnavailable as e:
            out.append({"engine": engine, "error": str(e)})
            continue
        load_s = time.perf_counter() - t0
        scorer.score(list(images[:1]), task)
        times, results = [], []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            results = scorer.score(list(images), task)
            times.append(time.perf_counter() - t0)
        del scorer
        free_memory()
        best = min(times)
        out.append(
            {
                "engine": engine,
                "n": len(images),
                "load_s": round(load_s, 2),
                "seconds": round(best, 3),
                "img_per_s": len(images) / best if best > 0 else float("inf"),
                "parsed": sum(r.score is not None for r in results),
            }
        )
    return out


__all__ = ["ENGINES", "make_scorer", "free_memory", "scorer_speed"]
