"""Correlation metrics between predicted and ground-truth scores (both 0–100, higher is better).

- SRCC: Spearman's rank correlation, ties get average ranks (scipy `spearmanr`).
- PLCC: Pearson's linear correlation of the raw predictions.
- PLCC-logistic: Pearson after the standard VQEG 4-parameter logistic mapping of the predictions,

      f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2,

  fitted by least squares (scipy `curve_fit`); when the fit fails or is degenerate, the raw PLCC is used.
- 95% intervals: percentile bootstrap over images (resample n pairs with replacement, `bootstrap` times,
  numpy Generator seeded by `seed`); resamples with a constant side are dropped.
- Pairwise accuracy within references: over all pairs (i, j) of valid predictions with the same `ref_id` and
  gt_i ≠ gt_j, the share with sign(pred_i − pred_j) = sign(gt_i − gt_j) (a tie in the predictions counts 1/2).
  It asks "does the model order versions of the same content correctly", e.g. an original above its
  manipulations.
- Every metric is NaN when fewer than 3 predictions are valid (parsed).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

import numpy as np
from scipy import stats
from scipy.optimize import curve_fit

from data_contracts.records import GroupMetricRecord, MetricRecord, PredictionRecord

MIN_VALID = 3
NAN = float("nan")


def _arrays(pred: Sequence[float], gt: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pred and gt must be 1-D of equal length, got {x.shape} and {y.shape}")
    return x, y


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) < MIN_VALID or np.ptp(x) == 0 or np.ptp(y) == 0


def srcc(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Spearman rank correlation with average ranks for ties; NaN for n < 3 or a constant side."""
    x, y = _arrays(pred, gt)
    if _degenerate(x, y):
        return NAN
    return float(stats.spearmanr(x, y).statistic)


