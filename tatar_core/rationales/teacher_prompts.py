"""Prompts for the OpenAI-compatible teacher and LLM judge (the project's own wording).

The model-facing training/eval prompts live in `tatar_core.method.prompts`; these only steer the teacher that writes
rationales and the judge that audits them. `PROMPT_VERSION` (a hash of every text here) is part of the
teacher and judge ids, so changing a prompt invalidates cached rows.
"""

from __future__ import annotations

import hashlib
import json
import re

from tatar_core.method.scales import format_score

ATTRIBUTE_MAX_CHARS = 1200

# ArtiMuse-style attribute notes, in the order the narrative reasons through them; other keys follow.
ATTRIBUTE_ORDER = (
    ("visual_elements", "Visual elements"),
    ("composition_structure", "Composition and structure"),
    ("overall_gestalt", "Overall gestalt"),
    ("technical_execution", "Technical execution"),
    ("theme_communication", "Theme and communication"),
    ("emotion_viewer_response", "Emotion and viewer response"),
    ("originality_creativity", "Originality and creativity"),
    ("overall_evaluation", "Overall evaluation"),
)

FAST_SYSTEM = (
    "You are an expert in technical image quality. You explain a quality score that is already known. "
    "Reply with your explanation inside <think> and </think>, then the given score, unchanged, inside <answer> "
    "and </answer>. Talk about technical quality only (sharpness or blur, noise, compression artefacts, "
    "exposure, colour cast), never about beauty or subject appeal. Describe only what is visible in the image "
    "and invent nothing. Write no digits or numbers inside <think>."
)
FAST_USER = (
    "Known quality score: {score} on a 0-100 scale, higher is better.\n"
    "Explain why the image deserves this score in exactly two sentences, 30 to 50 words in total. Name the one "
    "or two technical factors that matter most here (sharpness/blur, noise, compression, exposure, colour cast). "
    "No numbers inside <think>."
)

SLOW_SYSTEM = (
    "You are an expert in visual aesthetics who writes model training rationales. Reply with your reasoning "
    "inside <think> and </think>, then the given score, unchanged and as a number only, inside <answer> and "
    "</answer>. Ground every statement in the material you are given and add nothing beyond it. Paraphrase: "
    "never copy more than fifteen consecutive words. Do not write the score inside <think>."
)
SLOW_USER_ATTRIBUTES = (
    "Expert notes on one image, by aspect:\n{notes}\n\n"
    "Final aesthetic score: {score} on a 0-100 scale, higher is better. It must stay unchanged.\n"
    "Inside <think>, write about 100 words as one flowing narrative, with no numbered steps, lists or "
    "headings. Reason through the aspects in the order given (composition, visual elements, light and colour, "
    "technical execution, theme, emotional effect on the viewer, originality, overall impression), linking "
    "causes to effects, so that the text leads naturally to the score. Scores below 30 mean clearly weak "
    "aesthetics; scores above 70 mean clearly strong ones."
)
SLOW_USER_IMAGE = (
    "Final aesthetic score: {score} on a 0-100 scale, higher is better. It must stay unchanged.\n"
    "Look at the image. Inside <think>, write about 100 words as one flowing narrative, with no numbered "
    "steps, lists or headings, that reasons through composition, visual elements, light and colour, "
    "technical execution, theme, emotional effect on the viewer, originality and the overall impression, "
    "linking causes to effects, so that the text leads naturally to the score. Scores below 30 mean clearly "
    "weak aesthetics; scores above 70 mean clearly strong ones."
)

# Fast-style IAA (the reasoning probe's short IAA think); hashed apart, so adding it changed no earlier teacher id.
FAST_IAA_SYSTEM = (
    "You are an expert in visual aesthetics. You explain an aesthetic score that is already known. Reply with your "
    "explanation inside <think> and </think>, then the given score, unchanged, inside <answer> and </answer>. "
    "Describe only what is visible in the image and invent nothing. Write no digits or numbers inside <think>."
)
FAST_IAA_USER = (
    "Known aesthetic score: {score} on a 0-100 scale, higher is better.\n"
    "Explain why the image deserves this score in exactly two sentences, 30 to 50 words in total. Name the one or "
    "two aesthetic factors that matter most here (composition, light and colour, subject, mood), then give the "
    "overall verdict. No numbers inside <think>."
)
FAST_IAA_VERSION = hashlib.sha256(json.dumps([FAST_IAA_SYSTEM, FAST_IAA_USER]).encode()).hexdigest()[:10]

PROMPT_VERSION = hashlib.sha256(
    json.dumps(
        [
            FAST_SYSTEM,
            FAST_USER,
            SLOW_SYSTEM,
            SLOW_USER_ATTRIBUTES,
            SLOW_USER_IMAGE,
            ATTRIBUTE_ORDER,
            ATTRIBUTE_MAX_CHARS,
        ]
    ).encode()
).hexdigest()[:10]


def _norm_key(k: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", k.lower()).strip("_").replace("_and_", "_")


def attribute_notes(attributes_json: str) -> str:
    """The sample's attribute texts (JSON object) as `- Label: text` lines in ATTRIBUTE_ORDER, each cut to
    ATTRIBUTE_MAX_CHARS characters; "" when there are none. Raises ValueError for invalid JSON."""
    if not attributes_json or not attributes_json.strip():
        return ""
    try:
        data = json.loads(attributes_json)
    except json.JSONDecodeError as e:
        raise ValueError(f"attributes are not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("attributes must be a JSON object of aspect -> text")
    by_norm = {_norm_key(str(k)): (str(k), v) for k, v in data.items()}
    lines, used = [], set()
    for key, label in ATTRIBUTE_ORDER:
        if key in by_norm:
            used.add(key)
            lines.append((label, by_norm[key][1]))
    lines += [(orig, v) for nk, (orig, v) in by_norm.items() if nk not in used]
    out = []
    for label, v in lines:
        text = " ".join(str(v if not isinstance(v, (dict, list)) else json.dumps(v)).split())
        if text:
            out.append(f"- {label}: {text[:ATTRIBUTE_MAX_CHARS]}")
    return "\n".join(out)


def fast_user(score: float) -> str:
    return FAST_USER.format(score=format_score(score))


def fast_iaa_user(score: float) -> str:
    return FAST_IAA_USER.format(score=format_score(score))


def slow_user(score: float, notes: str) -> str:
    if notes:
        return SLOW_USER_ATTRIBUTES.format(notes=notes, score=format_score(score))
    return SLOW_USER_IMAGE.format(score=format_score(score))
