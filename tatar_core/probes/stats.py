"""Intervals over seeds and the verdict a paired comparison supports.

    t interval:          mean ± t(0.975, n−1) · sd / √n         (sd with n−1; n = seeds with a finite value)
    bootstrap interval:  2.5th and 97.5th percentiles of the mean of n values drawn with replacement (10,000 times)
    paired difference:   per seed, better − worse (worse − better for a "lower is better" metric); its interval as
    above
    verdict:             "supported"                  the interval lies above 0
                         "not supported"              the interval lies below 0 (the opposite holds at this scale)
                         "inconclusive at this scale" the interval holds 0, or fewer than 2 seeds have both values

With 3 seeds t(0.975, 2) = 4.30: an interval excludes 0 only when the difference is large against its spread. No
correction for testing several comparisons is made; the report says so.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional, Sequence

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive at this scale"
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int

    def text(self, nd: int = 3) -> str:
        if not math.isfinite(self.mean):
            return "–"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f"{self.mean:.{nd}f}"
        return f"{self.mean:.{nd}f} [{self.lo:.{nd}f}, {self.hi:.{nd}f}]"


def _finite(values: Sequence[Optional[float]]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def t_interval(values: Sequence[Optional[float]], level: float = 0.95) -> Interval:
    """mean ± t(1−α/2, n−1)·sd/√n over the finite values; lo = hi = NaN with fewer than 2 (mean NaN with none)."""
    from scipy.stats import t

    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    m = sum(x) / n
    if n < 2:
        return Interval(m, float("nan"), float("nan"), n)
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1))
    h = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(m, m - h, m + h, n)


def bootstrap_interval(
    values: Sequence[Optional[float]], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> Interval:
    """Percentile bootstrap of the mean over the finite values (seeded); NaN bounds with fewer than 2."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    m = sum(x) / n
    if n < 2:
        return Interval(m, float("nan"), float("nan"), n)
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(x) for _ in range(n)) / n for _ in range(resamples))
    a = (1 - level) / 2
    return Interval(m, means[int(a * (resamples - 1))], means[int(math.ceil((1 - a) * (resamples - 1)))], n)


def interval(values: Sequence[Optional[float]], method: str = "t") -> Interval:
    return bootstrap_interval(values) if method == "bootstrap" else t_interval(values)


def paired(
    better: dict[int, Optional[float]], worse: dict[int, Optional[float]], direction: str = "higher", method: str = "t"
) -> Interval:
    """Interval of the per-seed difference (seeds where both values are finite)."""
    sign = 1.0 if direction == "higher" else -1.0
    diffs = [
        sign * (better[s] - worse[s])
        for s in better
        if s in worse
        and better[s] is not None
        and worse[s] is not None
        and math.isfinite(better[s])
        and math.isfinite(worse[s])
    ]
    return interval(diffs, method)


def verdict(diff: Interval) -> str:
    """What the paired difference's interval supports (module doc)."""
    if diff.n < 2 or not (math.isfinite(diff.lo) and math.isfinite(diff.hi)):
        return INCONCLUSIVE
    if diff.lo > 0:
        return SUPPORTED
    if diff.hi < 0:
        return NOT_SUPPORTED
    return INCONCLUSIVE


__all__ = [
    "Interval",
    "t_interval",
    "bootstrap_interval",
    "interval",
    "paired",
    "verdict",
    "SUPPORTED",
    "NOT_SUPPORTED",
    "INCONCLUSIVE",
]
