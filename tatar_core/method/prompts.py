"""The one set of prompts used for training, rationale generation targets, and evaluation.

Only the task text tells IQA (fast, brief) from IAA (slow, deliberate); there is no mode token.
"""

from __future__ import annotations

from typing import Any

from tatar_core.method.scales import format_score

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
SPECIAL_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
TASKS = ("iqa", "iaa")  # image quality (fast thinking), image aesthetics (slow thinking)

SYSTEM_PROMPT = (
    "You rate images. You may reason first inside <think> and </think>, briefly or at length as the task "
    "needs, then give the final rating inside <answer> and </answer>. The answer holds one number and "
    "nothing else, and the thinking, if any, comes before the answer."
)

TASK_TEXT = {
    "iqa": (
        "Task: image quality assessment. Rate the technical quality of this image (sharpness, noise, "
        "compression, exposure, colour) as a number from 0 to 100 with two decimals, where 0 is very poor "
        "and 100 is excellent. A brief answer is fine; no detailed reasoning is needed. "
        "The answer holds only the number."
    ),
    "iaa": (
        "Task: image aesthetic assessment. Rate the aesthetic appeal of this image as a number from 0 to 100 "
        "with two decimals, where 0 is very poor and 100 is excellent. Consider composition, lighting, colour "
        "harmony, subject presentation, balance, style and emotional impact. "
        "The answer holds only the number."
    ),
}


def user_content(task: str) -> list[dict[str, Any]]:
    """The user turn: the image placeholder, then the task text."""
    return [{"type": "image"}, {"type": "text", "text": TASK_TEXT[task]}]


def prompt_messages(task: str) -> list[dict[str, Any]]:
    """`[system, user: [image, text]]` as chat messages (images passed separately)."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": user_content(task)},
    ]


def make_target(rationale: str, score: float) -> str:
    """The training target: `<think>\\n…\\n</think>\\n<answer>NN.NN</answer>`; an empty rationale gives an empty
    think."""
    body = rationale.strip()
    think = f"{THINK_OPEN}\n{body}\n{THINK_CLOSE}" if body else f"{THINK_OPEN}\n{THINK_CLOSE}"
    return f"{think}\n{ANSWER_OPEN}{format_score(score)}{ANSWER_CLOSE}"


def completion_message(target: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": target}]}]
