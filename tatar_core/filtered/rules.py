"""Rule checks on a teacher rationale (the embedded judge): every failed check becomes a short reason code.

Reason codes (stable prefix before the colon, detail after it):
  tags                 not exactly one <think>…</think> followed by exactly one <answer>…</answer>, nested or
                       stray tags, or text outside the two blocks
  answer               the answer block is not a single number
  score_out_of_range   the answer or the record's score lies outside [rules.score_min, rules.score_max]
  answer_mismatch      the answer differs from the record's score by more than 0.005 (two-decimal rounding)
  contamination        role tag | code fence | tool call | script | BEGIN/END marker | role prefix
  words                rationale word count outside its style's [min, max] (RuleConfig: the iqa_* bounds check
                       fast-style rationales, the iaa_* bounds slow-style ones)
  aspects              slow style: fewer than rules.iaa_min_aspects of the 8 keyword groups covered
  number_in_rationale  IQA: a digit-number inside the think (the score must not leak into the rationale)
  image_missing        (only with check_image=True) the record's image file does not exist
An empty list means the rationale passes. The style of a row is the rationales stage's `teacher.style` for its task
(default IQA fast, IAA slow, so by default the checks are per task); a row whose style is not its task's default
says so in the detail ("words: iqa slow 230 > 220").

Aspect keyword groups: `tatar_core.method.aspects`.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from data_contracts.config.rationales import RuleConfig
from data_contracts.records import RationaleRecord
from tatar_core.method.aspects import ASPECT_KEYWORDS, covered_aspects
from tatar_core.method.parsing import NUMBER, count_words

_TAG_RE = re.compile(r"</?\s*(think|answer)\s*>", re.I)
_ANSWER_BODY_RE = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_THINK_BODY_RE = re.compile(r"<think>(.*?)</think>", re.S | re.I)
_FENCE_STRIP = re.compile(r"^```(?:text)?\s*|\s*```$")
_SINGLE_NUMBER = re.compile(rf"^\s*{NUMBER}\s*$")
_DIGIT_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")

# (label, pattern): contamination checks of the TATAR reference judge
_CONTAMINATION: tuple[tuple[str, re.Pattern], ...] = (
    ("tool call", re.compile(r"</?\s*tool_call\b|<\|tool_call|\"tool_calls\"|<function[=\s>]", re.I)),
    (
        "role tag",
        re.compile(r"<\|?\s*/?\s*(?:system|assistant|user|developer)\b[^>]*\|?>|<\|im_(?:start|end)\|>", re.I),
    ),
    ("code fence", re.compile(r"```")),
    ("script", re.compile(r"<\s*script\b", re.I)),
    ("BEGIN/END marker", re.compile(r"\bBEGIN\b|\bEND\b")),
    ("role prefix", re.compile(r"^\s*(?:system|assistant|developer)\s*:", re.I | re.M)),
)


def _tag_problems(target: str) -> list[str]:
    """Structure of `<think>…</think><answer>…</answer>`; returns detail strings (empty = fine)."""
    tags = [(m.group(0).lower().replace(" ", ""), m.start(), m.end()) for m in _TAG_RE.finditer(target)]
    names = [t[0] for t in tags]
    out = []
    for t in ("<think>", "</think>", "<answer>", "</answer>"):
        n = names.count(t)
        if n != 1:
            out.append(f"{n} {t} (need exactly 1)")
    if out:
        return out
    if names != ["<think>", "</think>", "<answer>", "</answer>"]:
        return ["tags out of order (need <think>…</think> then <answer>…</answer>)"]
    first, last = tags[0][1], tags[-1][2]
    between = target[tags[1][2] : tags[2][1]]
    if target[:first].strip():
        out.append("text before <think>")
    if between.strip():
        out.append("text between </think> and <answer>")
    if target[last:].strip():
        out.append("text after </answer>")
    return out


DEFAULT_STYLE = {"iqa": "fast", "iaa": "slow"}


def rule_reasons(
    rec: RationaleRecord, rules: RuleConfig, *, check_image: bool = False, style: Optional[str] = None
) -> list[str]:
    """Every failed rule check of `rec` as "code: detail" (see the module docstring); [] = pass. `style` ("fast" |
    "slow"; None = the task's default) chooses the word bounds and the aspect check."""
    reasons: list[str] = []
    target = rec.target or ""

    tag_issues = _tag_problems(target)
    reasons += [f"tags: {d}" for d in tag_issues]

    thinks = _THINK_BODY_RE.findall(target)
    think = thinks[0].strip() if len(thinks) == 1 and not tag_issues else (rec.rationale or "")

    answers = _ANSWER_BODY_RE.findall(target)
    answer_val = None
    if len(answers) == 1:
        body = _FENCE_STRIP.sub("", answers[0].strip()).strip()
        if _SINGLE_NUMBER.match(body):
            answer_val = float(body)
        else:
            reasons.append(f"answer: not a single number ({body[:30]!r})")
    elif not tag_issues:  # unreachable with valid tags; kept for safety
        reasons.append("answer: missing")

    lo, hi = rules.score_min, rules.score_max
    out = [f"answer {answer_val:g}"] if answer_val is not None and not (lo <= answer_val <= hi) else []
    out += [f"score {rec.score:g}"] if not (lo <= rec.score <= hi) else []
    if out:
        reasons.append(f"score_out_of_range: {' and '.join(out)} not in [{lo:g}, {hi:g}]")
    if answer_val is not None and abs(answer_val - rec.score) > 0.005 + 1e-9:
        reasons.append(f"answer_mismatch: answer {answer_val:.2f} != score {rec.score:.2f}")

    found = [label for label, rx in _CONTAMINATION if rx.search(target)]
    if found:
        reasons.append("contamination: " + "|".join(found))

    n = count_words(think)
    style = style or DEFAULT_STYLE[rec.task]
    lo_w, hi_w = (
        (rules.iqa_min_words, rules.iqa_max_words) if style == "fast" else (rules.iaa_min_words, rules.iaa_max_words)
    )
    what = rec.task if style == DEFAULT_STYLE[rec.task] else f"{rec.task} {style}"
    if n > hi_w:
        reasons.append(f"words: {what} {n} > {hi_w}")
    elif n < lo_w:
        reasons.append(f"words: {what} {n} < {lo_w}")

    if style == "slow":
        k = len(covered_aspects(think))
        if k < rules.iaa_min_aspects:
            reasons.append(f"aspects: {k}/{len(ASPECT_KEYWORDS)} < {rules.iaa_min_aspects}")
    if rec.task == "iqa":
        m = _DIGIT_NUMBER.search(think)
        if m:
            reasons.append(f"number_in_rationale: {m.group(0)!r}")

    if check_image and not os.path.exists(rec.image_path):
        reasons.append(f"image_missing: {rec.image_path}")
    return reasons
