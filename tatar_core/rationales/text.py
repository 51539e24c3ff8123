"""Post-processing of teacher text into a clean rationale (the text that goes inside <think>…</think>).

1. Take the first complete `<think>…</think>` block; else the text after an unclosed `<think>`; else the
   whole text (any `<answer>…</answer>` block, closed or cut off by a stop string, is dropped).
2. Remove stray tags: think / answer / tool_call (opening or closing), and collapse whitespace.
3. Enforce the style's limits: at most `max_sentences` sentences, then at most `max_words` words
   (fast/IQA: 2 sentences, ≤ 50 words; slow/IAA: whole sentences up to `max_words`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.S | re.I)
_THINK_OPEN = re.compile(r"<think>", re.I)
_ANSWER_BLOCK = re.compile(r"<answer>.*?(?:</answer>|$)", re.S | re.I)
_STRAY_TAGS = re.compile(r"</?\s*(?:think|answer|tool_call)\s*/?>", re.I)
# a sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace or the end of the text;
# decimal points never split (no space follows), common abbreviations are skipped.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_ABBREVIATIONS = {"e.g.", "i.e.", "vs.", "etc.", "cf.", "approx.", "mr.", "mrs.", "ms.", "dr.", "st.", "no."}


@dataclass(frozen=True)
class TextLimits:
    """Length limits for one rationale style; None = no limit."""

    max_sentences: Optional[int] = None
    max_words: Optional[int] = None
    whole_sentences: bool = False  # trim to whole sentences within max_words when possible


class EmptyRationale(ValueError):
    """The teacher's text held no usable rationale."""


def extract_think(text: str) -> str:
    """Steps 1–2: the rationale text without tags, whitespace collapsed."""
    text = text or ""
    m = _THINK_BLOCK.search(text)
    if m:
        body = m.group(1)
    else:
        o = _THINK_OPEN.search(text)
        body = text[o.end() :] if o else text
        body = _ANSWER_BLOCK.sub(" ", body)
    body = _STRAY_TAGS.sub(" ", body)
    return " ".join(body.split())


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (terminal punctuation kept)."""
    text = text.strip()
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        last_word = text[start : m.end()].split()[-1].lower() if text[start : m.end()].split() else ""
        if last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last_word):  # "e.g.", initials "J."
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [x for x in out if x]


def clamp_words(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


def apply_limits(text: str, limits: TextLimits) -> str:
    """Step 3: sentence limit, then word limit (at a sentence boundary when `whole_sentences`)."""
    sents = split_sentences(text)
    if limits.max_sentences is not None:
        sents = sents[: limits.max_sentences]
    out = " ".join(sents)
    if limits.max_words is not None and len(out.split()) > limits.max_words:
        if limits.whole_sentences:
            kept, n = [], 0
            for s in sents:
                k = len(s.split())
                if n + k > limits.max_words:
                    break
                kept.append(s)
                n += k
            out = " ".join(kept) if kept else clamp_words(out, limits.max_words)
        else:
            out = clamp_words(out, limits.max_words)
    return out


def clean_rationale(text: str, limits: TextLimits) -> str:
    """Steps 1–3; raises EmptyRationale when nothing is left."""
    out = apply_limits(extract_think(text), limits)
    if not out.strip():
        raise EmptyRationale("no rationale text in the teacher's reply")
    return out
