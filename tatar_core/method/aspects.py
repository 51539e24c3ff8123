"""The IAA aspect vocabulary shared by the offline teacher, the rule checks and the judge prompt.

Eight keyword groups after the TATAR paper's IAA judge (arXiv 2603.19779), plus the British spellings
"colour"/"colourful". A keyword counts when a word of the text (lower-cased) starts with it: "lines" matches
"line", "outline" does not (the reference implementation matches plain substrings).
"""

from __future__ import annotations

import re

ASPECT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "emotion": ("emotion", "emotional", "mood", "feeling", "evoke", "impact", "resonance", "viewer"),
    "composition": (
        "composition",
        "layout",
        "balance",
        "symmetry",
        "framing",
        "alignment",
        "spacing",
        "rule of thirds",
        "structure",
    ),
    "originality": (
        "original",
        "originality",
        "creative",
        "creativity",
        "novel",
        "unique",
        "generic",
        "derivative",
        "innovative",
    ),
    "visual_elements": (
        "color",
        "colour",
        "palette",
        "contrast",
        "saturation",
        "shape",
        "line",
        "texture",
        "space",
        "depth",
        "lighting",
        "shadow",
    ),
    "gestalt": ("gestalt", "cohesive", "coherence", "harmony", "unity", "holistic", "overall"),
    "technical": (
        "technical",
        "execution",
        "polish",
        "refined",
        "resolution",
        "artifact",
        "artefact",
        "edges",
        "blending",
        "rendering",
        "clarity",
    ),
    "theme": ("theme", "story", "narrative", "message", "communication", "concept", "context", "cultural"),
    "overall": ("overall", "aesthetic", "appeal", "quality", "evaluation", "rating", "score"),
}

_ASPECT_RE = {
    k: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")") for k, words in ASPECT_KEYWORDS.items()
}


def covered_aspects(text: str) -> list[str]:
    """The keyword groups of `ASPECT_KEYWORDS` that `text` covers, in table order."""
    low = (text or "").lower()
    return [k for k, rx in _ASPECT_RE.items() if rx.search(low)]
