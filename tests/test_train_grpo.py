"""GRPO wrapper: batch settings and step composition (pure), a real 2-step in-process trl GRPO run with
train_log.parquet and resume, and (slow) a 2-process `accelerate launch` run whose rank reward sees the IAA
images of both processes."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import GrpoConfig, LaunchConfig
from data_contracts.parquet_io import read_records
from data_contracts.records import SampleRecord, TrainLogRecord
from tatar_core.training.grpo import batch_plan, iaa_per_step, plan_order, run_grpo, select_train, total_steps


def _samples(n_iqa: int, n_iaa: int) -> list[SampleRecord]:
    return [
        SampleRecord(
            sample_id=f"{t}/{i:04d}",
            image_path="/x.png",
            task=t,
            score=float(i % 100),
            split="train",
            source="s",
            ref_id=f"r{i}",
        )
        for t, n in (("iqa", n_iqa), ("iaa", n_iaa))
        for i in range(n)
    ]


def test_batch_plan_realizes_prompts_per_step():
    cfg = GrpoConfig(num_generations=8, prompts_per_step=16, min_iaa_images_per_step=4)
    p = batch_plan(cfg, num_processes=8)
    assert p.per_device_train_batch_size * 8 * p.gradient_accumulation_steps == 16 * 8
    assert p.per_device_train_batch_size == 16
    cfg2 = GrpoConfig(num_generations=8, prompts_per_step=16, gradient_accumulation_steps=2)
    assert batch_plan(cfg2, 8).per_device_train_batch_size == 8  # the reference run: 1 prompt x 8 per GPU, GA 2
    with pytest.raises(ValueError, match="not divisible"):
        batch_plan(GrpoConfig(num_generations=3, prompts_per_step=3, min_iaa_images_per_step=2), 2)
    with pytest.raises(ValueError, match="per_device_train_batch_size=4"):
        batch_plan(
            GrpoConfig(
                num_generations=4, prompts_per_step=4, min_iaa_images_per_step=2, per_device_train_batch_size=4
            ),
            1,
        )


@pytest.mark.parametrize(
    "n_iqa,n_iaa,P,min_iaa,procs", [(400, 60, 8, 4, 2), (10, 10, 4, 2, 2), (50, 6, 16, 4, 4), (0, 12, 6, 2, 3)]
)
def test_every_step_holds_distinct_prompts_and_enough_iaa_on_every_process(n_iqa, n_iaa, P, min_iaa, procs):
    cfg = GrpoConfig(num_generations=2, prompts_per_step=P, min_iaa_images_per_step=min_iaa, seed=3)
    data = _samples(n_iqa, n_iaa)
    steps = total_steps(cfg.model_copy(update={"num_train_epochs": 2.0}), len(data))
    order = plan_order(data, cfg, steps)
    assert len(order) == steps * P
    k = iaa_per_step(cfg, n_iqa, n_iaa)
    assert k >= min(min_iaa, n_iaa) and (n_iqa > 0 or k == P)
    per_proc = P // procs
    for s in range(steps):
        block = order[s * P : (s + 1) * P]
        assert len({r.sample_id for r in block}) == P  # distinct images per step
        assert sum(r.task == "iaa" for r in block) == k
        if k >= procs:  # IAA images spread so every process holds some
            for j in range(procs):
                assert any(r.task == "iaa" for r in block[j * per_proc : (j + 1) * per_proc])
    seen = Counter(r.sample_id for r in order)
    assert len(seen) == len(data)  # every image used
    assert order == plan_order(data, cfg, steps)  # deterministic


def test_iqa_only_and_unsatisfiable_iaa():
    cfg = GrpoConfig(num_generations=2, prompts_per_step=4, min_iaa_images_per_step=4)
    assert all(r.task == "iqa" for r in plan_order(_samples(10, 0), cfg, 3))
    with pytest.raises(ValueError, match="only 3"):
        plan_order(_samples(10, 3), cfg, 3)
    with pytest.raises(ValueError, match="prompts_per_step"):
        GrpoConfig(prompts_per_step=2, min_iaa_images_per_step=4)


def test_select_train_caps_samples_and_keeps_iaa():
    data = _samples(90, 10) + [
        SampleRecord(sample_id="t/1", image_path="/x.png", task="iqa", score=1.0, split="test", source="s", ref_id="r")
    ]
    cfg = GrpoConfig(max_train_samples=20, min_iaa_images_per_step=4)
    sel = select_train(data, cfg)
    assert len(sel) == 20 and all(r.split == "train" for r in sel)
    assert Counter(r.task for r in sel)["iaa"] == 4  # round(20*0.1)=2, raised to min_iaa_images_per_step
    assert select_train(data, cfg) == sel
    assert len(select_train(data, GrpoConfig())) == 100


def _small_cfg(**kw) -> GrpoConfig:
    base = dict(
        num_generations=4,
        prompts_per_step=4,
        min_iaa_images_per_step=2,
        max_completion_length=160,
        learning_rate=1e-4,
        beta=0.001,
        seed=0,
        trainer_args={"logging_steps": 1, "save_steps": 1, "save_total_limit": None},
    )
    args = base["trainer_args"] | kw.pop("trainer_args", {})
    return GrpoConfig(**{**base, **kw, "trainer_args": args})


def test_grpo_in_process_logs_both_tasks_and_resumes(sft_checkpoint, synthetic_samples, tmp_path):
    lines, progress = [], []
    first = run_grpo(
        synthetic_samples,
        sft_checkpoint,
        _small_cfg(max_steps=2),
        ModelConfig(),
        tmp_path,
        log=lines.append,
        progress=lambda *a, **kw: progress.append(a),
    )
    assert first["steps"] == 2 and first["resumed_from_step"] == 0
    assert progress[0] == ("grpo", 0, 2) and progress[-1] == ("grpo", 2, 2)
    assert [line.split(" · ")[0] for line in lines] == ["[grpo] step 1/2", "[grpo] step 2/2"]
    for line in lines:  # reward per component and task, words, parse rate, KL
        assert "kl " in line and " iqa reward " in line and " iaa reward " in line
        assert line.count("(score ") == 2 and line.count(" words ") == 2 and line.count(" parse ") == 2
    assert {p.name for p in (tmp_path / "curves").iterdir()} == {
        "reward_iqa.png",
        "reward_iaa.png",
        "words.png",
        "parse_rate.png",
        "group_std.png",
        "zero_std.png",
        "kl.png",
    }
    assert first["per_device_train_batch_size"] == 16 and first["iaa_images_per_step"] == 2
    assert set(first["rewards_last"]) == {"iqa", "iaa"}
    log = read_records(tmp_path / "train_log.parquet", TrainLogRecord)
    assert sorted((r.step, r.task) for r in log) == [(1, "iaa"), (1, "iqa"), (2, "iaa"), (2, "iqa")]
    for r in log:
        assert r.n == 8  # 2 images x G=4 per task per step
        assert r.reward_total == pytest.approx(r.reward_score + r.reward_rank + r.reward_format)
        assert 0.0 <= r.parse_rate <= 1.0 and r.words > 0
        if r.task == "iqa":
            assert r.reward_rank == 0.0  # IQA gets no rank reward by default
        # group statistics: 2 groups of G=4 per task; A = (r - mean) / (std + 1e-4) has variance 3/4 per group
        assert r.groups == 2 and r.zero_std_frac in (0.0, 0.5, 1.0) and r.group_std >= 0
        assert r.adv_var <= 0.75 * (1 - r.zero_std_frac) + 1e-6 and r.adv_var >= 0
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    trl_zero = [h for h in state["log_history"] if "frac_reward_zero_std" in h]  # trl's own count, both tasks
    assert len(trl_zero) == 2
    for h in trl_zero:
        rows = [r for r in log if r.step == h["step"]]
        assert sum(r.zero_std_frac * r.groups for r in rows) / sum(r.groups for r in rows) == pytest.approx(
            h["frac_reward_zero_std"]
        )
    assert any("iaa/reward_total" in h for h in state["log_history"])  # per-task stats in the trainer logs
    # every rank-reward call saw both IAA images of the step
    calls = [json.loads(line) for line in (tmp_path / "gather_log" / "process-0.jsonl").read_text().splitlines()]
    assert calls and all(sum(t == "iaa" for _, t in c["gathered"][0]) == 2 for c in calls)

    second = run_grpo(synthetic_samples, sft_checkpoint, _small_cfg(max_steps=3), ModelConfig(), tmp_path)
    assert second["resumed_from_step"] == 2 and second["steps"] == 3
    steps = pl.read_parquet(tmp_path / "train_log.parquet")["step"].to_list()
    assert sorted(set(steps)) == [1, 2, 3] and len(steps) == 6
    from tatar_core.models.loading import load_model_and_processor

    load_model_and_processor(tmp_path / "model")


@pytest.mark.slow
def test_accelerate_two_processes_rank_across_processes(sft_checkpoint, synthetic_samples, tmp_path):
    cfg = _small_cfg(
        max_steps=2,
        trainer_args={"save_steps": 100},
        launch=LaunchConfig(mode="accelerate", num_processes=2, cpu=True),
    )
    result = run_grpo(synthetic_samples, sft_checkpoint, cfg, ModelConfig(), tmp_path)
    assert result["num_processes"] == 2 and result["steps"] == 2
    assert result["per_device_train_batch_size"] == 8
    logs = {
        k: [json.loads(x) for x in (tmp_path / "gather_log" / f"process-{k}.jsonl").read_text().splitlines()]
        for k in (0, 1)
    }
    assert len(logs[0]) == len(logs[1]) >= 2
    for k, other in ((0, 1), (1, 0)):
        for mine, theirs in zip(logs[k], logs[other]):
            local_iaa = {s for s, t in mine["local"] if t == "iaa"}
            other_iaa = {s for s, t in theirs["local"] if t == "iaa"}
            gathered_iaa = {s for part in mine["gathered"] for s, t in part if t == "iaa"}
            assert local_iaa and other_iaa, "IAA images on both processes"
            assert other_iaa - local_iaa, "the other process held IAA images this one did not"
            assert (other_iaa - local_iaa) <= gathered_iaa  # ... and this process's rank reward saw them
            assert len(gathered_iaa) >= 2
    log = read_records(tmp_path / "train_log.parquet", TrainLogRecord)
    assert {r.task for r in log} == {"iqa", "iaa"}
    assert all(r.n == 8 for r in log)  # summaries combined over both processes (4 local completions each)
    assert (tmp_path / "model" / "model.safetensors").exists()
