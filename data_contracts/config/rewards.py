"""GRPO reward constants (formulas in tatar_core/method/rewards.py). Defaults are the reference code's numbers."""

from typing import Annotated, Literal, Optional

from pydantic import ConfigDict, Field

from data_contracts.config.base import Section


class ScoreRewardConfig(Section):
    """Gaussian score shaping (TATAR paper, arXiv 2603.19779); d in points on 0–100."""

    threshold: float = Field(8.75, gt=0, description="reward 0.5 at d=threshold before the adaptive sigma")
    alpha_iqa: float = Field(0.8, ge=0, description="adaptive sigma: sigma0*(1+alpha*d/100), IQA")
    alpha_iaa: float = Field(2.0, ge=0, description="adaptive sigma, IAA")
    scale_iqa: float = Field(1.0, gt=0, description="r = min(1, r*scale), IQA")
    scale_iaa: float = Field(1.5, gt=0, description="r = min(1, r*scale), IAA")
    iqa_max_words: Optional[int] = Field(
        65, ge=0, description="IQA completion over this many words -> 0 (None: no gate)"
    )
    iaa_min_words: Optional[int] = Field(
        125, ge=0, description="IAA completion under this many words -> 0 (None: no gate)"
    )
    parse: Literal["strict", "reference"] = Field(
        "reference",
        description="how the prediction is read (tatar_core/method/parsing.py): reference = the first "
        "<answer> block even with text around the tags (the reference code's training rule); strict = the format "
        "reward's rule",
    )


class RankRewardConfig(Section):
    """Ranking reward (TATAR paper; the reference code's sibling variant); scores /100."""

    tau: float = Field(0.08, gt=0, description="soft GT preference temperature: p_gt = sigmoid(dg/tau)")
    margin: float = Field(0.12, gt=0, description="m: pair weight exp(-|g_i-g_j|/m)")
    eps: float = Field(1e-6, gt=0, lt=0.5, description="thurstone: variance floor, p clip and max_bce = -ln(eps)")
    sibling_eps: float = Field(1e-4, gt=0, lt=0.5, description="sibling variant: p clip and max_bce = -ln(eps)")
    variant: Literal["thurstone", "sibling"] = Field(
        "thurstone",
        description="thurstone = paper, across images of the globally gathered step; "
        "sibling = the reference code's registered completion-vs-completion variant, local call only (ablation)",
    )


class RewardWeights(Section):
    """One task's GRPO reward weights: reward name -> weight >= 0 (the GRPO reward is the weighted sum).

    Any registered reward (tatar_core.method.rewards.REWARDS: score, rank, format and any added one) may be named;
    a reward not named keeps its registered default weight. Unknown names fail before any work (`tatar plan`, the
    GRPO stage). E.g. `grpo.rewards_iaa: {rank: 0}` = the IAA Gaussian-only probe.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    __pydantic_extra__: dict[str, Annotated[float, Field(ge=0)]]
