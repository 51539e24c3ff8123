"""Training precision (fp32 master weights under bf16 training; pure 16-bit refused), the order arguments -> model
(ZeRO-3 loading), LoRA on the language model only, and GRPO with LoRA saving a merged model."""

from __future__ import annotations

import pytest
import torch

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import GrpoConfig, LoraSection, SftConfig


def test_bf16_training_keeps_fp32_master_weights(tiny_model_dir, synthetic_kept, tmp_path):
    """model.dtype bfloat16 + sft.bf16: one step at lr 1e-6 changes weights by ~1e-6, which only fp32 holds (in bf16
    a weight of 1.0 moves in steps of 2^-7, so the update would round away)."""
    from safetensors.torch import load_file

    from tatar_core.training.sft import run_sft

    cfg = SftConfig(
        max_steps=1,
        learning_rate=1e-6,
        bf16=True,
        per_device_train_batch_size=2,
        trainer_args={"save_steps": 100, "warmup_steps": 0, "use_cpu": True},
        seed=0,
    )
    run_sft(synthetic_kept[:4], tiny_model_dir, cfg, ModelConfig(dtype="bfloat16"), tmp_path)
    saved = load_file(tmp_path / "model" / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    norm = "model.layers.0.input_layernorm.weight"  # (the checkpoint key format)
    assert saved[norm].dtype == torch.float32
    assert torch.all(base[norm] == 1.0)
    step = (saved[norm] - base[norm]).abs()
    assert (step > 0).float().mean() > 0.9, "the update at lr 1e-6 was lost"
    assert step.max() < 1e-5  # ~lr: one Adam step
    q = "model.layers.0.self_attn.q_proj.weight"
    assert (saved[q] != base[q]).float().mean() > 0.9


def test_pure_low_precision_training_is_refused_at_load_unless_meant(tiny_model_dir, synthetic_kept, tmp_path):
    from tatar_core.training.sft import run_sft

    cfg = SftConfig(max_steps=1, learning_rate=1e-6, per_device_train_batch_size=2, trainer_args={"save_steps": 100})
    with pytest.raises(ValueError, match="trains pure bfloat16 weights"):
        run_sft(synthetic_kept[:2], tiny_model_dir, cfg, ModelConfig(train_dtype="bfloat16"), tmp_path)
    assert not (tmp_path / "model").exists()


def test_sft_builds_its_arguments_before_loading_the_model(synthetic_kept, tmp_path):
    """Under ZeRO-3 the training arguments register the DeepSpeed config that makes `from_pretrained` partition the
    weights, so they must exist first: with bad arguments *and* a missing model, the arguments fail first."""
    from tatar_core.training.sft import run_sft

    no_model = tmp_path / "no-model"
    no_model.mkdir()
    cfg = SftConfig(max_steps=1, trainer_args={"load_best_model_at_end": True})  # rejected by TrainingArguments
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        run_sft(synthetic_kept[:2], no_model, cfg, ModelConfig(), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="config.json"):  # the model is loaded once the arguments are fine
        run_sft(synthetic_kept[:2], no_model, SftConfig(max_steps=1), ModelConfig(), tmp_path / "out")


def test_default_lora_targets_are_the_language_model_only(tiny_model_dir):
    from peft import get_peft_model

    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.models.lora import adapted_modules, peft_config

    model, _ = load_model_and_processor(tiny_model_dir, ModelConfig(), for_training=True)
    names = {n for n, _ in model.named_modules()}
    assert any(n.startswith("model.visual.blocks.0.mlp.gate_proj") for n in names)  # the tower has the same suffixes
    adapted = adapted_modules(get_peft_model(model, peft_config(LoraSection(enabled=True, r=4))))
    layers = model.config.text_config.num_hidden_layers
    assert len(adapted) == 7 * layers
    assert all(".language_model.layers." in n and "visual" not in n for n in adapted), adapted
    assert {n.rsplit(".", 1)[-1] for n in adapted} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    model, _ = load_model_and_processor(tiny_model_dir, ModelConfig(), for_training=True)
    custom = adapted_modules(
        get_peft_model(model, peft_config(LoraSection(enabled=True, r=4, target_modules=["q_proj", "v_proj"])))
    )
    assert len(custom) == 2 * layers  # the set is configurable


def test_grpo_with_lora_trains_and_saves_a_merged_model_that_loads(sft_checkpoint, synthetic_samples, tmp_path):
    from safetensors.torch import load_file

    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.training.grpo import run_grpo

    cfg = GrpoConfig(
        num_generations=4,
        prompts_per_step=4,
        min_iaa_images_per_step=2,
        max_completion_length=160,  # room for the IAA thought: unparsed groups all score 0 and teach nothing
        learning_rate=5e-3,
        beta=0.001,
        seed=0,
        max_steps=1,
        lora={"enabled": True, "r": 4},
        trainer_args={"logging_steps": 1, "save_steps": 100},
    )
    result = run_grpo(synthetic_samples, sft_checkpoint, cfg, ModelConfig(), tmp_path)
    assert result["steps"] == 1
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    saved = load_file(tmp_path / "model" / "model.safetensors")
    base = load_file(sft_checkpoint / "model.safetensors")
    assert set(saved) == set(base) and not any("lora" in k for k in saved)
    changed = {k for k in saved if not torch.equal(saved[k], base[k])}
    assert any(k.startswith("model.layers.") and "q_proj" in k for k in changed), "the LoRA update was not merged"
    assert not any("visual" in k for k in changed)
    model, processor = load_model_and_processor(tmp_path / "model")
    assert hasattr(processor, "image_processor") and not hasattr(model, "peft_config")
