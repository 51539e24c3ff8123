"""Scoring images with a trained checkpoint: `Scorer(model_dir).score(images, task)`.

The names load on first use, so that importing a light module of this package (the worker spec, the readout)
does not import torch."""

from __future__ import annotations

__all__ = ["Scorer", "ScoreResult"]


def __getattr__(name: str):
    if name == "Scorer":
        from tatar_core.scoring.scorer import Scorer

        return Scorer
    if name == "ScoreResult":
        from tatar_core.scoring.readout import ScoreResult

        return ScoreResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
