"""What the scorer states for bf16 (tatar_core.scoring.scorer docstring), on CPU with ModelConfig(dtype="bfloat16"):
drafts on vs off, and batched vs one-image HF `generate`, give the same completion on >= BF16_MIN_SAME of the images
(the fp32 guarantee, identical, is tested in test_scoring.py and test_bench_scorer_script.py)."""

from __future__ import annotations

import pytest
from test_scoring import _images


@pytest.fixture(scope="module")
def bf16_scorers(sft_checkpoint):
    from data_contracts.config.model import ModelConfig
    from tatar_core.scoring.scorer import Scorer

    cfg = ModelConfig(dtype="bfloat16")
    return {d: Scorer(sft_checkpoint, model_cfg=cfg, batch_size=8, draft_tokens=d) for d in (6, 0)}


def _jobs():
    return [(_images(8, seed=21), "iqa"), (_images(16, seed=41), "iqa"), (_images(2, seed=22), "iaa")]


@pytest.mark.slow
def test_bf16_drafts_on_and_off_within_the_stated_tolerance(bf16_scorers):
    import torch

    from tatar_core.scoring.scorer import BF16_MIN_SAME

    on, off = bf16_scorers[6], bf16_scorers[0]
    assert on.model.dtype == torch.bfloat16
    same = total = 0
    for images, task in _jobs():
        a, b = on.score(images, task), off.score(images, task)
        same += sum(x.completion == y.completion for x, y in zip(a, b))
        total += len(a)
        assert all(x.score == y.score for x, y in zip(a, b) if x.completion == y.completion)
        assert sum(r.score is not None for r in a) >= len(a) // 2, [r.completion[-40:] for r in a]
    assert same >= BF16_MIN_SAME * total, f"{same}/{total} identical in bf16"


@pytest.mark.slow
def test_bf16_batched_vs_one_image_generate_within_the_stated_tolerance(bf16_scorers):
    from tatar_core.models.loading import generate
    from tatar_core.scoring.scorer import BF16_MIN_SAME

    scorer = bf16_scorers[6]
    same = total = 0
    for images, task in _jobs():
        ours = scorer.score(images, task)
        for im, r in zip(images, ours):
            text = generate(scorer.model, scorer.processor, [im], [task], max_new_tokens=scorer.max_new_tokens)[0]
            if "</answer>" in text:
                text = text[: text.index("</answer>") + len("</answer>")]
            same += r.completion == text
            total += 1
    assert same >= BF16_MIN_SAME * total, f"{same}/{total} identical in bf16"
