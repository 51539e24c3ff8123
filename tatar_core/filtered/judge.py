"""The LLM judge: audits one rationale through an OpenAI-compatible endpoint and returns rejection reasons.

Verdict JSON (strict): {"decision": "keep"|"reject", "overall_confidence": 0–100,
"scores": {criterion: 0–5, …}, "major_issues": [...], "minor_notes": [...]}, criteria per task in
`JUDGE_CRITERIA`. Keep rules (thresholds from JudgeConfig, strict ">"):

    IQA: decision == keep  and  visual_fidelity > t_vf   and  score_consistency > t_sc
    IAA: decision == keep  and  groundedness > t_g       and  reasoning_cohesion > t_c

A reply that is not such a JSON object is asked again (up to `max_attempts` verdicts; transport errors are
retried inside the client), then recorded as the reason "judge: malformed verdict (…)". A request that still
fails gives "judge: request_failed (…)" (text redacted).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Optional

from data_contracts.config.rationales import JudgeConfig
from data_contracts.records import RationaleRecord, SampleRecord
from tatar_core.llm.client import ChatClient, RequestFailed
from tatar_core.llm.keys import SecretResolver
from tatar_core.method.parsing import parse_answer
from tatar_core.method.scales import SCORE_MAX, SCORE_MIN, format_score
from tatar_core.rationales import teacher_prompts as tp

JUDGE_SYSTEM = (
    "You are a strict, conservative auditor of training data for an image assessment model. You check a "
    "rationale written for an image with a known score. Judge only from the image and the material given; "
    "reject rationales that describe things not visible or not supported, that are generic boilerplate, or "
    "that do not fit the score. Reply with one JSON object and nothing else."
)
JUDGE_IQA_USER = (
    "Task: technical image quality. Scale {scale_min}-{scale_max}, higher is better.\n"
    "Known score: {gt}. Score the rationale ends with: {pred}.\n"
    'Rationale:\n"""{think}"""\n\n'
    "Rate each criterion from 0 (bad) to 5 (excellent):\n"
    "- visual_fidelity: every technical claim matches what the image shows;\n"
    "- technical_rigor: names the decisive technical factors precisely;\n"
    "- score_consistency: the described quality fits the known score.\n"
    'Reply exactly in this JSON form: {{"decision": "keep" or "reject", "overall_confidence": 0-100, '
    '"scores": {{"visual_fidelity": 0-5, "technical_rigor": 0-5, "score_consistency": 0-5}}, '
    '"major_issues": ["..."], "minor_notes": ["..."]}}'
)
JUDGE_IAA_USER = (
    "Task: image aesthetics. Scale {scale_min}-{scale_max}, higher is better.\n"
    "Known score: {gt}. Score the rationale ends with: {pred}.\n"
    "Expert notes by aspect (may be empty):\n{notes}\n"
    "Aspects the local check found covered: {covered}.\n"
    'Rationale:\n"""{think}"""\n\n'
    "Rate each criterion from 0 (bad) to 5 (excellent):\n"
    "- attribute_coverage: covers at least about five aspects (composition, visual elements, light/colour, "
    "technique, theme, emotion, originality, overall);\n"
    "- groundedness: invents nothing beyond the image and notes;\n"
    "- reasoning_cohesion: a connected narrative with causal links, not a list of parroted notes;\n"
    "- score_derivation: the reasoning leads smoothly to the known score.\n"
    'Reply exactly in this JSON form: {{"decision": "keep" or "reject", "overall_confidence": 0-100, '
    '"scores": {{"attribute_coverage": 0-5, "groundedness": 0-5, "reasoning_cohesion": 0-5, '
    '"score_derivation": 0-5}}, "major_issues": ["..."], "minor_notes": ["..."]}}'
)

JUDGE_CRITERIA = {
    "iqa": ("visual_fidelity", "technical_rigor", "score_consistency"),
    "iaa": ("attribute_coverage", "groundedness", "reasoning_cohesion", "score_derivation"),
}

JUDGE_PROMPT_VERSION = hashlib.sha256(
    json.dumps([JUDGE_SYSTEM, JUDGE_IQA_USER, JUDGE_IAA_USER, tp.PROMPT_VERSION]).encode()
).hexdigest()[:10]

# names some judges use for the same criteria (the reference's long names)
CRITERION_ALIASES = {
    "groundedness_no_fabrication": "groundedness",
    "score_derivation_smoothness": "score_derivation",
    "cohesion": "reasoning_cohesion",
}
_FENCE = re.compile(r"```(?:json)?", re.I)


class MalformedVerdict(ValueError):
    """The judge's reply is not a valid verdict object."""


