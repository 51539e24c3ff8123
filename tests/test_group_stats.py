"""GRPO group statistics (tatar_core.training.group_stats): trl's group-normalised advantages, per task."""

import math

import pytest

from tatar_core.training.group_stats import GroupStats, group_rows, scale_mode


def test_group_rows_mirror_trl_group_scaling():
    tasks = ["iqa"] * 4 + ["iaa"] * 4 + ["iaa"] * 4
    ids = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    rewards = [1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 1.0, 1.0]
    rows = group_rows(tasks, ids, rewards)
    std_a = math.sqrt(sum((x - 2.5) ** 2 for x in (1, 2, 3, 4)) / 3)  # Bessel, as trl's nanstd
    assert rows["iqa"]["std"] == [pytest.approx(std_a)] and rows["iqa"]["zero"] == [0.0]
    adv = [(x - 2.5) / (std_a + 1e-4) for x in (1, 2, 3, 4)]
    assert rows["iqa"]["adv_sq"] == pytest.approx([a * a for a in adv])
    assert rows["iaa"]["zero"] == [1.0, 0.0] and rows["iaa"]["adv_sq"][:4] == [0.0] * 4
    assert sum(rows["iqa"]["adv_sq"]) / 4 == pytest.approx(0.75, rel=1e-3)  # (G-1)/G
    none = group_rows(tasks, ids, rewards, "none")
    assert none["iqa"]["adv_sq"] == pytest.approx([2.25, 0.25, 0.25, 2.25])
    assert scale_mode({}) == "group" and scale_mode({"scale_rewards": False}) == "none"


def test_wrap_keeps_names_and_outputs_and_groups_the_sum():
    def score(completions, task, sample_id, **kw):
        return [1.0 if c == "good" else 0.0 for c in completions]

    def fmt(completions, task, sample_id, **kw):
        return [1.0] * len(completions)

    g = GroupStats()
    wrapped = g.wrap([score, fmt])
    assert [f.__name__ for f in wrapped] == ["score", "fmt"]
    kw = dict(completions=["good", "bad", "bad", "bad"], task=["iaa"] * 4, sample_id=["x"] * 4)
    assert wrapped[0](**kw) == [1.0, 0.0, 0.0, 0.0] and wrapped[1](**kw) == [1.0] * 4
    kw2 = dict(completions=["bad"] * 4, task=["iqa"] * 4, sample_id=["y"] * 4)
    wrapped[0](**kw2), wrapped[1](**kw2)
    s = g.summary()
    assert s["iaa"]["zero_std_frac"] == 0.0 and s["iaa"]["group_std"] == pytest.approx(0.5)
    assert s["iaa"]["adv_var"] == pytest.approx(0.75, rel=1e-3) and s["iaa"]["groups"] == 1
    assert s["iqa"]["zero_std_frac"] == 1.0 and s["iqa"]["adv_var"] == 0.0
    g.reset()
    assert g.summary() == {}
