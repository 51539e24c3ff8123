"""vLLM's offline engine as a scorer (`benchmark.engine: vllm`, `tatar score --engine vllm`).

`VllmScorer(model_dir).score(images, task)` -> one `ScoreResult` per image, like `Scorer`:

- the same prompt: `tatar_core.method.prompts` through the checkpoint processor's chat template (`chat_texts`), the
  image as `multi_modal_data` (vLLM expands the image placeholder itself);
- greedy (temperature 0), stopping at `</answer>` (its token id, or the string when the tokenizer splits it) or eos;
  all images of a call go to `LLM.generate` at once (continuous batching, prefix caching);
- the same readout from the generated token ids (`tatar_core.scoring.readout.read_result`: trim, decode with the
  checkpoint's tokenizer, the shared parser); readout "expected" asks for the top `TOP_LOGPROBS` log-probabilities per
  step (`CompletionOutput.logprobs`: per position {token_id: Logprob(logprob, rank, decoded_token)}) and reads the
  digit tokens among them.

vLLM is imported only here, when a `VllmScorer` is made; without it `EngineUnavailable` says which interpreter lacks
it. It runs in the GPU environment's interpreter as the scoring worker (`tatar_core.scoring.worker`), never in the
Prefect one (vLLM and the Prefect server pin incompatible FastAPI versions). `benchmark.vllm` passes extra
keyword arguments to `vllm.LLM` (e.g. `gpu_memory_utilization`, `max_model_len`, `max_num_seqs`,
`speculative_config: {method: ngram, num_speculative_tokens: 6, prompt_lookup_max: 4}`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from tatar_core.method.prompts import ANSWER_CLOSE
from tatar_core.scoring.readout import ScoreResult, StopTokens, digit_vocab, read_result, stop_tokens

TOP_LOGPROBS = 20  # vLLM's default `max_logprobs`: log-probabilities per step for the expected readout


class EngineUnavailable(RuntimeError):
    """The engine's package is missing in this interpreter."""


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise EngineUnavailable(
            f"engine 'vllm': the vllm package is not importable in {sys.executable} ({e}). Install it in the GPU "
            "environment that runs the scoring worker (vLLM is not installable on CPU-only machines), or use "
            "engine: transformers"
        ) from None
    return vllm


def llm_args(model_path: Path | str, model_cfg=None, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM`: the local folder, dtype and image pixel range of `model_cfg`, one image per
    prompt, `TOP_LOGPROBS`; `extra` (benchmark.vllm) last, so it overrides any of them."""
    args: dict[str, Any] = dict(
        model=str(model_path),
        tokenizer=str(model_path),
        seed=0,
        limit_mm_per_prompt={"image": 1},
        max_logprobs=TOP_LOGPROBS,
    )
    if model_cfg is not None:
        args["dtype"] = model_cfg.dtype
        args["mm_processor_kwargs"] = {"min_pixels": model_cfg.min_pixels, "max_pixels": model_cfg.max_pixels}
    return {**args, **(extra or {})}


def sampling_args(stops: StopTokens, max_new_tokens: int, readout: str) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams`: greedy, stop at `</answer>` or eos, logprobs for "expected"."""
    return dict(
        temperature=0.0,
        max_tokens=max_new_tokens,
        stop_token_ids=sorted(stops.stop_ids),
        stop=[ANSWER_CLOSE] if stops.stop_seqs else None,
        include_stop_str_in_output=True,
        skip_special_tokens=True,
        logprobs=TOP_LOGPROBS if readout == "expected" else None,
    )


def results_from_outputs(
    outputs: Sequence[Any], tokenizer, stops: StopTokens, digits: Optional[dict[int, str]] = None
) -> list[ScoreResult]:
    """`ScoreResult`s of vLLM `RequestOutput`s (first completion each): its `token_ids` through the shared readout;
    with `digits` (token id -> digit text), the expected readout from its per-step `logprobs`."""
    results = []
    for out in outputs:
        c = out.outputs[0]
        digit_scores = None
        if digits is not None:
            steps = list(c.logprobs or [])

            def digit_scores(k, length, steps=steps):
                if k >= len(steps) or not steps[k]:
                    return []
                return [
                    (float(digits[t]), float(lp.logprob))
                    for t, lp in steps[k].items()
                    if t in digits and len(digits[t]) == length
                ]

        results.append(read_result(tokenizer, list(c.token_ids), stops, digit_scores))
    return results


class VllmScorer:
    """Load a checkpoint into `vllm.LLM` once; `score(images, task)` -> one `ScoreResult` per image, in input order."""

    engine = "vllm"

    def __init__(
        self,
        model_path: Path | str,
        model_cfg=None,
        batch_size: int = 64,
        max_new_tokens: int = 256,
        readout: str = "greedy",
        engine_args: Optional[dict[str, Any]] = None,
    ):
        if readout not in ("greedy", "expected"):
            raise ValueError(f"readout must be 'greedy' or 'expected', got {readout!r}")
        vllm = import_vllm()
        from transformers import GenerationConfig

        from tatar_core.models.loading import load_processor

        self.model_path = Path(model_path)
        self.batch_size = batch_size  # images per `LLM.generate` call (the engine schedules them itself)
        self.readout = readout
        self.processor = load_processor(self.model_path, model_cfg)
        self.tokenizer = self.processor.tokenizer
        try:
            gen = GenerationConfig.from_pretrained(self.model_path, local_files_only=True)
        except OSError:
            gen = None
        self.stops = stop_tokens(self.tokenizer, gen)
        self.digits = digit_vocab(self.tokenizer) if readout == "expected" else None
        self.llm = vllm.LLM(**llm_args(self.model_path, model_cfg, engine_args))
        self.params = vllm.SamplingParams(**sampling_args(self.stops, max_new_tokens, readout))

    def score(self, images: Sequence[Any], task: str = "iqa", progress: bool = False) -> list[ScoreResult]:
        from tatar_core.images import as_rgb
        from tatar_core.models.loading import chat_texts

        if task not in ("iqa", "iaa"):
            raise ValueError(f"task must be 'iqa' or 'iaa', got {task!r}")
        prompt = chat_texts(self.processor, [task])[0]
        requests = [{"prompt": prompt, "multi_modal_data": {"image": as_rgb(im)}} for im in images]
        outputs = self.llm.generate(requests, self.params, use_tqdm=progress)
        return results_from_outputs(outputs, self.tokenizer, self.stops, self.digits)


__all__ = [
    "VllmScorer",
    "EngineUnavailable",
    "import_vllm",
    "llm_args",
    "sampling_args",
    "results_from_outputs",
    "TOP_LOGPROBS",
]