@dataclass
class Verdict:
    decision: str
    scores: dict[str, float]
    overall_confidence: Optional[float] = None
    major_issues: list[str] = field(default_factory=list)
    minor_notes: list[str] = field(default_factory=list)


@dataclass
class JudgeResult:
    reasons: list[str]  # empty = keep
    verdict_json: str  # the stored verdict (or the error), never the API key


def _first_json_object(text: str) -> dict:
    s = _FENCE.sub("", text or "")
    dec = json.JSONDecoder()
    start = s.find("{")
    while start != -1:
        try:
            obj, _ = dec.raw_decode(s, start)
            if isinstance(obj, dict):
                return obj
        except json.JSONDecodeError:
            pass
        start = s.find("{", start + 1)
    raise MalformedVerdict("no JSON object in the reply")


def parse_verdict(text: str, task: str) -> Verdict:
    """The verdict in `text` (the first JSON object; code fences allowed); raises MalformedVerdict."""
    obj = _first_json_object(text)
    decision = str(obj.get("decision", "")).strip().lower()
    if decision not in ("keep", "reject"):
        raise MalformedVerdict(f"decision must be keep or reject, got {obj.get('decision')!r}")
    raw = obj.get("scores")
    if not isinstance(raw, dict):
        raise MalformedVerdict("missing 'scores' object")
    scores: dict[str, float] = {}
    for k, v in raw.items():
        name = CRITERION_ALIASES.get(k, k)
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            continue
        try:
            scores[name] = float(v)
        except ValueError:
            continue
    need = JUDGE_CRITERIA[task]
    missing = [c for c in need if c not in scores]
    if missing:
        raise MalformedVerdict(f"missing or non-numeric score(s): {', '.join(missing)}")
    bad = [c for c in need if not 0.0 <= scores[c] <= 5.0]
    if bad:
        raise MalformedVerdict(f"score(s) outside 0-5: {', '.join(bad)}")
    conf = obj.get("overall_confidence")
    as_list = lambda x: [str(i) for i in x] if isinstance(x, list) else ([str(x)] if x else [])  # noqa: E731
    return Verdict(
        decision=decision,
        scores={c: scores[c] for c in scores if c in need},
        overall_confidence=float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else None,
        major_issues=as_list(obj.get("major_issues")),
        minor_notes=as_list(obj.get("minor_notes")),
    )


def thresholds(task: str, cfg: JudgeConfig) -> dict[str, float]:
    """The thresholded criteria for `task` (a criterion must score strictly above its threshold)."""
    if task == "iqa":
        return {"visual_fidelity": cfg.iqa_min_visual_fidelity, "score_consistency": cfg.iqa_min_score_consistency}
    return {"groundedness": cfg.iaa_min_groundedness, "reasoning_cohesion": cfg.iaa_min_cohesion}


def verdict_reasons(v: Verdict, task: str, cfg: JudgeConfig) -> list[str]:
    """Every failed keep condition as a reason ("judge: decision=reject", "judge: visual_fidelity 2 <= 2")."""
    out = [] if v.decision == "keep" else ["judge: decision=reject"]
    for crit, t in thresholds(task, cfg).items():
        if not v.scores[crit] > t:
            out.append(f"judge: {crit} {v.scores[crit]:g} <= {t:g}")
    return out


