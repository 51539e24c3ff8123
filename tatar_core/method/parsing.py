"""The one answer parser, shared by rewards, scoring and the judge. Three rules, all reading numbers only inside a
closed `<answer>…</answer>` block, so a completion cut off before its answer (`"<think>The 8 attributes…"`) never
yields a score:

- strict (`parse_strict`; the format reward, the judge, the scorer's first try): at most one <think>…</think>
  before exactly one <answer>…</answer>, nothing else around them; the answer (after stripping a ``` fence) is
  exactly one number.
- reference (`parse_reference`; the score reward's default, `grpo.score_reward.parse: reference`): the reference
  code's training rule (`parse_rating_from_completion`): the FIRST <answer>…</answer> block, wherever it is and
  whatever text surrounds it; after stripping a ``` fence it must be exactly one number. `parse: strict` makes the
  score reward use the strict rule instead.
- lenient (`parse_lenient`; the scorer's fallback, always counted as "lenient"): the reference evaluation's rule:
  the LAST <answer>…</answer> block, fence stripped, a JSON object {"rating": x} accepted, else the first number
  in the block. No closed answer block is a parse failure, never a score.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, Optional

NUMBER = r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(NUMBER)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.S | re.I)
_FENCE_RE = re.compile(r"^```(?:text)?\s*|\s*```$")
_STRICT_LAYOUT = re.compile(
    r"^\s*(?:<think>(?P<think>.*?)</think>)?\s*<answer>(?P<answer>.*?)</answer>\s*$", re.S | re.I
)


@dataclass(frozen=True)
class Parsed:
    score: Optional[float]
    status: Literal["strict", "lenient", "failed"]
    think: str = ""


def _single_number(text: str) -> Optional[float]:
    body = _FENCE_RE.sub("", text.strip()).strip()
    found = _NUM_RE.findall(body)
    if len(found) != 1 or _NUM_RE.sub("", body, count=1).strip():
        return None
    try:
        return float(found[0])
    except ValueError:
        return None


def parse_strict(text: str) -> Optional[float]:
    """The number in a well-formed `[<think>…</think>]<answer>N</answer>` completion, else None."""
    if text is None:
        return None
    if len(_ANSWER_RE.findall(text)) != 1 or len(_THINK_RE.findall(text)) > 1:
        return None
    m = _STRICT_LAYOUT.match(text)
    if not m:
        return None
    think = m.group("think") or ""
    if re.search(r"</?(?:think|answer)>", think, re.I):
        return None
    return _single_number(m.group("answer"))


def parse_reference(text: str) -> Optional[float]:
    """The reference training rule: the first <answer>…</answer> block anywhere, exactly one number in it."""
    if not text:
        return None
    m = _ANSWER_RE.search(text)
    return _single_number(m.group(1)) if m else None


def parse_lenient(text: str) -> Optional[float]:
    """The reference evaluation rule: last <answer>…</answer> block, fence stripped, {"rating": x} or the first
    number in it; None without a closed answer block."""
    if not text:
        return None
    blocks = _ANSWER_RE.findall(text)
    if not blocks:
        return None
    body = _FENCE_RE.sub("", blocks[-1].strip()).strip()
    if body.startswith("{"):
        try:
            rating = json.loads(body).get("rating")
            return float(rating) if rating is not None else None
        except (ValueError, TypeError, AttributeError):
            pass
    m = _NUM_RE.search(body)
    return float(m.group(0)) if m else None


SCORE_PARSERS = {"strict": parse_strict, "reference": parse_reference}  # grpo.score_reward.parse


def parse_answer(text: str, lenient: bool = False) -> Parsed:
    """Strict first; with `lenient=True`, fall back to the lenient parser (status says which one worked)."""
    think_blocks = _THINK_RE.findall(text or "")
    think = think_blocks[0].strip() if think_blocks else ""
    s = parse_strict(text)
    if s is not None:
        return Parsed(s, "strict", think)
    if lenient:
        s = parse_lenient(text)
        if s is not None:
            return Parsed(s, "lenient", think)
    return Parsed(None, "failed", think)


def count_words(text: str) -> int:
    """Words = whitespace-separated tokens of the whole text (tags included), as the length gates use."""
    return len((text or "").split())
