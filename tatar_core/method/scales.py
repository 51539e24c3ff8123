"""Score scales: every dataset declares its native range and direction; mapping to 0–100 uses the range.

    to_100(x) = 100 · (x − low) / (high − low)        (higher_is_better)
    to_100(x) = 100 · (high − x) / (high − low)       (lower is better)

The value itself is never used to guess the scale (the reference code's `gt_to_100` maps an IQA label
of 1.0 to 100 and reads Flickr-AES's 0.2–1.0 as 0–10; we dispatch on the declared range instead).
"""

from __future__ import annotations

from dataclasses import dataclass

SCORE_MIN, SCORE_MAX = 0.0, 100.0


def clamp_100(x: float) -> float:
    """x clamped to the score range [0, 100]."""
    return min(SCORE_MAX, max(SCORE_MIN, float(x)))


@dataclass(frozen=True)
class ScoreScale:
    low: float
    high: float
    higher_is_better: bool = True

    def __post_init__(self):
        if not self.high > self.low:
            raise ValueError(f"score scale needs high > low, got [{self.low}, {self.high}]")

    def to_100(self, x: float, *, clamp: bool = True) -> float:
        """Map a native score to 0–100 (higher is better). Out-of-range values are clamped."""
        t = (float(x) - self.low) / (self.high - self.low)
        if not self.higher_is_better:
            t = 1.0 - t
        v = 100.0 * t
        return clamp_100(v) if clamp else v


SCALE_100 = ScoreScale(0.0, 100.0)
SCALE_1_5 = ScoreScale(1.0, 5.0)
SCALE_0_10 = ScoreScale(0.0, 10.0)
SCALE_1_10 = ScoreScale(1.0, 10.0)


def format_score(s: float) -> str:
    """The answer format: a 0–100 score with two decimals, e.g. '73.42'."""
    return f"{clamp_100(s):.2f}"
