"""make_reward_funcs: trl-compatible callables, per-task weights, ablations, RewardStats."""

import pytest

from data_contracts.config.rewards import RewardWeights
from data_contracts.config.training import GrpoConfig
from tatar_core.method.rewards import RewardStats, effective_weights, make_reward_funcs, rank_reward, score_reward

IAA_THINK = " ".join(["composition"] * 130)


def batch():
    """Conversational completions of a step: 2 IQA images and 3 IAA images, 2 completions each, one unparsable."""
    rows = [
        ("iqa", "q0", 20.0, [22.0, 30.0]),
        ("iqa", "q1", 80.0, [78.0, 60.0]),
        ("iaa", "a0", 30.0, [33.0, 25.0]),
        ("iaa", "a1", 60.0, [58.0, 66.0]),
        ("iaa", "a2", 85.0, [90.0, None]),
    ]
    cols = {"completions": [], "task": [], "score": [], "sample_id": []}
    for task, sid, gt, preds in rows:
        for p in preds:
            think = "slight blur" if task == "iqa" else IAA_THINK
            text = f"<think>{think}</think><answer>{p:.2f}</answer>" if p is not None else f"<think>{think}</think>"
            cols["completions"].append([{"role": "assistant", "content": [{"type": "text", "text": text}]}])
            cols["task"].append(task)
            cols["score"].append(gt)
            cols["sample_id"].append(sid)
    n = len(cols["task"])
    # what trl passes besides the dataset columns
    extra = dict(
        prompts=[[{"role": "user", "content": "x"}]] * n,
        completion_ids=[[1, 2]] * n,
        trainer_state=None,
        log_extra=lambda *a: None,
        log_metric=lambda *a: None,
        images=[[None]] * n,
    )
    return cols, extra


def call_all(cfg, stats=None):
    cols, extra = batch()
    funcs = make_reward_funcs(cfg, stats=stats)
    out = {f.__name__: f(**cols, **extra) for f in funcs}
    return cols, out


def nonzero(out, cols, name, task):
    return any(v != 0 for v, t in zip(out[name], cols["task"]) if t == task)


def test_names_and_default_composition():
    cols, out = call_all(GrpoConfig())
    assert list(out) == ["score", "format", "rank"]  # trl calls them in this order: the gather comes last
    assert all(len(v) == len(cols["task"]) for v in out.values())
    assert nonzero(out, cols, "score", "iqa") and nonzero(out, cols, "format", "iqa")
    assert not nonzero(out, cols, "rank", "iqa")  # IQA: score + format
    assert all(nonzero(out, cols, k, "iaa") for k in ("score", "rank", "format"))  # IAA: score + rank + format
    # the unweighted functions give the same values at weight 1
    assert out["score"] == score_reward(cols["completions"], cols["task"], cols["score"])
    raw_rank = rank_reward(cols["completions"], cols["task"], cols["score"], cols["sample_id"])
    assert out["rank"] == raw_rank
    assert out["format"][-1] == 0.0 and out["rank"][-1] == 0.0 and out["score"][-1] == 0.0


def test_weights_scale_each_reward_per_task():
    base_cols, base = call_all(GrpoConfig())
    cfg = GrpoConfig(rewards_iaa=RewardWeights(score=2.0, rank=0.5, format=0.0))
    _, out = call_all(cfg)
    for i, t in enumerate(base_cols["task"]):
        if t == "iaa":
            assert out["score"][i] == pytest.approx(2.0 * base["score"][i])
            assert out["rank"][i] == pytest.approx(0.5 * base["rank"][i])
            assert out["format"][i] == 0.0
        else:
            assert (out["score"][i], out["rank"][i], out["format"][i]) == (
                base["score"][i],
                base["rank"][i],
                base["format"][i],
            )


def test_rank_only_ablation_ranks_both_tasks_within_task():
    cols, out = call_all(GrpoConfig(ablation="rank_only"))
    assert not nonzero(out, cols, "score", "iqa") and not nonzero(out, cols, "score", "iaa")
    assert nonzero(out, cols, "rank", "iqa") and nonzero(out, cols, "rank", "iaa")
    # IQA is ranked across IQA images only, IAA across IAA images only
    iqa = [i for i, t in enumerate(cols["task"]) if t == "iqa"]
    only_iqa = rank_reward(
        *[[cols[k][i] for i in iqa] for k in ("completions", "task", "score", "sample_id")], tasks=("iqa",)
    )
    assert [out["rank"][i] for i in iqa] == pytest.approx(only_iqa, abs=1e-15)
    assert effective_weights(GrpoConfig(ablation="rank_only"))["iqa"]["rank"] == 1.0
    w = effective_weights(GrpoConfig(ablation="rank_only", rewards_iqa=RewardWeights(score=1, rank=0.3, format=1)))
    assert w["iqa"] == {"score": 0.0, "rank": 0.3, "format": 1.0}


def test_pointwise_iaa_ablation_drops_iaa_rank():
    cols, out = call_all(GrpoConfig(ablation="pointwise_iaa"))
    assert not nonzero(out, cols, "rank", "iaa") and not nonzero(out, cols, "rank", "iqa")
    assert nonzero(out, cols, "score", "iaa") and nonzero(out, cols, "score", "iqa")
    assert nonzero(out, cols, "format", "iaa")


def test_no_rank_weight_means_no_gather():
    cfg = GrpoConfig(ablation="pointwise_iaa")
    cols, extra = batch()
    rank_fn = make_reward_funcs(cfg, gather=lambda items: 1 / 0)[2]
    assert rank_fn(**cols, **extra) == [0.0] * len(cols["task"])


def test_stats_summary_and_reset():
    stats = RewardStats()
    cols, out = call_all(GrpoConfig(), stats)
    s = stats.summary()
    assert set(s) == {"iqa", "iaa"}
    keys = {"n", "reward_score", "reward_rank", "reward_format", "reward_total", "words", "parse_rate"}
    assert all(set(v) == keys for v in s.values())
    assert s["iqa"]["n"] == 4 and s["iaa"]["n"] == 6
    assert s["iaa"]["parse_rate"] == pytest.approx(5 / 6) and s["iqa"]["parse_rate"] == 1.0
    assert s["iqa"]["words"] == 2.0  # "<think>slight blur</think><answer>22.00</answer>": whitespace tokens
    assert s["iaa"]["words"] == 130.0
    for t in ("iqa", "iaa"):
        idx = [i for i, x in enumerate(cols["task"]) if x == t]
        for k in ("score", "rank", "format"):
            assert s[t][f"reward_{k}"] == pytest.approx(sum(out[k][i] for i in idx) / len(idx))
        total = sum(out[k][i] for k in out for i in idx) / len(idx)
        assert s[t]["reward_total"] == pytest.approx(total)
    assert s["iqa"]["reward_rank"] == 0.0
    stats.reset()
    assert stats.summary() == {}
