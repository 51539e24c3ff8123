"""Answer parsing: numbers are read only inside a closed <answer> block; the score reward's `parse` switch."""

from __future__ import annotations

import pytest

from data_contracts.config import load_config
from data_contracts.config.rewards import ScoreRewardConfig
from data_contracts.errors import ConfigError
from data_contracts.records import PredictionRecord
from tatar_core.benchmark.metrics import compute_metrics
from tatar_core.method.parsing import parse_answer, parse_lenient, parse_reference, parse_strict
from tatar_core.method.rewards import score_reward

TRUNCATED = [
    "<think>The 8 attributes suggest a strong",  # cut off while thinking (the case)
    "<think>Sharp, 3 small specks of noise.</think><answer>7",  # cut off inside the answer
    "The image scores 72 out of 100.",  # no tags at all
    "",
]


@pytest.mark.parametrize("text", TRUNCATED)
def test_no_closed_answer_block_is_a_failure_never_a_score(text):
    assert parse_lenient(text) is None and parse_reference(text) is None and parse_strict(text) is None
    p = parse_answer(text, lenient=True)
    assert p.status == "failed" and p.score is None


@pytest.mark.parametrize(
    "text,want",
    [
        ("<think>ok</think><answer>score: 73.5 (of 100)</answer>", 73.5),  # first number in the answer
        ("<answer>10</answer> then <answer>```\n64\n```</answer>", 64.0),  # the last block, fence stripped
        ('<think>x</think><answer>{"rating": 81.25}</answer>', 81.25),  # the reference evaluation's JSON form
        ("<think>9 things</think> <answer>about 55</answer> trailing", 55.0),  # never a number from the thinking
    ],
)
def test_lenient_reads_only_the_last_answer_block(text, want):
    assert parse_strict(text) is None
    assert parse_lenient(text) == want
    assert parse_answer(text, lenient=True).status == "lenient"


def test_reference_rule_takes_the_first_block_even_with_text_around_it():
    assert parse_reference("Sure. <answer>70</answer> Hope this helps.") == 70.0
    assert parse_reference("<answer>70</answer><answer>20</answer>") == 70.0  # first block
    assert parse_reference("<think>a</think><answer>73.42 points</answer>") is None  # exactly one number
    assert parse_reference("<answer>```text\n12.5\n```</answer>") == 12.5
    assert parse_strict("Sure. <answer>70</answer> Hope this helps.") is None  # the format reward stays strict


def test_score_reward_parse_switch_defaults_to_the_reference_rule():
    wrapped = "Here is my rating. <think>Sharp and clean.</think><answer>70</answer>"
    kw = dict(completions=[wrapped], task=["iqa"], score=[70.0])
    assert ScoreRewardConfig().parse == "reference"
    assert score_reward(**kw) == [1.0]
    assert score_reward(**kw, cfg=ScoreRewardConfig(parse="strict")) == [0.0]
    assert score_reward(completions=[TRUNCATED[0]], task=["iqa"], score=[8.0]) == [0.0]


def test_parse_switch_is_checked_at_load(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("grpo: {score_reward: {parse: lenient}}\n")
    with pytest.raises(ConfigError, match="grpo.score_reward.parse"):
        load_config(cfg)


def test_benchmark_counts_truncated_completions_as_failures_not_lenient():
    texts = [
        "<think>a</think><answer>40</answer>",
        "<think>b</think> <answer>60</answer> extra",
        "<think>The 8 attributes suggest a strong",
        "<think>c</think><answer>80</answer>",
    ]
    preds = []
    for i, t in enumerate(texts):
        p = parse_answer(t, lenient=True)
        preds.append(
            PredictionRecord(
                benchmark="b",
                sample_id=str(i),
                image_path="x",
                task="iaa",
                gt=10.0 * i,
                pred=p.score,
                parse=p.status,
                completion=t,
                n_words=len(t.split()),
            )
        )
    m = compute_metrics("b", "iaa", preds, bootstrap=0)
    assert (m.n, m.n_valid, m.n_lenient) == (4, 3, 1)
