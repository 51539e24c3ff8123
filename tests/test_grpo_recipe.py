"""The GPU recipe's settings, checked on CPU: the `grpo.vllm` front for trl's vLLM fields, the collective invariants
of the cross-process IAA ranking, and what `tatar plan` says about batch, weights and generation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from data_contracts import ConfigError
from data_contracts.config import load_config
from data_contracts.config.training import GrpoConfig, VllmSection


def _tatar(*args):
    return subprocess.run([sys.executable, "-m", "tatar_core.cli.main", *args], capture_output=True, text=True)


def _config(tmp_path, **sections):
    base = yaml.safe_load(open("configs/demo.yaml"))
    for name, value in sections.items():
        base[name] = {**base.get(name, {}), **value}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


# ------------------------------------------------------------------------------------------------ vLLM section
def _args(cfg: GrpoConfig, tmp_path):
    from tatar_core.training.grpo import batch_plan, grpo_args

    return grpo_args(cfg, batch_plan(cfg, 1), 3, tmp_path)


def test_vllm_section_maps_onto_trls_fields(tmp_path):
    colocate = GrpoConfig(
        num_generations=4,
        prompts_per_step=4,
        min_iaa_images_per_step=2,
        vllm={"enabled": True, "gpu_memory_utilization": 0.45, "tensor_parallel_size": 2, "enable_sleep_mode": True},
        trainer_args={"vllm_max_model_length": 4096},
    )  # fields the section leaves to trainer_args
    a = _args(colocate, tmp_path)
    assert (
        a.use_vllm,
        a.vllm_mode,
        a.vllm_gpu_memory_utilization,
        a.vllm_tensor_parallel_size,
        a.vllm_enable_sleep_mode,
    ) == (True, "colocate", 0.45, 2, True)
    assert a.vllm_importance_sampling_correction is False  # set explicitly: trl defaults it on, the paper has none
    assert a.vllm_max_model_length == 4096
    server = GrpoConfig(
        num_generations=4,
        prompts_per_step=4,
        min_iaa_images_per_step=2,
        vllm={
            "enabled": True,
            "mode": "server",
            "server_base_url": "http://10.0.0.5:8000",
            "importance_sampling_correction": True,
        },
    )
    b = _args(server, tmp_path)
    assert (b.use_vllm, b.vllm_mode, b.vllm_server_base_url, b.vllm_importance_sampling_correction) == (
        True,
        "server",
        "http://10.0.0.5:8000",
        True,
    )
    off = _args(GrpoConfig(num_generations=4, prompts_per_step=4, min_iaa_images_per_step=2), tmp_path)
    assert off.use_vllm is False and off.vllm_importance_sampling_correction is False
    # every field the section names is a real GRPOConfig field
    from data_contracts.config.trainer_fields import trainer_fields

    assert set(VllmSection.TRL_FIELDS.values()) <= trainer_fields("grpo")


@pytest.mark.parametrize("trl_field, key", sorted((t, k) for k, t in VllmSection.TRL_FIELDS.items()))
def test_a_vllm_field_set_both_ways_is_an_error(tmp_path, trl_field, key):
    path = _config(tmp_path, grpo={"vllm": {"enabled": True}, "trainer_args": {trl_field: True}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "grpo.trainer_args" in str(err.value) and f"use grpo.vllm.{key}" in str(err.value)


def test_vllm_server_mode_needs_a_url(tmp_path):
    with pytest.raises(ConfigError, match="server_base_url"):
        load_config(_config(tmp_path, grpo={"vllm": {"enabled": True, "mode": "server"}}))
    with pytest.raises(ConfigError, match="grpo.vllm.mode"):
        load_config(_config(tmp_path, grpo={"vllm": {"enabled": True, "mode": "remote"}}))


def test_plan_prints_the_generation_backend():
    hf = _tatar("plan", "configs/paper.yaml")
    assert hf.returncode == 0, hf.stderr
    assert "generation: HF generate" in hf.stdout
    vllm = _tatar(
        "plan",
        "configs/paper.yaml",
        "--set",
        "grpo.vllm.enabled=true",
        "--set",
        "grpo.vllm.gpu_memory_utilization=0.4",
    )
    assert vllm.returncode == 0, vllm.stderr
    line = next(x for x in vllm.stdout.splitlines() if "generation:" in x)
    assert "vLLM colocate (GPU memory 0.4" in line and "importance-sampling correction off" in line


# ------------------------------------------------------------------------------------------------ invariants
def test_collective_invariants_fire_on_a_bad_grpoconfig(tmp_path):
    from tatar_core.training.grpo import batch_plan, check_collective_invariants

    cfg = GrpoConfig(num_generations=4, prompts_per_step=4, min_iaa_images_per_step=2, gradient_accumulation_steps=2)
    plan = batch_plan(cfg, 1)
    good = _args(cfg, tmp_path)
    check_collective_invariants(good, plan)  # what the stage builds passes
    for change, message in (
        ({"steps_per_generation": 4}, "steps_per_generation=4 != gradient_accumulation_steps=2"),
        ({"num_iterations": 2}, "num_iterations=2"),
        ({"shuffle_dataset": True}, "shuffle_dataset=True"),
    ):
        bad = _args(cfg, tmp_path)
        for k, v in change.items():
            setattr(bad, k, v)
        with pytest.raises(ValueError, match="cross-process IAA ranking") as err:
            check_collective_invariants(bad, plan)
        assert message in str(err.value)


# ------------------------------------------------------------------------------------------------ plan: batch, weights
def test_plan_on_one_gpu_says_128_per_device_and_suggests_the_accumulation():
    p = _tatar("plan", "configs/paper.yaml", "--set", "grpo.launch.num_processes=1")
    assert p.returncode == 0, p.stderr
    assert "128 completions per device per micro-step x 1 accumulation" in p.stdout
    assert "set grpo.gradient_accumulation_steps: 8 for 16 per device per micro-step" in p.stdout
    eight = _tatar("plan", "configs/paper.yaml")
    assert "16 completions per device per micro-step x 1 accumulation" in eight.stdout
    assert "WARNING" not in eight.stdout


def test_plan_refuses_pure_bf16_training_without_the_switch(tmp_path):
    pure = _config(tmp_path, model={"train_dtype": "bfloat16"}, sft={"bf16": True})
    p = _tatar("plan", str(pure))
    assert p.returncode == 2, p.stdout
    assert "model.train_dtype bfloat16 with sft outside DeepSpeed trains pure bfloat16 weights" in p.stderr
    assert "model.pure_low_precision_training: true" in p.stderr and "Traceback" not in p.stderr
    meant = _config(tmp_path, model={"train_dtype": "bfloat16", "pure_low_precision_training": True})
    ok = _tatar("plan", str(meant))
    assert ok.returncode == 0, ok.stderr
    assert "PURE bfloat16 weights" in ok.stdout
    default = _tatar("plan", "configs/demo.yaml")
    assert "weights: fp32 master weights, fp32 compute" in default.stdout
    bf16 = _tatar("plan", "configs/paper.yaml", "--set", "sft.launch.deepspeed_config=null")
    assert bf16.returncode == 0, bf16.stderr  # scoring in bf16, training on fp32 master weights
    assert "weights: fp32 master weights, bf16 autocast compute" in bf16.stdout
