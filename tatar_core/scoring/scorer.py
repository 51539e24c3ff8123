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
- the completion is parsed with the shared parser: strict first, then the lenient fallback (status
  "lenient", counted in the metrics); a completion neither parses is "failed" with score None — never a
  default score. Parsed scores are clamped to [0, 100].

Readout "expected" (optional): the probability-weighted score from the answer tokens. With the answer number
written as digit tokens d_k with place values 10^{e_k} (e.g. "73.42" = 7·10¹ + 3·10⁰ + 4·10⁻¹ + 2·10⁻²),

    E[score] = greedy + Σ_k 10^{e_k} · (Σ_c p_k(c)·c − d_k),

where p_k is the model's next-token distribution at the step that wrote d_k, restricted to the vocabulary's
digit tokens of the same length (softmax over those logits), conditioned on the greedy digits before it.
Tokens that are not pure digits (".", a token mixing digits and other text) keep their greedy value.

Thread safety: one Scorer may be shared by threads (a thread-pool task runner); batches are generated one at a time
under a lock, because Qwen-VL models keep per-call state (`rope_deltas`) on the module during `generate`.
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence, Union

from PIL import Image

from data_contracts.config.model import ModelConfig
from tatar_core.models import draft_corpus
from tatar_core.method.parsing import NUMBER, count_words, parse_answer
from tatar_core.method.prompts import ANSWER_CLOSE, ANSWER_OPEN
from tatar_core.method.scales import clamp_100
from tatar_core.scoring.speculative import NgramIndex, greedy_decode

ImageInput = Union[str, Path, Image.Image]
Readout = Literal["greedy", "expected"]
_NUM_RE = re.compile(NUMBER)
NGRAM_MAX = 4  # the draft n-gram model conditions on up to NGRAM_MAX tokens


@dataclass(frozen=True)
class ScoreResult:
    score: Optional[float]  # 0–100, higher is better; None when the completion does not parse
    parse: Literal["strict", "lenient", "failed"]
    completion: str
    n_words: int


