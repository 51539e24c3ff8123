"""Stage 1: teacher rationales (offline teacher or any OpenAI-compatible endpoint) and their filter."""

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from data_contracts.config.base import Section


class Decoding(Section):
    temperature: float = 0.3
    top_p: float = 0.8
    max_tokens: int = 140


class EndpointConfig(Section):
    """An OpenAI-compatible chat-completions endpoint. The key itself never appears in a config."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "teacher"
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable that holds the API key")
    api_key_secret: Optional[str] = Field(None, description="Prefect Secret block name (used when set)")
    concurrency: int = Field(8, ge=1, description="requests in flight at most")
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout")
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(0.5, gt=0, description="first retry waits ~this long, doubling, with jitter")
    backoff_max_s: float = 30.0
    image_max_side: int = Field(768, ge=32, description="images are downscaled to this longest side")


Style = Literal["fast", "slow"]
SLOW_BOTH = {"iqa": "slow", "iaa": "slow"}


class RationaleStyles(Section):
    """Which rationale style the teacher writes for each task's samples, and which filter rules check it.

    fast: two sentences, 30–50 words (IQA: the dominant technical factors; IAA: the most telling aesthetic cue and a
    verdict). slow: a ~100-word narrative over the aesthetic aspects. The paper's recipe is IQA fast, IAA slow; the
    reasoning probe (configs/probes.yaml) swaps them."""

    iqa: Style = "fast"
    iaa: Style = "slow"


class TeacherConfig(Section):
    kind: Literal["offline", "openai"] = "offline"
    endpoint: EndpointConfig = EndpointConfig()
    iqa: Decoding = Decoding(temperature=0.3, top_p=0.8, max_tokens=140)
    iaa: Decoding = Decoding(temperature=0.2, top_p=0.9, max_tokens=500)
    style: RationaleStyles = RationaleStyles()
    same_style: bool = Field(
        False,
        description="alias of style {iqa: slow, iaa: slow}: IAA-style narratives for "
        "both tasks (no fast/slow); kept equal to it when the config loads",
    )
    send_image_with_attributes: bool = Field(
        False, description="slow style: also send the image when attribute notes exist (needs a vision model)"
    )
    fast_max_sentences: int = Field(2, ge=1, description="fast (IQA) rationales keep at most this many sentences")
    fast_max_words: int = Field(50, ge=1, description="fast (IQA) rationales are cut to this many words")
    slow_max_words: int = Field(160, ge=1, description="slow (IAA) rationales: whole sentences up to this many words")

    @model_validator(mode="before")
    @classmethod
    def _same_style_alias(cls, data: Any) -> Any:
        """`same_style: true` is `style: {iqa: slow, iaa: slow}`; either spelling loads to the same config (and
        key)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        given = out.get("style")
        style = {
            **RationaleStyles().model_dump(),
            **(given.model_dump() if isinstance(given, RationaleStyles) else given or {}),
        }
        if out.get("same_style"):
            if given is not None and style != SLOW_BOTH:
                raise ValueError(f"same_style: true means style {SLOW_BOTH}, but style is {style}: set only one")
            style = dict(SLOW_BOTH)
        out["style"], out["same_style"] = style, style == SLOW_BOTH
        return out

    def style_of(self, task: str) -> Style:
        """The style of `task`'s rationales ("slow" for both under same_style, also on a copy made without
        validation)."""
        return "slow" if self.same_style else getattr(self.style, task)


class RationalesConfig(Section):
    teacher: TeacherConfig = TeacherConfig()
    shard_size: int = Field(32, ge=1, description="rows per Parquet shard appended while the stage runs")
    max_samples: Optional[int] = Field(None, description="use only the first N train samples (debug)")


class RuleConfig(Section):
    iqa_min_words: int = 20
    iqa_max_words: int = 65
    iaa_min_words: int = 60
    iaa_max_words: int = 220
    iaa_min_aspects: int = Field(5, ge=0, le=8)
    score_min: float = 0.0
    score_max: float = 100.0


class JudgeConfig(Section):
    enabled: bool = False
    endpoint: EndpointConfig = EndpointConfig()
    temperature: float = 0.0
    max_tokens: int = 400
    iqa_min_visual_fidelity: float = 2.0
    iqa_min_score_consistency: float = 2.0
    iaa_min_groundedness: float = 2.0
    iaa_min_cohesion: float = 2.0
    max_attempts: int = Field(3, ge=1, description="malformed verdicts are retried this many times")
    send_image: bool = Field(True, description="send the image to the judge (needs a vision model)")
    json_mode: bool = Field(False, description="request response_format=json_object (servers that support it)")


class FilterConfig(Section):
    rules: RuleConfig = RuleConfig()
    judge: JudgeConfig = JudgeConfig()

    @model_validator(mode="after")
    def _bounds(self):
        r = self.rules
        if r.iqa_min_words > r.iqa_max_words or r.iaa_min_words > r.iaa_max_words:
            raise ValueError("rules: min_words must not exceed max_words")
        return self
