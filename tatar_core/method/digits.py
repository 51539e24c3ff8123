"""The answer's number as tokens: which tokens are digits, and where the answer's digits sit in a token sequence.
Shared by the expected readout (`tatar_core.scoring.readout`) and the SFT score-token loss
(`tatar_core.training.score_loss`)."""

from __future__ import annotations

import re
from typing import Optional, Sequence

from tatar_core.method.parsing import NUMBER
from tatar_core.method.prompts import ANSWER_OPEN

_NUM_RE = re.compile(NUMBER)


def digit_vocab(tokenizer) -> dict[int, str]:
    """token id -> text for every token that decodes to ASCII digits only ("7", "42", ...)."""
    out = {}
    for i in range(len(tokenizer)):
        t = tokenizer.decode([i])
        if t and t.isascii() and t.isdigit():
            out[i] = t
    return out


def answer_digits(pieces: Sequence[str]) -> Optional[tuple[float, list[tuple[int, int, str]]]]:
    """The answer number in the decoded tokens `pieces` (the first plain number after the last `<answer>`): its value
    and, for each pure-digit token k inside it, (k, e, piece) with 10^e the place value of the piece's last digit
    ("73.42" as "73" "." "42": (0, 0, "73"), (2, -2, "42")). None when there is no such number (or it has a sign or
    an exponent)."""
    joined = "".join(pieces)
    start = joined.rfind(ANSWER_OPEN)
    m = _NUM_RE.search(joined, start + len(ANSWER_OPEN) if start >= 0 else 0)
    if m is None or "e" in m.group(0).lower() or m.group(0).startswith("-"):
        return None
    try:
        value = float(m.group(0))
    except ValueError:
        return None
    num, a = m.group(0).lstrip("+"), m.start() + (1 if m.group(0).startswith("+") else 0)
    dp = num.index(".") if "." in num else len(num)
    digits, pos = [], 0
    for k, piece in enumerate(pieces):
        s, e = pos, pos + len(piece)
        pos = e
        if e <= a or s >= a + len(num) or not (piece.isascii() and piece.isdigit()):
            continue
        i, j = s - a, e - a  # digits num[i:j]
        if i < 0 or j > len(num):
            continue
        last = j - 1
        digits.append((k, (dp - 1 - last) if last < dp else -(last - dp), piece))
    return value, digits


__all__ = ["answer_digits", "digit_vocab"]
