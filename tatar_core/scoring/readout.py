"""From generated token ids to a `ScoreResult`: the one readout every engine (transformers, vLLM) uses.

    ids --trim--> completion = decode(ids, skip_special_tokens) --shared parser--> greedy score --> readout

- trim: the ids up to the end of the answer: `</answer>` (a single token) kept, the first eos / pad token and what
  follows dropped (`StopTokens.trim`);
- parse: strict first, then the lenient fallback (`tatar_core.method.parsing.parse_answer`); a completion that does
  not parse gets score None and status "failed", never a default score; parsed scores are clamped to [0, 100];
- readout "expected": the probability-weighted score from the answer's digit tokens. With the answer number written
  as digit tokens d_k with place values 10^{e_k} (e.g. "73.42" = 7·10¹ + 3·10⁰ + 4·10⁻¹ + 2·10⁻²),

      E[score] = greedy + Σ_k 10^{e_k} · (Σ_c p_k(c)·c − d_k),

  where p_k is the softmax, over the vocabulary's digit tokens of the same length as d_k, of the scores (logits or
  log-probabilities: the softmax is the same) the engine reports at the step that wrote d_k, conditioned on the
  greedy digits before it. Tokens that are not pure digits (".", a token mixing digits and text) keep their greedy
  value. An engine that reports only its top-k log-probabilities per step (vLLM) leaves out the digits below the
  k-th: they count as probability 0.

No torch and no pydantic here (the GPU check imports the scorer without them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence

from tatar_core.method.digits import answer_digits, digit_vocab
from tatar_core.method.parsing import count_words, parse_answer
from tatar_core.method.prompts import ANSWER_CLOSE
from tatar_core.method.scales import clamp_100

# (position k in the trimmed ids, digit-token length) -> [(digit value, score)] for the digit tokens the engine scored
DigitScores = Callable[[int, int], list[tuple[float, float]]]


@dataclass(frozen=True)
class ScoreResult:
    score: Optional[
        float
    ]  # 0–100, higher is better (by the scorer's readout); None when the completion does not parse
    parse: Literal["strict", "lenient", "failed"]
    completion: str
    n_words: int
    greedy: Optional[float] = None  # the parsed greedy answer (equal to `score` for the greedy readout)


@dataclass(frozen=True)
class StopTokens:
    """Where a completion ends: `end_ids` (eos of the generation config and tokenizer, pad), and `</answer>` as one
    token (`answer_close_id`) or as a token sequence (`stop_seqs`, when the tokenizer splits it)."""

    end_ids: frozenset[int]
    answer_close_id: Optional[int]
    stop_seqs: tuple[tuple[int, ...], ...]
    pad_id: Optional[int]

    @property
    def stop_ids(self) -> set[int]:
        return set(self.end_ids) | ({self.answer_close_id} if self.answer_close_id is not None else set())

    def trim(self, ids: Sequence[int]) -> list[int]:
        """Generated ids up to the end: `</answer>` kept, eos / padding dropped."""
        out = []
        for t in ids:
            t = int(t)
            if t == self.answer_close_id:
                out.append(t)
                break
            if t in self.end_ids:
                break
            out.append(t)
        return out


def stop_tokens(tokenizer, generation_config=None) -> StopTokens:
    """The `StopTokens` of a tokenizer and the model's generation config (its `eos_token_id`, int or list)."""
    eos = getattr(generation_config, "eos_token_id", None)
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    close = tokenizer.encode(ANSWER_CLOSE, add_special_tokens=False)
    return StopTokens(
        frozenset(eos) | ({pad} if pad is not None else frozenset()),
        close[0] if len(close) == 1 else None,
        close_sequences(tokenizer, close),
        pad,
    )


def close_sequences(tokenizer, close: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Token sequences that write `</answer>` in a vocabulary where it is several tokens (e.g. Qwen's "</" "answer"
    ">"): the canonical pieces with the last one replaced by every token that starts like it, since the closing
    ">" merges with what follows (">\n", "><", ">." are single tokens); the completion is cut after the tag."""
    if len(close) < 2:
        return ()
    last = tokenizer.convert_ids_to_tokens(close[-1])
    ends = sorted(
        i for t, i in tokenizer.get_vocab().items() if t.startswith(last) and i not in tokenizer.all_special_ids
    )
    return tuple(tuple(close[:-1]) + (i,) for i in ends)


def expected_score(pieces: Sequence[str], greedy: float, digit_scores: DigitScores) -> float:
    """The module docstring's E[score] for the decoded tokens `pieces` whose answer parsed to `greedy`; the greedy
    value where the digits can't be located."""
    found = answer_digits(pieces)
    if found is None or not math.isclose(found[0], greedy, abs_tol=1e-9):
        return greedy
    value = greedy
    for k, exp, piece in found[1]:
        cands = [(v, x) for v, x in digit_scores(k, len(piece)) if math.isfinite(x)]
        if not cands:
            continue
        top = max(x for _, x in cands)
        weights = [math.exp(x - top) for _, x in cands]
        mean = sum(w * v for w, (v, _) in zip(weights, cands)) / sum(weights)
        value += (10.0**exp) * (mean - float(piece))
    return value


def read_result(
    tokenizer, ids: Sequence[int], stops: StopTokens, digit_scores: Optional[DigitScores] = None
) -> ScoreResult:
    """The `ScoreResult` of one row's generated `ids` (module docstring); `digit_scores` given = expected readout."""
    ids = stops.trim(ids)
    completion = tokenizer.decode(ids, skip_special_tokens=True)
    if stops.stop_seqs and ANSWER_CLOSE in completion:  # the closing token may carry more text (">\n")
        completion = completion[: completion.index(ANSWER_CLOSE) + len(ANSWER_CLOSE)]
    parsed = parse_answer(completion, lenient=True)
    score = greedy = parsed.score
    if greedy is not None:
        greedy = clamp_100(greedy) if math.isfinite(greedy) else None
    if score is not None and digit_scores is not None:
        score = expected_score([tokenizer.decode([t]) for t in ids], score, digit_scores)
    if score is not None:
        score = clamp_100(score) if math.isfinite(score) else None
    status = parsed.status if score is not None else "failed"
    return ScoreResult(score, status, completion, count_words(completion), greedy)


__all__ = ["ScoreResult", "StopTokens", "stop_tokens", "digit_vocab", "expected_score", "read_result", "DigitScores"]
