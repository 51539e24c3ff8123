"""Fast deterministic scoring of images with a trained checkpoint (scores on 0–100, higher is better).

`Scorer(model_path).score(images, task)` runs batched greedy decoding:

- the model and processor are loaded once; prompts come from `tatar_core.method.prompts` (via `modeling.chat_texts`);
- images are sorted by pixel count so that a batch holds images of similar size (similar prompt length,
  little padding); results come back in input order;
- LEFT padding; greedy = argmax every step (no sampling, no repetition penalty), under
  `torch.inference_mode()`; each sequence stops at `</answer>` (or eos) and the batch stops when all have;
- speculative verification (`tatar_core.scoring.speculative`, `draft_tokens` > 0): each pass checks up to
  `draft_tokens` drafted tokens per row and keeps those equal to the model's own greedy choice, so the
  completions are the greedy ones in fewer passes. Drafts are looked up in the checkpoint's training
  targets (`draft_corpus.jsonl`, if the folder has one) and in this call's completions so far;
- the completion is parsed with the shared parser (`tatar_core.method.parsing`): strict first, then the lenient
  fallback (the reference evaluation's rule: first number of the last closed <answer> block; status "lenient",
  counted in the metrics); a completion neither parses, e.g. one cut off before `</answer>`, is "failed" with score
  None — never a default score, never a number read from the thinking. Parsed scores are clamped to [0, 100].

Readout "expected" (optional): the probability-weighted score from the answer's digit tokens
(`tatar_core.scoring.readout`, shared with the vLLM engine), from the logits of the vocabulary's digit tokens at
each step.

What is guaranteed (tests/test_scoring.py, tests/test_bench_scorer_script.py, tests/test_scoring_bf16.py):
- in fp32: the same completions with drafts on or off (`draft_tokens` 6 vs 0), at any batch size and beside any other
  images, and as HF `generate` on one image. Drafts never choose a token: one is kept only when it equals the
  model's argmax after the token before it; padding is masked (measured on the test checkpoint: 50/50 for both).
- in bf16 neither holds exactly: the verifying pass computes a position's logits inside a block of 1 + k query
  positions, a batch pads rows to a common length, and bf16 rounds those differently; where the two best tokens'
  logits are within a rounding step the argmax flips and the completion diverges from there. Stated tolerance: the
  same completion (hence the same score) on at least `BF16_MIN_SAME` of the images, for drafts on vs off and for
  batched vs one-image `generate` (measured on the test checkpoint, 50 images: 48/50 and 47/50; the two diverged
  completions that still parsed differed by 0.1 and 0 points; 9/10 was reported on a demo checkpoint). Use fp32
  where scores must not depend on the batch.

Thread safety: one Scorer may be shared by threads (a thread-pool task runner); batches are generated one at a time
under a lock, because Qwen-VL models keep per-call state (`rope_deltas`) on the module during `generate`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Optional, Sequence, Union

from PIL import Image

from tatar_core.models import draft_corpus
from tatar_core.scoring.readout import ScoreResult, digit_vocab, read_result, stop_tokens
from tatar_core.scoring.speculative import NgramIndex, greedy_decode

if TYPE_CHECKING:  # the configs (pydantic) stay off the import path of the scorer (scripts/gpu_check.py)
    from data_contracts.config.model import ModelConfig

ImageInput = Union[str, Path, Image.Image]
Readout = Literal["greedy", "expected"]
NGRAM_MAX = 4  # the draft n-gram model conditions on up to NGRAM_MAX tokens
BF16_MIN_SAME = 0.85  # bf16: least share of images with identical completions (drafts on/off, batch/one image)


class Scorer:
    """Load a checkpoint once; `score(images, task)` -> one `ScoreResult` per image, in input order."""

    engine = "transformers"

    def __init__(
        self,
        model_path: Union[str, Path],
        model_cfg: Optional["ModelConfig"] = None,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        readout: Readout = "greedy",
        device: Optional[str] = None,
        draft_tokens: int = 6,
    ):
        import torch

        from tatar_core.models.loading import load_model_and_processor

        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if draft_tokens < 0:
            raise ValueError(f"draft_tokens must be ≥ 0, got {draft_tokens}")
        if readout not in ("greedy", "expected"):
            raise ValueError(f"readout must be 'greedy' or 'expected', got {readout!r}")
        self.model_path = Path(model_path)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.readout = readout
        self.draft_tokens = draft_tokens
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.processor = load_model_and_processor(self.model_path, model_cfg, for_training=False)
        self.model.to(self.device).eval()
        tok = self.processor.tokenizer
        tok.padding_side = "left"
        self.tokenizer = tok
        self.stops = stop_tokens(tok, self.model.generation_config)
        self.pad_id = self.stops.pad_id
        self.stop_ids = self.stops.stop_ids
        self.stop_seqs = [list(s) for s in self.stops.stop_seqs]  # `</answer>` as several tokens: stop on the sequence
        self._corpus = draft_corpus.read_corpus(self.model_path) if draft_tokens else {}
        self._indexes: dict[str, NgramIndex] = {}  # task -> index of the corpus
        self._prefixes: dict = {}  # shared prompt prefix tokens -> its KV cache (computed once)
        self._prompt_ids: dict[tuple[str, int], list[int]] = {}  # (task, image tokens) -> prompt token ids
        self._lock = threading.Lock()
        self._digit_ids = None
        if readout == "expected":
            digits = digit_vocab(tok)
            if not digits:
                raise ValueError(
                    f"{self.model_path}: the tokenizer has no digit tokens; readout='expected' needs them"
                )
            self._digit_ids = torch.tensor(list(digits))
            self._digit_values = [float(t) for t in digits.values()]
            self._digit_by_len: dict[int, list[int]] = {}  # token length -> columns of _digit_ids
            for c, t in enumerate(digits.values()):
                self._digit_by_len.setdefault(len(t), []).append(c)

    # ----------------------------------------------------------------------------------------- public
    def score(
        self,
        images: Sequence[ImageInput],
        task: str = "iqa",
        progress: bool = False,
        on_batch: Optional[Callable[[int], None]] = None,
    ) -> list[ScoreResult]:
        """Score `images` (paths or PIL images) for `task` ("iqa" | "iaa").

        progress: a bar on stderr (tqdm on a terminal, a plain line every 10 s otherwise); on_batch(n) is called
        after each batch of n images."""
        from tatar_core.images import as_rgb

        if task not in ("iqa", "iaa"):
            raise ValueError(f"task must be 'iqa' or 'iaa', got {task!r}")
        pil = [as_rgb(im) for im in images]
        order = sorted(range(len(pil)), key=lambda i: (pil[i].width * pil[i].height, i))
        results: list[Optional[ScoreResult]] = [None] * len(pil)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        from tatar_core.progress import progress_bar

        bar = progress_bar(len(pil), f"score {task}", "images", disable=not progress)
        index = self._draft_index(task) if self.draft_tokens else None  # the corpus, then this call's completions
        for batch in batches:
            for i, r in zip(batch, self._score_batch([pil[i] for i in batch], task, index)):
                results[i] = r
            if bar is not None:
                bar.update(len(batch))
            if on_batch is not None:
                on_batch(len(batch))
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    # ----------------------------------------------------------------------------------------- internals
    def _draft_index(self, task: str) -> NgramIndex:
        """A fresh layer over the corpus index for `task`; each corpus text follows the prompt's last tokens."""
        from tatar_core.models.loading import chat_texts

        if task not in self._indexes:
            tail = self.tokenizer.encode(chat_texts(self.processor, [task])[0], add_special_tokens=False)[-NGRAM_MAX:]
            idx = NgramIndex(max_n=NGRAM_MAX)
            for text in self._corpus.get(task, []):
                idx.add(tail + self.tokenizer.encode(text, add_special_tokens=False))
            self._indexes[task] = idx
        return self._indexes[task].layer()

    def _score_batch(self, images: list[Image.Image], task: str, index: Optional[NgramIndex]) -> list[ScoreResult]:
        import torch

        from tatar_core.models.loading import build_inputs

        inputs = build_inputs(self.processor, images, [task] * len(images), prompt_cache=self._prompt_ids)
        inputs = inputs.to(self.device)
        with self._lock, torch.inference_mode():
            decoded = greedy_decode(
                self.model,
                inputs,
                max_new_tokens=self.max_new_tokens,
                stop_ids=self.stop_ids,
                pad_id=self.pad_id,
                stop_seqs=self.stop_seqs,
                index=index,
                draft_tokens=self.draft_tokens,
                record_ids=self._digit_ids.to(self.device) if self._digit_ids is not None else None,
                prefixes=self._prefixes,
            )
        results = []
        for row, ids in enumerate(decoded.tokens):
            digit_scores = None
            if decoded.digit_logits is not None:
                logits = decoded.digit_logits[row]

                def digit_scores(k, length, logits=logits):  # the logits of the digit tokens of that length at step k
                    if k >= len(logits):
                        return []
                    cols = self._digit_by_len.get(length, [])
                    return list(zip([self._digit_values[c] for c in cols], logits[k][cols].tolist()))

            results.append(read_result(self.tokenizer, ids, self.stops, digit_scores))
        return results


__all__ = ["Scorer", "ScoreResult"]