def judge_messages(
    rec: RationaleRecord, sample: Optional[SampleRecord], covered: list[str], cfg: JudgeConfig
) -> list[dict]:
    """System + user messages for one rationale (image first when `cfg.send_image`)."""
    parsed = parse_answer(rec.target)
    pred = format_score(parsed.score) if parsed.score is not None else "unparsable"
    fields = dict(
        scale_min=f"{SCORE_MIN:g}",
        scale_max=f"{SCORE_MAX:g}",
        gt=format_score(rec.score),
        pred=pred,
        think=rec.rationale,
    )
    if rec.task == "iqa":
        text = JUDGE_IQA_USER.format(**fields)
    else:
        notes = tp.attribute_notes(sample.attributes) if sample is not None else ""
        text = JUDGE_IAA_USER.format(notes=notes or "(none)", covered=", ".join(covered) or "(none)", **fields)
    user: list[dict] = [{"type": "text", "text": text}]
    if cfg.send_image:
        from tatar_core.images import to_data_url

        path = sample.image_path if sample is not None else rec.image_path
        user.insert(0, {"type": "image_url", "image_url": {"url": to_data_url(path, cfg.endpoint.image_max_side)}})
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def judge_id_for(cfg: JudgeConfig) -> str:
    settings = {
        "model": cfg.endpoint.model,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "send_image": cfg.send_image,
        "json_mode": cfg.json_mode,
        "prompts": JUDGE_PROMPT_VERSION,
    }
    return (
        f"judge:{cfg.endpoint.model}:{hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]}"
    )


class LLMJudge:
    """`await judge.ajudge(rec, sample, covered) -> JudgeResult`."""

    def __init__(
        self, cfg: JudgeConfig, secret_resolver: Optional[SecretResolver] = None, client: Optional[ChatClient] = None
    ):
        self.cfg = cfg
        self.client = client or ChatClient(cfg.endpoint, secret_resolver=secret_resolver)
        self.judge_id = judge_id_for(cfg)

    def redact(self, text: str) -> str:
        return self.client.redact(text)

    def _record(self, **kw) -> str:
        return json.dumps({"judge": self.judge_id, **kw}, ensure_ascii=False)

    async def ajudge(
        self, rec: RationaleRecord, sample: Optional[SampleRecord], covered: Optional[list[str]] = None
    ) -> JudgeResult:
        try:
            messages = await asyncio.to_thread(judge_messages, rec, sample, covered or [], self.cfg)
        except Exception as e:  # noqa: BLE001 - e.g. ImageLoadError
            err = self.redact(f"{type(e).__name__}: {e}")
            return JudgeResult([f"judge: image_unreadable ({err})"], self._record(error=err))
        extra = {"response_format": {"type": "json_object"}} if self.cfg.json_mode else None
        problems = []
        for attempt in range(1, self.cfg.max_attempts + 1):
            try:
                text = await self.client.complete(
                    messages, temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens, extra_body=extra
                )
            except RequestFailed as e:
                return JudgeResult([f"judge: request_failed ({e})"], self._record(error=str(e)))
            try:
                v = parse_verdict(text, rec.task)
            except MalformedVerdict as e:
                problems.append(str(e))
                continue
            verdict = {
                "decision": v.decision,
                "scores": v.scores,
                "overall_confidence": v.overall_confidence,
                "major_issues": v.major_issues,
                "minor_notes": v.minor_notes,
                "attempts": attempt,
            }
            return JudgeResult(verdict_reasons(v, rec.task, self.cfg), self.redact(self._record(**verdict)))
        detail = self.redact(problems[-1])
        return JudgeResult(
            [f"judge: malformed verdict (after {self.cfg.max_attempts} attempts: {detail})"],
            self._record(error=f"malformed verdict: {detail}", attempts=self.cfg.max_attempts),
        )
