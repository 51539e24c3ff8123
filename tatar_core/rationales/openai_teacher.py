"""The OpenAI-compatible teacher (OpenAI, vLLM, `transformers serve`, …) and `make_teacher`.

Fast style (IQA, "reversal"): the teacher sees the image and the known score and explains it in two sentences
(30–50 words). Slow style (IAA): a ~100-word narrative from the sample's attribute notes when present
(text only, as a text LLM teacher needs; `send_image_with_attributes` adds the image), else from the image.
`TeacherConfig.style` picks the style per task: slow IQA gets the narrative prompts (`same_style`), fast IAA a
two-sentence aesthetic prompt (`teacher_prompts.FAST_IAA_*`).
The reply is cleaned by `tatar_core.rationales.text` (limits from TeacherConfig) and the target ends in the
known score via `tatar_core.prompts.make_target`. A reply with no usable rationale is retried like an
empty response.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Optional

from data_contracts.config.rationales import Decoding, TeacherConfig
from data_contracts.records import RationaleRecord, SampleRecord
from tatar_core.llm.client import ChatClient
from tatar_core.llm.keys import SecretResolver
from tatar_core.method.parsing import count_words
from tatar_core.method.prompts import make_target
from tatar_core.rationales import teacher_prompts as tp
from tatar_core.rationales.text import TextLimits, clean_rationale

STOP = ["</answer>", "<|endoftext|>"]


def style_of(task: str, cfg: TeacherConfig) -> str:
    """`cfg.style` for the task: by default "fast" for IQA, "slow" for IAA; "slow" for both under same_style."""
    return cfg.style_of(task)


def limits_for(style: str, cfg: TeacherConfig) -> TextLimits:
    if style == "fast":
        return TextLimits(max_sentences=cfg.fast_max_sentences, max_words=cfg.fast_max_words)
    return TextLimits(max_words=cfg.slow_max_words, whole_sentences=True)


def _image_part(path: str, max_side: int) -> dict:
    from tatar_core.images import to_data_url

    return {"type": "image_url", "image_url": {"url": to_data_url(path, max_side)}}


def teacher_messages(sample: SampleRecord, cfg: TeacherConfig) -> list[dict]:
    """The chat messages sent for `sample` (system + user with image and/or text)."""
    side = cfg.endpoint.image_max_side
    if style_of(sample.task, cfg) == "fast" and sample.task == "iaa":
        system = tp.FAST_IAA_SYSTEM
        user = [_image_part(sample.image_path, side), {"type": "text", "text": tp.fast_iaa_user(sample.score)}]
    elif style_of(sample.task, cfg) == "fast":
        system = tp.FAST_SYSTEM
        user = [_image_part(sample.image_path, side), {"type": "text", "text": tp.fast_user(sample.score)}]
    else:
        system = tp.SLOW_SYSTEM
        notes = tp.attribute_notes(sample.attributes)
        text = {"type": "text", "text": tp.slow_user(sample.score, notes)}
        user = [text] if notes and not cfg.send_image_with_attributes else [_image_part(sample.image_path, side), text]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def teacher_id_for(cfg: TeacherConfig) -> str:
    """`openai:<model>:<hash>`: model, decoding, limits, style flags and PROMPT_VERSION (never the key or URL)."""
    settings = {
        "model": cfg.endpoint.model,
        "iqa": cfg.iqa.model_dump(),
        "iaa": cfg.iaa.model_dump(),
        "same_style": cfg.same_style,
        "image_max_side": cfg.endpoint.image_max_side,
        "send_image_with_attributes": cfg.send_image_with_attributes,
        "limits": [cfg.fast_max_sentences, cfg.fast_max_words, cfg.slow_max_words],
        "prompts": tp.PROMPT_VERSION,
        "stop": STOP,
    }
    styles = {t: cfg.style_of(t) for t in ("iqa", "iaa")}
    if styles["iaa"] == "fast":  # only then: the ids of the fast/slow and same_style settings stay as they were
        settings |= {"style": styles, "fast_iaa_prompts": tp.FAST_IAA_VERSION}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return f"openai:{cfg.endpoint.model}:{h}"


class OpenAITeacher:
    """`await teacher.agenerate(sample) -> RationaleRecord`; errors are `RequestFailed` with redacted text."""

    def __init__(
        self, cfg: TeacherConfig, secret_resolver: Optional[SecretResolver] = None, client: Optional[ChatClient] = None
    ):
        self.cfg = cfg
        self.client = client or ChatClient(cfg.endpoint, secret_resolver=secret_resolver)
        self.teacher_id = teacher_id_for(cfg)

    def redact(self, text: str) -> str:
        return self.client.redact(text)

    def decoding(self, sample: SampleRecord) -> Decoding:
        return self.cfg.iaa if style_of(sample.task, self.cfg) == "slow" else self.cfg.iqa

    async def agenerate(self, sample: SampleRecord) -> RationaleRecord:
        dec = self.decoding(sample)
        limits = limits_for(style_of(sample.task, self.cfg), self.cfg)
        messages = await asyncio.to_thread(teacher_messages, sample, self.cfg)  # image I/O off the event loop
        rationale = await self.client.complete(
            messages,
            temperature=dec.temperature,
            top_p=dec.top_p,
            max_tokens=dec.max_tokens,
            stop=STOP,
            check=lambda text: clean_rationale(text, limits),
        )
        return RationaleRecord(
            sample_id=sample.sample_id,
            image_path=sample.image_path,
            task=sample.task,
            score=sample.score,
            rationale=rationale,
            target=make_target(rationale, sample.score),
            teacher=self.teacher_id,
            n_words=count_words(rationale),
        )


def make_teacher(cfg: TeacherConfig, secret_resolver: Optional[SecretResolver] = None):
    """The teacher `cfg.kind` names: the built-in OfflineTeacher or an OpenAITeacher."""
    if cfg.kind == "offline":
        from tatar_core.demo.teacher import OfflineTeacher

        return OfflineTeacher(cfg)
    if cfg.kind == "openai":
        return OpenAITeacher(cfg, secret_resolver=secret_resolver)
    raise ValueError(f"teacher.kind: unknown teacher {cfg.kind!r} (expected 'offline' or 'openai')")
