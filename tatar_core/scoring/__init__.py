"""Scoring images with a trained checkpoint: `Scorer(model_dir).score(images, task)`."""
from tatar_core.scoring.scorer import ScoreResult, Scorer

__all__ = ["Scorer", "ScoreResult"]
