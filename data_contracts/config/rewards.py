"""GRPO reward constants (formulas in tatar_core/rewards.py)."""
from typing import Literal, Optional

from pydantic import Field

from data_contracts.config.base import Section


class ScoreRewardConfig(Section):
    """Gaussian score shaping (tatar-method §6.3); d in points on 0–100."""

    threshold: float = Field(8.75, gt=0, description="reward 0.5 at d=threshold before the adaptive sigma")
    alpha_iqa: float = 0.8
    alpha_iaa: float = 2.0
    scale_iqa: float = 1.0
    scale_iaa: float = 1.5
    iqa_max_words: Optional[int] = Field(65, description="IQA completion over this many words -> 0")
    iaa_min_words: Optional[int] = Field(125, description="IAA completion under this many words -> 0")


class RankRewardConfig(Section):
    """Thurstone-style cross-image ranking for IAA (tatar-method §6.5); scores /100."""

    tau: float = Field(0.08, gt=0)
    margin: float = Field(0.12, gt=0, description="m: pair weight exp(-|g_i-g_j|/m)")
    eps: float = 1e-6
    variant: Literal["thurstone", "sibling"] = Field(
        "thurstone", description="thurstone = paper (cross-image); sibling = the reference code's registered variant"
    )


class RewardWeights(Section):
    score: float = 1.0
    rank: float = 1.0
    format: float = 1.0
