"""Metrics: SRCC (average ranks), PLCC, logistic-fitted PLCC, bootstrap CIs, NaN for n < 3."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from data_contracts.records import MetricRecord, PredictionRecord
from tatar_core.benchmark.metrics import (
    bootstrap_ci,
    compute_metrics,
    fit_logistic,
    logistic4,
    plcc,
    plcc_logistic,
    srcc,
)


def test_known_values_match_scipy():
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 100, 200)
    pred = gt + rng.normal(0, 20, 200)
    assert srcc(pred, gt) == pytest.approx(stats.spearmanr(pred, gt).statistic, abs=1e-12)
    assert plcc(pred, gt) == pytest.approx(stats.pearsonr(pred, gt).statistic, abs=1e-12)
    assert srcc([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert srcc([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert plcc([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_ties_get_average_ranks():
    pred = [50, 50, 50, 10, 90]
    gt = [1, 2, 3, 4, 5]
    # hand computation: ranks of pred = [3, 3, 3, 1, 5] (ties averaged), gt ranks = [1..5]
    expected = np.corrcoef([3, 3, 3, 1, 5], [1, 2, 3, 4, 5])[0, 1]
    assert srcc(pred, gt) == pytest.approx(expected, abs=1e-12)
    # the reference's argsort(argsort) ranks break ties by order and give a different (wrong) value
    order_ranks = np.argsort(np.argsort(pred))
    assert abs(np.corrcoef(order_ranks, gt)[0, 1] - expected) > 0.05


def test_logistic_fit_on_synthetic_sigmoid_gives_plcc_logistic_near_1():
    x = np.linspace(0, 100, 80)
    y = logistic4(x, 95.0, 5.0, 50.0, 8.0)
    assert plcc(x, y) < 0.97  # raw PLCC is hurt by the nonlinearity
    assert plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)
    beta = fit_logistic(x, y)
    assert beta is not None and beta[2] == pytest.approx(50.0, abs=0.5)
    assert srcc(x, y) == pytest.approx(1.0)


def test_logistic_fit_failure_falls_back_to_raw(monkeypatch):
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
    r = plcc_logistic(x, y)
    assert math.isfinite(r) and -1.0 <= r <= 1.0

    def no_convergence(*a, **k):
        raise RuntimeError("Optimal parameters not found: Number of calls to function has reached maxfev")

    import tatar_core.benchmark.metrics as metrics

    monkeypatch.setattr(metrics, "curve_fit", no_convergence)  # force the failure path scipy takes on bad data
    assert metrics.fit_logistic(x, y) is None
    assert metrics.plcc_logistic(x, y) == pytest.approx(plcc(x, y))


def test_nan_below_three_valid_and_constant_inputs():
    for f in (srcc, plcc, plcc_logistic):
        assert math.isnan(f([], []))
        assert math.isnan(f([1.0, 2.0], [2.0, 3.0]))
        assert math.isnan(f([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]))
    ci = bootstrap_ci([1.0, 2.0], [1.0, 2.0], 100)
    assert all(math.isnan(v) for pair in ci.values() for v in pair)
    with pytest.raises(ValueError):
        srcc([1, 2, 3], [1, 2])


def test_bootstrap_ci_contains_point_and_is_seeded():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, 150)
    pred = gt + rng.normal(0, 25, 150)
    ci = bootstrap_ci(pred, gt, 500, seed=7)
    assert ci["srcc"][0] < srcc(pred, gt) < ci["srcc"][1]
    assert ci["plcc"][0] < plcc(pred, gt) < ci["plcc"][1]
    assert ci == bootstrap_ci(pred, gt, 500, seed=7)
    assert ci != bootstrap_ci(pred, gt, 500, seed=8)
    assert 0.02 < ci["srcc"][1] - ci["srcc"][0] < 0.4


def _pred(i, gt, pred, parse="strict", words=10):
    return PredictionRecord(
        benchmark="b",
        sample_id=str(i),
        image_path=f"/x/{i}.png",
        task="iqa",
        gt=gt,
        pred=pred,
        parse=parse,
        completion="...",
        n_words=words,
    )


def test_compute_metrics_record():
    rng = np.random.default_rng(1)
    gts = rng.uniform(0, 100, 60)
    preds = [
        _pred(i, float(g), float(g + rng.normal(0, 10)), "lenient" if i % 10 == 0 else "strict", i % 7)
        for i, g in enumerate(gts)
    ]
    preds.append(_pred(99, 50.0, None, "failed", 3))
    m = compute_metrics("b", "iqa", preds, n_skipped=4, bootstrap=200, seed=0)
    assert isinstance(m, MetricRecord)
    assert (m.n, m.n_valid, m.n_skipped, m.n_lenient) == (61, 60, 4, 6)
    valid = [p for p in preds if p.pred is not None]
    assert m.srcc == pytest.approx(srcc([p.pred for p in valid], [p.gt for p in valid]))
    assert m.srcc_lo < m.srcc < m.srcc_hi and m.plcc_lo < m.plcc < m.plcc_hi
    assert m.mean_words == pytest.approx(np.mean([p.n_words for p in preds]))
    few = compute_metrics("b", "iqa", preds[:2] + [preds[-1]], bootstrap=100)
    assert few.n_valid == 2 and math.isnan(few.srcc) and math.isnan(few.plcc) and math.isnan(few.srcc_lo)
    none = compute_metrics("b", "iqa", [], bootstrap=100)
    assert none.n == 0 and math.isnan(none.mean_words)