class Scorer:
    """Load a checkpoint once; `score(images, task)` -> one `ScoreResult` per image, in input order."""

    def __init__(self, model_path: Union[str, Path], model_cfg: Optional[ModelConfig] = None, batch_size: int = 8,
                 max_new_tokens: int = 256, readout: Readout = "greedy", device: Optional[str] = None,
                 draft_tokens: int = 6):
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
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tok.eos_token_id is not None and tok.eos_token_id not in eos:
            eos.append(tok.eos_token_id)
        self.end_ids = set(eos) | ({self.pad_id} if self.pad_id is not None else set())
        close = tok.encode(ANSWER_CLOSE, add_special_tokens=False)
        self.answer_close_id = close[0] if len(close) == 1 else None
        self.stop_ids = self.end_ids | ({self.answer_close_id} if self.answer_close_id is not None else set())
        self.stop_seqs = [close] if len(close) > 1 else []  # `</answer>` is several tokens: stop on the sequence
        self._corpus = draft_corpus.read_corpus(self.model_path) if draft_tokens else {}
        self._indexes: dict[str, NgramIndex] = {}  # task -> index of the corpus
        self._prefixes: dict = {}  # shared prompt prefix tokens -> its KV cache (computed once)
        self._prompt_ids: dict[tuple[str, int], list[int]] = {}  # (task, image tokens) -> prompt token ids
        self._lock = threading.Lock()
        self._digit_ids = None
        if readout == "expected":
            self._digit_ids, self._digit_text = self._digit_vocab()

    # ----------------------------------------------------------------------------------------- public
    def score(self, images: Sequence[ImageInput], task: str = "iqa", progress: bool = False,
              on_batch: Optional[Callable[[int], None]] = None) -> list[ScoreResult]:
        """Score `images` (paths or PIL images) for `task` ("iqa" | "iaa").

        progress: a bar on stderr (tqdm on a terminal, a plain line every 10 s otherwise); on_batch(n) is called
        after each batch of n images."""
        from tatar_core.samples.images import as_rgb

        if task not in ("iqa", "iaa"):
            raise ValueError(f"task must be 'iqa' or 'iaa', got {task!r}")
        pil = [as_rgb(im) for im in images]
        order = sorted(range(len(pil)), key=lambda i: (pil[i].width * pil[i].height, i))
        results: list[Optional[ScoreResult]] = [None] * len(pil)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
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
    def _digit_vocab(self):
        import torch

        ids, text = [], []
        for i in range(len(self.tokenizer)):
            t = self.tokenizer.decode([i])
            if t and t.isascii() and t.isdigit():
                ids.append(i)
                text.append(t)
        if not ids:
            raise ValueError(f"{self.model_path}: the tokenizer has no digit tokens; readout='expected' needs them")
        return torch.tensor(ids), text

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
                self.model, inputs, max_new_tokens=self.max_new_tokens, stop_ids=self.stop_ids, pad_id=self.pad_id,
                stop_seqs=self.stop_seqs, index=index, draft_tokens=self.draft_tokens,
                record_ids=self._digit_ids.to(self.device) if self._digit_ids is not None else None,
                prefixes=self._prefixes,
            )
        results = []
        for row, ids in enumerate(decoded.tokens):
            ids = self._trim(ids)
            completion = self.tokenizer.decode(ids, skip_special_tokens=True)
            parsed = parse_answer(completion, lenient=True)
            score = parsed.score
            if score is not None and decoded.digit_logits is not None:
                score = self._expected(ids, score, decoded.digit_logits[row])
            if score is not None:
                score = clamp_100(score) if math.isfinite(score) else None
            status = parsed.status if score is not None else "failed"
            results.append(ScoreResult(score, status, completion, count_words(completion)))
        return results

    def _trim(self, ids: list[int]) -> list[int]:
        """Generated ids up to the end: `</answer>` kept, eos / padding dropped."""
        out = []
        for t in ids:
            if t == self.answer_close_id:
                out.append(t)
                break
            if t in self.end_ids:
                break
            out.append(t)
        return out

    def _expected(self, ids: list[int], greedy: float, digit_logits: list) -> float:
        """Probability-weighted answer (module docstring); the greedy value where the digits can't be located."""
        import torch

        pieces = [self.tokenizer.decode([t]) for t in ids]
        joined = "".join(pieces)
        start = joined.rfind(ANSWER_OPEN)
        m = _NUM_RE.search(joined, start + len(ANSWER_OPEN) if start >= 0 else 0)
        if m is None or "e" in m.group(0).lower() or m.group(0).startswith("-"):
            return greedy
        try:
            if not math.isclose(float(m.group(0)), greedy, abs_tol=1e-9):
                return greedy
        except ValueError:
            return greedy
        num, a = m.group(0).lstrip("+"), m.start() + (1 if m.group(0).startswith("+") else 0)
        dp = num.index(".") if "." in num else len(num)
        value = greedy
        pos = 0
        for k, piece in enumerate(pieces):
            s, e = pos, pos + len(piece)
            pos = e
            if e <= a or s >= a + len(num) or not (piece.isascii() and piece.isdigit()):
                continue
            i, j = s - a, e - a  # digits num[i:j]
            if i < 0 or j > len(num) or k >= len(digit_logits):
                continue
            last = j - 1
            exp = (dp - 1 - last) if last < dp else -(last - dp)
            cands = [c for c, t in enumerate(self._digit_text) if len(t) == len(piece)]
            logits = digit_logits[k][cands]
            p = torch.softmax(logits, dim=0)
            vals = torch.tensor([float(self._digit_text[c]) for c in cands])
            value += (10.0 ** exp) * (float((p * vals).sum()) - float(piece))
        return value


__all__ = ["Scorer", "ScoreResult"]
