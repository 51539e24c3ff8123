"""SFT wrapper: thought dropout, task mixing, a real short trl SFT run with checkpoint resume, LoRA merge, and the
shared `sft_checkpoint` fixture (loss falls, greedy answers parse)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import SftConfig
from data_contracts.records import KeptRecord
from tatar_core.method.parsing import parse_answer
from tatar_core.method.prompts import make_target
from tatar_core.training.launch import last_complete_checkpoint
from tatar_core.training.sft import build_sft_rows, drops_thought, mixed_order, run_sft


def _kept(n_iqa: int, n_iaa: int) -> list[KeptRecord]:
    rows = []
    for task, n in (("iqa", n_iqa), ("iaa", n_iaa)):
        for i in range(n):
            rationale = f"A {task} rationale number {i} about sharpness and mood."
            score = float(i % 100)
            rows.append(
                KeptRecord(
                    sample_id=f"{task}/{i:05d}",
                    image_path="/nonexistent.png",
                    task=task,
                    score=score,
                    rationale=rationale,
                    target=make_target(rationale, score),
                    teacher="t",
                    n_words=len(rationale.split()),
                )
            )
    return rows


def _think(row) -> str:
    return parse_answer(row["completion"][0]["content"][0]["text"]).think


def test_thought_dropout_rate_matches_p():
    kept = _kept(3000, 0)
    rows, counts = build_sft_rows(kept, SftConfig(thought_dropout_iqa=0.3, seed=7))
    rate = counts["dropped_iqa"] / counts["rows_iqa"]
    assert abs(rate - 0.3) < 0.03
    empty = sum(_think(r) == "" for r in rows)
    assert empty == counts["dropped_iqa"]
    dropped = [r for r in rows if _think(r) == ""]
    assert dropped[0]["completion"][0]["content"][0]["text"].startswith("<think>\n</think>\n<answer>")
    # deterministic per row: same seed -> same rows dropped; other seed -> other rows
    again, _ = build_sft_rows(kept, SftConfig(thought_dropout_iqa=0.3, seed=7))
    assert [r["sample_id"] for r in again if _think(r) == ""] == [r["sample_id"] for r in dropped]
    other, _ = build_sft_rows(kept, SftConfig(thought_dropout_iqa=0.3, seed=8))
    assert {r["sample_id"] for r in other if _think(r) == ""} != {r["sample_id"] for r in dropped}


def test_no_dropout_at_p_zero_and_asymmetric_default():
    kept = _kept(400, 400)
    _, counts = build_sft_rows(kept, SftConfig(thought_dropout_iqa=0.0, thought_dropout_iaa=0.0))
    assert counts["dropped_iqa"] == counts["dropped_iaa"] == 0
    _, counts = build_sft_rows(kept, SftConfig())  # defaults: IQA 0.5, IAA 0
    assert counts["dropped_iaa"] == 0
    assert 0.4 < counts["dropped_iqa"] / counts["rows_iqa"] < 0.6
    assert drops_thought(0, "x", 1.0) and not drops_thought(0, "x", 0.0)


def test_mix_oversamples_the_smaller_task_until_all_exhausted():
    kept = _kept(60, 20)
    order = mixed_order(kept, SftConfig(iqa_fraction=0.5, seed=1))
    tasks = Counter(r.task for r in order)
    assert {r.sample_id for r in order} == {r.sample_id for r in kept}  # every row seen at least once
    assert tasks["iqa"] == 60 and tasks["iaa"] > 20  # IAA oversampled, IQA exhausted once
    assert order == mixed_order(kept, SftConfig(iqa_fraction=0.5, seed=1))
    assert order != mixed_order(kept, SftConfig(iqa_fraction=0.5, seed=2))
    # one task absent (or weight 0) -> just the other task
    assert Counter(r.task for r in mixed_order(_kept(10, 0), SftConfig())) == {"iqa": 10}
    assert Counter(r.task for r in mixed_order(kept, SftConfig(iqa_fraction=1.0))) == {"iqa": 60}
    with pytest.raises(ValueError, match="no training rows"):
        mixed_order(_kept(0, 5), SftConfig(iqa_fraction=1.0))


def test_sft_trains_and_resumes_from_last_checkpoint(tiny_model_dir, synthetic_kept, tmp_path):
    base = dict(
        learning_rate=3e-3,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        seed=0,
        trainer_args={"save_steps": 2, "logging_steps": 1, "save_total_limit": None},
    )
    lines, progress = [], []
    first = run_sft(
        synthetic_kept,
        tiny_model_dir,
        SftConfig(max_steps=4, **base),
        ModelConfig(),
        tmp_path,
        log=lines.append,
        progress=lambda *a, **kw: progress.append(a),
    )
    assert first["steps"] == 4 and first["resumed_from_step"] == 0
    # reported through the callback: a line per logging step, progress per optimizer step, curves at the end
    assert progress == [("sft", 0, 4), ("sft", 1, 4), ("sft", 2, 4), ("sft", 3, 4), ("sft", 4, 4)]
    assert [line.split(" · ")[0] for line in lines] == [f"[sft] step {k}/4" for k in (1, 2, 3, 4)]
    assert all(" · loss " in line and " · lr " in line and "token acc" in line for line in lines)
    assert "ETA" in lines[1] and "tok/s" in lines[1]
    assert {p.name for p in (tmp_path / "curves").iterdir()} == {"loss.png", "token_accuracy.png"}
    assert first["rows_iqa"] > 0 and first["rows_iaa"] > 0
    assert first["last_logged_loss"] < first["first_logged_loss"]
    assert last_complete_checkpoint(tmp_path / "checkpoints").name == "checkpoint-4"
    # an incomplete newer checkpoint is ignored
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir()
    second = run_sft(synthetic_kept, tiny_model_dir, SftConfig(max_steps=6, **base), ModelConfig(), tmp_path)
    assert second["resumed_from_step"] == 4 and second["steps"] == 6
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    logged_steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged_steps == [1, 2, 3, 4, 5, 6]  # history carried over from checkpoint-4, not restarted
    saved = json.loads((tmp_path / "log_history.json").read_text())  # the curves are drawn from the whole history
    assert [h["step"] for h in saved if "loss" in h] == [1, 2, 3, 4, 5, 6]
    from tatar_core.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(tmp_path / "model")
    assert hasattr(processor, "image_processor")


def test_cpu_loss_scores_only_labelled_positions_with_the_same_loss_and_weights(
    tiny_model_dir, synthetic_kept, tmp_path, monkeypatch
):
    """tatar_core.training.launch.score_label_positions_only: on CPU trl's fused LM head scores only the labelled
    positions; 3 SFT steps give the losses, gradient norms and weights of trl's own every-position scoring."""
    import trl.trainer.utils as trl_utils
    from safetensors.torch import load_file

    from tatar_core.training import launch

    cfg = SftConfig(
        learning_rate=3e-3,
        max_steps=3,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        seed=0,
        trainer_args={"save_steps": 1000, "logging_steps": 1},
    )
    trl_full = getattr(trl_utils._use_triton, "__wrapped__", trl_utils._use_triton)
    with monkeypatch.context() as m:  # trl as shipped: every position scored on CPU
        m.setattr(trl_utils, "_use_triton", trl_full)
        m.setattr(launch, "score_label_positions_only", lambda: None)
        run_sft(synthetic_kept, tiny_model_dir, cfg, ModelConfig(), tmp_path / "full")
        assert not trl_utils._use_triton(torch.device("cpu"))
    run_sft(synthetic_kept, tiny_model_dir, cfg, ModelConfig(), tmp_path / "compact")
    assert trl_utils._use_triton(torch.device("cpu")), "the CPU fused LM head still scores every position"
    history = {
        k: [h for h in json.loads((tmp_path / k / "log_history.json").read_text()) if "loss" in h]
        for k in ("full", "compact")
    }
    assert len(history["full"]) == 3
    for a, b in zip(history["full"], history["compact"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["grad_norm"] == pytest.approx(
            b["grad_norm"], rel=1e-4
        )
    full, compact = (load_file(tmp_path / k / "model" / "model.safetensors") for k in ("full", "compact"))
    # the weights move by up to 3 x lr = 9e-3; summation order differs between the two paths (measured 1.6e-6)
    assert all(torch.allclose(full[k], compact[k], rtol=1e-4, atol=1e-5) for k in full)


def test_lora_adapters_are_merged_into_the_saved_model(tiny_model_dir, synthetic_kept, tmp_path):
    from safetensors.torch import load_file

    cfg = SftConfig(
        max_steps=2,
        learning_rate=1e-2,
        per_device_train_batch_size=2,
        lora={"enabled": True, "r": 4, "alpha": 8},
        trainer_args={"save_steps": 100},
        seed=0,
    )
    run_sft(synthetic_kept[:8], tiny_model_dir, cfg, ModelConfig(), tmp_path)
    saved = load_file(tmp_path / "model" / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert not any("lora" in k for k in saved)
    assert set(saved) == set(base)
    changed = [k for k in saved if "q_proj" in k and not torch.equal(saved[k], base[k])]
    assert changed, "LoRA update not merged into the language model's q_proj"


def test_fixture_checkpoint_learned_the_answer_format(sft_checkpoint, synthetic_samples):
    from tatar_core.models.loading import generate, load_model_and_processor

    result = json.loads((sft_checkpoint.parent / "sft_result.json").read_text())
    assert result["steps"] == 120
    assert result["last_logged_loss"] < 0.5 * result["first_logged_loss"]
    model, processor = load_model_and_processor(sft_checkpoint)
    samples = synthetic_samples[:16]
    outs = generate(model, processor, [s.image_path for s in samples], [s.task for s in samples], max_new_tokens=256)
    parsed = [parse_answer(o) for o in outs]
    assert sum(p.status == "strict" for p in parsed) >= 12, outs
    iaa_words = [len(o.split()) for o, s in zip(outs, samples) if s.task == "iaa"]
    iqa_words = [len(o.split()) for o, s in zip(outs, samples) if s.task == "iqa"]
    assert min(iaa_words) > max(iqa_words)  # slow (long) IAA, fast (short) IQA
