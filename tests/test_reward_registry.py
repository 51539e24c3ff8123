"""The reward registry: a new reward is one function plus one `register_reward` line. Its weight is configurable per
task, it reaches trl's reward_funcs / reward_weights, the GRPO log line, train_log.parquet and the reward curves,
and an unregistered name in the config fails before any stage runs; the paper's probes are weight overrides."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from data_contracts.config import load_config
from data_contracts.config.training import GrpoConfig
from data_contracts.errors import ConfigError
from data_contracts.parquet_io import read_records
from data_contracts.records import TrainLogRecord
from tatar_core.method.parsing import count_words
from tatar_core.method.rewards import (
    REWARDS,
    RewardStats,
    completion_text,
    effective_weights,
    make_reward_funcs,
    register_reward,
)


# ------------------------------------------------------------------ what a user writes (docs/development.md)
def length_reward(completions, **kw) -> list[float]:
    """r = max(0, 1 − |words − 100| / 100): IAA narratives of about 100 words."""
    return [max(0.0, 1.0 - abs(count_words(completion_text(c)) - 100) / 100) for c in completions]


@pytest.fixture
def length():
    register_reward("length", length_reward, iqa=0.0, iaa=0.5)
    yield REWARDS["length"]
    del REWARDS["length"]


# ------------------------------------------------------------------
def _step(n_words_iaa: int = 80):
    """One step's columns as trl passes them: 2 IQA and 2 IAA images, 2 completions each."""
    cols = {"completions": [], "task": [], "score": [], "sample_id": []}
    for task, sid, gt, preds in (
        ("iqa", "q0", 20.0, (22.0, 30.0)),
        ("iqa", "q1", 80.0, (78.0, 60.0)),
        ("iaa", "a0", 30.0, (33.0, 25.0)),
        ("iaa", "a1", 60.0, (58.0, 66.0)),
    ):
        for p in preds:
            think = "slight blur" if task == "iqa" else " ".join(["balance"] * n_words_iaa)
            text = f"<think>{think}</think><answer>{p}</answer>"
            cols["completions"].append([{"role": "assistant", "content": text}])
            cols["task"].append(task)
            cols["score"].append(gt)
            cols["sample_id"].append(sid)
    n = len(cols["task"])
    return cols | dict(prompts=[None] * n, completion_ids=[[1]] * n, trainer_state=None)


def test_a_registered_reward_is_weighted_per_task_and_reaches_trl(length, tmp_path):
    from tatar_core.training.grpo import BatchPlan, grpo_args

    assert effective_weights(GrpoConfig())["iaa"]["length"] == 0.5  # its registered default
    cfg = load_config("configs/demo.yaml", {"grpo.rewards_iqa.length": 0.25}).grpo  # a config override
    w = effective_weights(cfg)
    assert (w["iqa"]["length"], w["iaa"]["length"]) == (0.25, 0.5)
    assert (w["iqa"]["score"], w["iqa"]["rank"], w["iqa"]["format"]) == (1.0, 0.0, 1.0)  # the others as before
    funcs = make_reward_funcs(cfg)
    assert [f.__name__ for f in funcs] == ["score", "format", "length", "rank"]  # the collective rank stays last
    cols = _step()
    got = funcs[2](**cols)
    raw = length_reward(cols["completions"])
    assert got == [(0.25 if t == "iqa" else 0.5) * r for t, r in zip(cols["task"], raw)]
    assert raw[-1] == pytest.approx(0.8)  # 80 words
    args = grpo_args(cfg, BatchPlan(1, 8, 4, 32, 1), steps=1, out_dir=tmp_path)  # what GRPOTrainer gets
    assert args.reward_weights == [1.0] * len(funcs)


