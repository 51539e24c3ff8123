"""Classical no-reference IQA baselines, measured in the same run on the same images as the model.

Both behave like a `Scorer` (`.score(images, task) -> [ScoreResult]`, `.batch_size`, `.readout`), so a benchmark
scores them exactly as it scores a checkpoint.

- `LaplacianScorer`: the floor, log(1 + var(∇²Y)) of the luminance Y (0–255): sharper / noisier = higher.
- `ForestScorer`: a random forest (scikit-learn, 300 trees, min 2 samples per leaf, fixed seed) on the 15 numpy
  features of `image_features`, fitted on the IQA images of the train split with their labels.

Features (luminance Y = 0.299 R + 0.587 G + 0.114 B on 0–255, gradients as neighbour differences):
 0 log(1 + var ∇²Y)                       sharpness / noise
 1 log(1 + mean |∇Y|)                     edge strength
 2 log(1 + median |∇²Y| / 0.6745)         robust noise level
 3 blockiness: mean |∆Y| across 8-px block borders / mean |∆Y| elsewhere (both axes)
 4 mean Y / 255                           exposure
 5 std Y / 255                            contrast
 6 share of Y < 30                        crushed shadows
 7 share of Y > 225                       clipped highlights
 8 mean saturation (max − min) / max      colour strength
 9 colourfulness (Hasler & Süsstrunk 2003) / 100
10 share of |∇Y| > 20                     edge density
11 share of horizontal neighbour differences = 0   flat runs (pixelation, clipping)
12 share of pixels at 0 or 255 in every channel     impulse noise
13 log((ε + mean |∇²Y|) / (ε + mean |Y − blur₂(Y)|))  fine vs mid frequencies (blur)
14 log((ε + mean |∆ₓY|) / (ε + mean |∆ᵧY|))  horizontal vs vertical detail (motion blur)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from data_contracts.records import SampleRecord
from tatar_core.images import as_rgb
from tatar_core.scoring.scorer import ScoreResult

BASELINES = ("laplacian", "random_forest")
EPS = 1e-3


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def laplacian_variance(img: Image.Image) -> float:
    y = _luma(np.asarray(as_rgb(img), dtype=np.float64))
    return float(np.log1p(ndimage.laplace(y).var()))


def image_features(img: Image.Image) -> np.ndarray:
    """The 15 features of the module docstring for one image."""
    rgb = np.asarray(as_rgb(img), dtype=np.float64)
    y = _luma(rgb)
    lap = ndimage.laplace(y)
    dx, dy = np.diff(y, axis=1), np.diff(y, axis=0)
    grad = np.hypot(dx[:-1, :], dy[:, :-1])
    border_x = (np.arange(dx.shape[1]) % 8) == 7
    border_y = (np.arange(dy.shape[0]) % 8) == 7
    inside = np.abs(dx[:, ~border_x]).mean() + np.abs(dy[~border_y, :]).mean()
    across = np.abs(dx[:, border_x]).mean() + np.abs(dy[border_y, :]).mean() if border_x.any() else inside
    mx, mn = rgb.max(-1), rgb.min(-1)
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourful = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    mid = np.abs(y - ndimage.gaussian_filter(y, 2.0)).mean()
    return np.array(
        [
            np.log1p(lap.var()),
            np.log1p(grad.mean()),
            np.log1p(np.median(np.abs(lap)) / 0.6745),
            across / (inside + EPS),
            y.mean() / 255,
            y.std() / 255,
            (y < 30).mean(),
            (y > 225).mean(),
            ((mx - mn) / (mx + EPS)).mean(),
            colourful / 100,
            (grad > 20).mean(),
            (dx == 0).mean(),
            ((rgb == 0).all(-1) | (rgb == 255).all(-1)).mean(),
            np.log((EPS + np.abs(lap).mean()) / (EPS + mid)),
            np.log((EPS + np.abs(dx).mean()) / (EPS + np.abs(dy).mean())),
        ]
    )


class _Baseline:
    batch_size = 64
    readout = "baseline"

    def _value(self, img: Image.Image) -> float:
        raise NotImplementedError

    def score(self, images: Sequence[Image.Image], task: str = "iqa", on_batch=None) -> list[ScoreResult]:
        out = []
        for im in images:
            v = self._value(im)
            out.append(ScoreResult(v, "strict", "", 0, v))
        if on_batch is not None:
            on_batch(len(images))
        return out


class LaplacianScorer(_Baseline):
    """The Laplacian-variance floor (module docstring)."""

    def _value(self, img: Image.Image) -> float:
        return laplacian_variance(img)


def make_forest(seed: int = 0):
    """The baseline's regressor (module docstring), unfitted."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=300, min_samples_leaf=2, random_state=seed, n_jobs=1)


class ForestScorer(_Baseline):
    """A random forest on `image_features`, fitted on labelled training images."""

    def __init__(self, train: Sequence[SampleRecord], seed: int = 0):
        from tatar_core.images import load_rgb

        if len(train) < 2:
            raise ValueError(f"random_forest baseline: needs labelled training images, got {len(train)}")
        x = np.stack([image_features(load_rgb(s.image_path)) for s in train])
        self.model = make_forest(seed)
        self.model.fit(x, np.array([s.score for s in train]))

    def score(self, images: Sequence[Image.Image], task: str = "iqa", on_batch=None) -> list[ScoreResult]:
        if not images:
            return []
        pred = self.model.predict(np.stack([image_features(im) for im in images]))
        if on_batch is not None:
            on_batch(len(images))
        return [ScoreResult(float(v), "strict", "", 0, float(v)) for v in pred]


__all__ = ["BASELINES", "LaplacianScorer", "ForestScorer", "image_features", "laplacian_variance", "make_forest"]
