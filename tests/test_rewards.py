"""Score and format rewards (TATAR paper, arXiv 2603.19779, and its reference code): table values, gates,
monotonicity, bounds, parsing cases."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.config.rewards import RankRewardConfig, ScoreRewardConfig
from tatar_core.method.parsing import count_words
from tatar_core.method.rewards import completion_text, format_reward, gaussian_score, rank_reward, score_reward

D = [0, 2, 5, 8.75, 10, 15, 20, 30]
TABLE = {
    "iqa": [1, 0.966, 0.811, 0.546, 0.460, 0.197, 0.068, 0.005],
    "iaa": [1, 1, 1, 0.908, 0.800, 0.449, 0.236, 0.062],
}


def answer(pred, words: int = 0) -> str:
    think = " ".join(["word"] * words)
    return f"<think>{think}</think><answer>{pred:.2f}</answer>" if words else f"<answer>{pred:.2f}</answer>"


def fits(task: str) -> int:
    """A think length inside the default gates: short for IQA, long for IAA."""
    return 30 if task == "iqa" else 140


@pytest.mark.parametrize("task", ["iqa", "iaa"])
def test_gaussian_table(task):
    # through the full reward (text, parsing, gates), prediction above and below the ground truth
    for d, want in zip(D, TABLE[task]):
        for gt, pred in ((50.0, 50.0 + d), (50.0, 50.0 - d)):
            (r,) = score_reward([answer(pred, fits(task))], [task], [gt])
            assert round(r, 3) == pytest.approx(want, abs=1e-9), (task, d, r)


def test_half_at_threshold_without_adaptive_sigma():
    cfg = ScoreRewardConfig(alpha_iqa=0.0)
    assert gaussian_score(8.75, "iqa", cfg) == pytest.approx(0.5)
    assert gaussian_score(8.75, "iqa") == pytest.approx(0.546, abs=5e-4)  # §10.11: adaptive σ gives 0.546


def test_length_gates():
    iqa_ok, iqa_long = answer(60, 65), answer(60, 66)
    iaa_short, iaa_ok = answer(60, 124), answer(60, 125)
    assert [count_words(x) for x in (iqa_ok, iqa_long, iaa_short, iaa_ok)] == [65, 66, 124, 125]
    assert score_reward([iqa_ok, iqa_long], ["iqa", "iqa"], [60, 60]) == [1.0, 0.0]
    assert score_reward([iaa_short, iaa_ok], ["iaa", "iaa"], [60, 60]) == [0.0, 1.0]
    off = ScoreRewardConfig(iqa_max_words=None, iaa_min_words=None)
    assert score_reward([iqa_long, answer(60)], ["iqa", "iaa"], [60, 60], off) == [1.0, 1.0]
    # the gate counts the whole completion, not only the think block
    spaced = "<think> " + " ".join(["w"] * 9) + " </think> <answer> 60.00 </answer>"  # 9 think words, 14 in all
    assert count_words(spaced) == 14
    assert score_reward([spaced], ["iqa"], [60], ScoreRewardConfig(iqa_max_words=12)) == [0.0]
    assert score_reward([spaced], ["iqa"], [60], ScoreRewardConfig(iqa_max_words=14)) == [1.0]


def test_unparsable_and_missing_gt_give_zero():
    bad = ["<answer>73.42 points</answer>", "no tags 73", "<think>cut off at 73", ""]
    assert score_reward(bad, ["iqa"] * len(bad), [73.42] * len(bad)) == [0.0] * len(bad)
    # malformed around the first answer block: the reference rule (default) reads it, the strict one does not
    loose = ["<answer>70</answer><answer>70</answer>", "<answer>70</answer><think>x</think>"]
    assert all(r > 0 for r in score_reward(loose, ["iqa"] * 2, [73.42] * 2))
    assert score_reward(loose, ["iqa"] * 2, [73.42] * 2, ScoreRewardConfig(parse="strict")) == [0.0, 0.0]
    assert score_reward([answer(50), answer(50)], ["iqa", "iqa"], [None, math.nan]) == [0.0, 0.0]


def test_clamping_to_0_100():
    # a prediction of 130 against gt 100 is d = 0 after clamping; gt above 100 is clamped too
    assert score_reward([answer(130), answer(100)], ["iqa", "iqa"], [100, 150]) == [1.0, 1.0]
    assert score_reward([answer(-20)], ["iqa"], [0]) == [1.0]


def test_completion_shapes():
    text = answer(42)
    conv = [{"role": "assistant", "content": text}]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    assert completion_text(conv) == completion_text(parts) == completion_text(text) == text
    assert score_reward([text, conv, parts], ["iqa"] * 3, [42] * 3) == [1.0, 1.0, 1.0]
    assert format_reward([text, conv, parts]) == [1.0, 1.0, 1.0]


def test_bad_columns_raise():
    with pytest.raises(ValueError, match="row 1: task"):
        score_reward([answer(1), answer(1)], ["iqa", "IQA"], [1, 1])
    with pytest.raises(ValueError, match="column 'score' has 1 values for 2"):
        score_reward([answer(1), answer(1)], ["iqa", "iqa"], [1])


@pytest.mark.parametrize(
    "text,want",
    [
        ("<think>sharp, little noise</think><answer>71.25</answer>", 1.0),  # good
        ("<answer>71.25</answer>", 1.0),  # think is optional
        ("<think>x</think>\n<answer> ```71.25``` </answer>\n", 1.0),  # fenced number, whitespace
        ("<think>sharp, little noise</think> 71.25", 0.0),  # missing answer
        ("<think>x</think><answer>71</answer><answer>72</answer>", 0.0),  # two answers
        ("<think>x</think><answer>about 71</answer>", 0.0),  # text in answer
        ("<answer>71 72</answer>", 0.0),  # two numbers
        ("<answer>71.25</answer><think>x</think>", 0.0),  # think after answer
        ("<think>a</think><think>b</think><answer>71</answer>", 0.0),  # two thinks
        ("Sure! <think>x</think><answer>71</answer>", 0.0),  # text outside the tags
    ],
)
def test_format_reward_cases(text, want):
    assert format_reward([text]) == [want]


completion_texts = st.one_of(
    st.text(max_size=300),
    st.builds(lambda x, w: answer(x, w), st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 200)),
    st.builds(lambda s: f"<think>{s}</think><answer>{s}</answer>", st.text(max_size=50)),
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(completion_texts, st.sampled_from(["iqa", "iaa"]), st.floats(-50, 150), st.sampled_from("abcd")),
        min_size=1,
        max_size=12,
    )
)
def test_all_rewards_bounded(rows):
    texts, tasks, gts, sids = map(list, zip(*rows))
    by_sid = {}  # one ground truth per image, as in a real step
    gts = [by_sid.setdefault((t, s), g) for t, s, g in zip(tasks, sids, gts)]
    results = [
        score_reward(texts, tasks, gts),
        format_reward(texts),
        rank_reward(texts, tasks, gts, sids),
        rank_reward(texts, tasks, gts, sids, tasks=("iqa", "iaa")),
        rank_reward(texts, tasks, gts, sids, RankRewardConfig(variant="sibling")),
    ]
    for r in results:
        assert len(r) == len(texts)
        assert all(0.0 <= x <= 1.0 and not math.isnan(x) for x in r)


@settings(max_examples=150, deadline=None)
@given(
    task=st.sampled_from(["iqa", "iaa"]),
    gt=st.floats(0, 100),
    e1=st.floats(-100, 100),
    e2=st.floats(-100, 100),
)
def test_score_decreases_with_error(task, gt, e1, e2):
    p1, p2 = min(100, max(0, gt + e1)), min(100, max(0, gt + e2))
    p1, p2 = round(p1, 2), round(p2, 2)  # the answer carries two decimals
    (r1, r2) = score_reward([answer(p1, fits(task)), answer(p2, fits(task))], [task, task], [gt, gt])
    if abs(p1 - gt) <= abs(p2 - gt):
        assert r1 >= r2
    else:
        assert r1 <= r2
    assert r1 > 0 and r2 >= 0