def plcc(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Pearson linear correlation of raw values; NaN for n < 3 or a constant side."""
    x, y = _arrays(pred, gt)
    if _degenerate(x, y):
        return NAN
    return float(stats.pearsonr(x, y).statistic)


def logistic4(x, b1, b2, b3, b4):
    """VQEG 4-parameter logistic: (β1 − β2) / (1 + exp(−(x − β3)/|β4|)) + β2."""
    z = np.clip(-(x - b3) / (abs(b4) + 1e-12), -60.0, 60.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic(pred: Sequence[float], gt: Sequence[float]) -> Optional[np.ndarray]:
    """β of the 4-parameter logistic from predictions to ground truth, or None when the fit fails."""
    x, y = _arrays(pred, gt)
    if _degenerate(x, y):
        return None
    sx = float(np.std(x)) or 1.0
    p0 = [float(np.max(y)), float(np.min(y)), float(np.mean(x)), sx / 4.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            beta, _ = curve_fit(logistic4, x, y, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError, TypeError, FloatingPointError):
        return None
    return beta if np.all(np.isfinite(beta)) else None


def plcc_logistic(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Pearson after the 4-parameter logistic fit; falls back to the raw PLCC when the fit fails."""
    x, y = _arrays(pred, gt)
    if _degenerate(x, y):
        return NAN
    beta = fit_logistic(x, y)
    if beta is not None:
        fx = logistic4(x, *beta)
        if np.ptp(fx) > 0:
            r = float(stats.pearsonr(fx, y).statistic)
            if math.isfinite(r):
                return r
    return plcc(x, y)


def bootstrap_ci(
    pred: Sequence[float], gt: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals {"srcc": (lo, hi), "plcc": (lo, hi)}; NaNs when n < 3 or n_boot = 0."""
    x, y = _arrays(pred, gt)
    out = {"srcc": (NAN, NAN), "plcc": (NAN, NAN)}
    if n_boot <= 0 or _degenerate(x, y):
        return out
    rng = np.random.default_rng(seed)
    n = len(x)
    ps, ss = [], []
    chunk = max(1, 2_000_000 // n)  # bounded memory for large benchmarks (AVA: 19,930 images)
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        xs, ys = x[idx], y[idx]
        ok = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
        xs, ys = xs[ok], ys[ok]
        if len(xs):
            ps.append(_rowwise_pearson(xs, ys))
            # Spearman = Pearson of average ranks
            ss.append(_rowwise_pearson(stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1)))
    if not ps:
        return out
    a = (1.0 - level) / 2.0 * 100.0
    p, s = np.concatenate(ps), np.concatenate(ss)
    out["plcc"] = (float(np.percentile(p, a)), float(np.percentile(p, 100 - a)))
    out["srcc"] = (float(np.percentile(s, a)), float(np.percentile(s, 100 - a)))
    return out


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return np.clip((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1)), -1.0, 1.0)


def pair_accuracy(preds: Sequence[PredictionRecord]) -> float:
    """Within-reference pairwise accuracy (module docstring); NaN without any such pair."""
    by_ref: dict[str, list[PredictionRecord]] = {}
    for p in preds:
        if p.ref_id and p.pred is not None and math.isfinite(p.pred):
            by_ref.setdefault(p.ref_id, []).append(p)
    hits = pairs = 0.0
    for rows in by_ref.values():
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if a.gt != b.gt:
                    d = (a.pred - b.pred) * (a.gt - b.gt)
                    hits += 1.0 if d > 0 else 0.5 if d == 0 else 0.0
                    pairs += 1
    return hits / pairs if pairs else NAN


def _valid(preds: Sequence[PredictionRecord], greedy: bool = False) -> tuple[list[float], list[float]]:
    rows = [(p.pred_greedy if greedy else p.pred, p.gt) for p in preds]
    rows = [(x, y) for x, y in rows if x is not None and math.isfinite(x)]
    return [x for x, _ in rows], [y for _, y in rows]


def compute_metrics(
    benchmark: str,
    task: str,
    predictions: Sequence[PredictionRecord],
    n_skipped: int = 0,
    bootstrap: int = 1000,
    seed: int = 0,
    readout: str = "greedy",
) -> MetricRecord:
    """SRCC / PLCC / PLCC-logistic (+ bootstrap 95% CIs) over the parsed predictions of one benchmark and model.

    n = scored images, n_valid = parsed ones (strict or lenient), n_lenient = parsed only by the lenient
    fallback (the last closed <answer> block's first number; a completion without one, e.g. cut off while thinking, is
    a failure, never lenient), mean_words = mean completion length in words over all scored images; srcc/plcc_greedy
    use the parsed greedy answers (`pred_greedy`) whatever the readout.
    """
    x, y = _valid(predictions)
    xg, yg = _valid(predictions, greedy=True)
    ci = bootstrap_ci(x, y, bootstrap, seed) if len(x) >= MIN_VALID else bootstrap_ci([], [], 0)
    return MetricRecord(
        benchmark=benchmark,
        task=task,
        n=len(predictions),
        n_valid=len(x),
        n_skipped=int(n_skipped),
        n_lenient=sum(1 for p in predictions if p.pred is not None and p.parse == "lenient"),
        srcc=srcc(x, y),
        plcc=plcc(x, y),
        plcc_logistic=plcc_logistic(x, y),
        srcc_lo=ci["srcc"][0],
        srcc_hi=ci["srcc"][1],
        plcc_lo=ci["plcc"][0],
        plcc_hi=ci["plcc"][1],
        mean_words=float(np.mean([p.n_words for p in predictions])) if predictions else NAN,
        model=predictions[0].model if predictions else "grpo",
        readout=readout,
        srcc_greedy=srcc(xg, yg),
        plcc_greedy=plcc(xg, yg),
        pair_acc=pair_accuracy(predictions),
    )


def group_metrics(benchmark: str, task: str, predictions: Sequence[PredictionRecord]) -> list[GroupMetricRecord]:
    """Per `group` (distortion type / manipulation), sorted: SRCC (readout and greedy) over the group's images, and
    `pair_acc` against each reference's anchor (its highest-gt image: the pristine photo / the original), i.e. how
    often the model rates the anchor above this group's version of it."""
    anchors: dict[str, PredictionRecord] = {}
    for p in predictions:
        if p.ref_id and (p.ref_id not in anchors or p.gt > anchors[p.ref_id].gt):
            anchors[p.ref_id] = p
    out = []
    for g in sorted({p.group for p in predictions if p.group}):
        rows = [p for p in predictions if p.group == g]
        x, y = _valid(rows)
        xg, yg = _valid(rows, greedy=True)
        pairs = [
            q
            for p in rows
            if (a := anchors.get(p.ref_id)) is not None and a is not p and a.gt != p.gt
            for q in (
                p.model_copy(update={"ref_id": f"{p.ref_id}|{p.sample_id}"}),
                a.model_copy(update={"ref_id": f"{p.ref_id}|{p.sample_id}"}),
            )
        ]
        out.append(
            GroupMetricRecord(
                benchmark=benchmark,
                model=rows[0].model,
                task=task,
                group=g,
                n_valid=len(x),
                srcc=srcc(x, y),
                srcc_greedy=srcc(xg, yg),
                pair_acc=pair_accuracy(pairs),
            )
        )
    return out


__all__ = [
    "srcc",
    "plcc",
    "plcc_logistic",
    "logistic4",
    "fit_logistic",
    "bootstrap_ci",
    "compute_metrics",
    "group_metrics",
    "pair_accuracy",
    "MIN_VALID",
]