def test_unregistered_reward_names_fail_before_any_stage(tmp_path):
    from tatar_core.pipeline.runner import Pipeline

    cfg = load_config("configs/demo.yaml", {"grpo.rewards_iaa.length": 0.5, "run_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="grpo.rewards_iaa: unknown reward.*'length'.*registered: score, rank, fo"):
        Pipeline(cfg, log=lambda _: None)
    register_reward("length", length_reward, iqa=0.0, iaa=0.5)
    try:
        Pipeline(cfg, log=lambda _: None)  # known once registered
    finally:
        del REWARDS["length"]
    with pytest.raises(ValueError):
        load_config("configs/demo.yaml", {"grpo.rewards_iaa.rank": -1.0})  # weights are >= 0


def test_a_registered_reward_reaches_the_log_line_train_log_and_curve(length, tmp_path, monkeypatch):
    from tatar_core.training import curves
    from tatar_core.training.callbacks import grpo_line
    from tatar_core.training.grpo import TRAIN_LOG, _log_callback

    stats = RewardStats()
    callback, history = _log_callback(stats, None, tmp_path, is_main=True, keep_until_step=0)
    for step in (1, 2):
        for f in make_reward_funcs(GrpoConfig(), stats=stats):
            f(**_step(n_words_iaa=60 + 20 * step))
        logs = {"loss": 0.1}
        callback.on_log(None, SimpleNamespace(global_step=step, log_history=[]), None, logs=logs)
    assert logs["iaa/reward_length"] == pytest.approx(0.5)  # 100 words, weight 0.5
    line = grpo_line(2, 2, logs, None)
    assert line.count(" length ") == 2 and "length 0.5)" in line.split("| iaa")[1]

    rows = read_records(tmp_path / TRAIN_LOG, TrainLogRecord)
    iaa = [r for r in rows if r.task == "iaa"]
    assert [r.reward_length for r in iaa] == pytest.approx([0.5 * 0.8, 0.5 * 1.0])
    for r in rows:
        assert r.reward_total == pytest.approx(sum(r.rewards().values()))
        assert list(r.rewards()) == ["score", "rank", "format", "length"]

    drawn = {}
    monkeypatch.setattr(
        curves,
        "_save",
        lambda fig, path: drawn.setdefault(path.name, [line.get_label() for line in fig.axes[0].get_lines()]),
    )
    curves.grpo_curves([], rows, tmp_path)
    assert drawn["reward_iaa.png"] == ["total", "score", "rank", "format", "length"]


@pytest.mark.parametrize(
    "overrides, iqa, iaa",
    [
        ({}, (1, 0, 1), (1, 1, 1)),  # TATAR: IQA score + format, IAA score + rank + format
        ({"grpo.rewards_iaa.rank": 0}, (1, 0, 1), (1, 0, 1)),  # IAA Gaussian-only
        ({"grpo.ablation": "pointwise_iaa"}, (1, 0, 1), (1, 0, 1)),  # the same through the ablation switch
        ({"grpo.rewards_iaa.score": 0}, (1, 0, 1), (0, 1, 1)),  # IAA rank-only
        (
            {"grpo.rewards_iqa.score": 0, "grpo.rewards_iqa.rank": 1, "grpo.rewards_iaa.score": 0},
            (0, 1, 1),
            (0, 1, 1),
        ),  # Table 2: the rank-only reward for both tasks
        ({"grpo.ablation": "rank_only"}, (0, 1, 1), (0, 1, 1)),  # the same through the ablation switch
    ],
)
def test_paper_probes_are_weight_overrides(overrides, iqa, iaa):
    w = effective_weights(load_config("configs/demo.yaml", overrides).grpo)
    assert tuple(w["iqa"][k] for k in ("score", "rank", "format")) == iqa
    assert tuple(w["iaa"][k] for k in ("score", "rank", "format")) == iaa


@pytest.mark.slow
def test_a_registered_reward_trains_in_trl(length, sft_checkpoint, synthetic_samples, tmp_path):
    """One real in-process GRPO step: trl calls the reward (its own log has rewards/length/mean) and the stage's
    train log, result and curves carry it."""
    import json

    from data_contracts.config.model import ModelConfig
    from tatar_core.training.grpo import run_grpo

    cfg = GrpoConfig(
        num_generations=4,
        prompts_per_step=4,
        min_iaa_images_per_step=2,
        max_completion_length=64,
        max_steps=1,
        seed=0,
        rewards_iqa={"length": 1.0},
        trainer_args={"logging_steps": 1, "save_steps": 100},
    )
    result = run_grpo(synthetic_samples, sft_checkpoint, cfg, ModelConfig(), tmp_path, log=lambda _: None)
    history = json.loads((tmp_path / "log_history.json").read_text())
    assert any("rewards/length/mean" in h for h in history)  # trl called it, under its registry name
    assert "reward_length" in result["rewards_last"]["iqa"]
    rows = read_records(tmp_path / "train_log.parquet", TrainLogRecord)
    assert {r.task for r in rows} == {"iqa", "iaa"} and all("length" in r.rewards() for r in rows)
    assert (tmp_path / "curves" / "reward_iqa.png").exists()
