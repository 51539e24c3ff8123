"""Launching: the accelerate command line, the spec round trip, checkpoint discovery, failures surfacing the
job's output, (slow) SFT under `accelerate launch` with two CPU processes, and (slow) a job run by `launch.python`
that never imports Prefect."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import GrpoConfig, LaunchConfig, SftConfig
from data_contracts.records import KeptRecord, SampleRecord
from tatar_core.training.launch import (
    LaunchError,
    checkpoint_step,
    job_info,
    last_complete_checkpoint,
    launch_command,
    read_spec,
    write_spec,
)


def _tail(cmd: list[str]) -> list[str]:
    return cmd[cmd.index("launch") + 1 :] if "launch" in cmd else cmd


def test_launch_command_variants(tmp_path):
    spec = tmp_path / "spec.json"
    one_cpu = launch_command("sft", LaunchConfig(mode="accelerate", num_processes=1, cpu=True), spec)
    assert "--cpu" in one_cpu and "--multi_gpu" not in one_cpu
    assert one_cpu[-4:] == ["-m", "tatar_core.training.entry", "sft", str(spec)]
    assert one_cpu[one_cpu.index("--num_processes") + 1] == "1"

    two_cpu = launch_command("grpo", LaunchConfig(mode="accelerate", num_processes=2, cpu=True), spec)
    assert two_cpu[:2] == ["env", "ACCELERATE_USE_CPU=true"] and "--multi_gpu" in two_cpu
    assert "--cpu" not in two_cpu

    gpus = launch_command(
        "grpo",
        LaunchConfig(
            mode="accelerate",
            num_processes=8,
            cpu=False,
            mixed_precision="bf16",
            extra_args=["--main_process_port", "29555"],
        ),
        spec,
    )
    assert gpus[0] != "env" and "--multi_gpu" in gpus and "--cpu" not in gpus
    assert gpus[gpus.index("--mixed_precision") + 1] == "bf16"
    assert gpus[gpus.index("--main_process_port") + 1] == "29555"

    ds = launch_command(
        "sft", LaunchConfig(mode="accelerate", num_processes=8, cpu=False, deepspeed_config="configs/zero3.json"), spec
    )
    assert ds[ds.index("--deepspeed_config_file") + 1] == "configs/zero3.json" and "--use_deepspeed" in ds
    assert "--multi_gpu" not in ds
    with pytest.raises(ValueError, match="unknown training stage"):
        launch_command("rl", LaunchConfig(), spec)


def test_spec_round_trip(tmp_path):
    samples = [
        SampleRecord(sample_id="a", image_path="/a.png", task="iaa", score=40.0, split="train", source="s", ref_id="r")
    ]
    cfg = GrpoConfig(num_generations=4, prompts_per_step=4, min_iaa_images_per_step=2, learning_rate=3e-5)
    path = write_spec("grpo", tmp_path, samples, SampleRecord, tmp_path / "m", cfg, ModelConfig(max_pixels=3136))
    spec = read_spec(path)
    assert spec["records"] == samples and spec["cfg"] == cfg
    assert spec["model_cfg"].max_pixels == 3136 and spec["out_dir"] == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="spec"):
        read_spec(tmp_path / "missing.json")


def _checkpoint(ck, step: int) -> "Path":
    import json

    import torch
    from safetensors.torch import save_file

    d = ck / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.zeros(64, 64)}, str(d / "model.safetensors"))
    torch.save({"step": step}, d / "optimizer.pt")
    return d


def test_last_complete_checkpoint(tmp_path, caplog):
    ck = tmp_path / "checkpoints"
    assert last_complete_checkpoint(ck) is None
    for step in (2, 10, 12, 14, 16, 18):
        _checkpoint(ck, step)
    (ck / "checkpoint-20").mkdir()  # killed before anything was written
    (ck / "checkpoint-18" / "trainer_state.json").write_text('{"global_step": 18, "log_hi')  # a full disk
    weights = ck / "checkpoint-16" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated tensor data
    (ck / "checkpoint-14" / "model.safetensors").write_bytes(b"\x09\x00\x00\x00\x00\x00\x00\x00{not json")
    opt = ck / "checkpoint-12" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:-30])  # optimizer state cut off (resume reads it)
    (ck / "checkpoint-x").mkdir()
    with caplog.at_level("WARNING", logger="tatar_core.training.launch"):
        best = last_complete_checkpoint(ck)
    assert best.name == "checkpoint-10" and checkpoint_step(best) == 10  # numeric order, broken newer ones skipped
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == 5
    for step, why in (
        (20, "no trainer_state.json"),
        (18, "trainer_state.json does not parse"),
        (16, "model.safetensors: truncated"),
        (14, "header is not JSON"),
        (12, "optimizer.pt"),
    ):
        assert any(f"checkpoint-{step}:" in m and why in m for m in skipped), (step, skipped)
    assert checkpoint_step(None) == 0


def test_failed_launch_raises_with_the_output_tail(tmp_path, synthetic_kept, tiny_model_dir):
    cfg = SftConfig(
        max_steps=1, launch=LaunchConfig(mode="accelerate", num_processes=1, extra_args=["--no-such-accelerate-flag"])
    )
    from tatar_core.training.sft import run_sft

    with pytest.raises(LaunchError, match="no-such-accelerate-flag"):
        run_sft(synthetic_kept[:4], tiny_model_dir, cfg, ModelConfig(), tmp_path)
    assert (tmp_path / "launch" / "spec.json").exists() and (tmp_path / "launch" / "records.parquet").exists()


@pytest.mark.slow
def test_sft_under_accelerate_two_cpu_processes(tmp_path, synthetic_kept, tiny_model_dir):
    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.training.sft import run_sft

    cfg = SftConfig(
        max_steps=2,
        learning_rate=3e-3,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        trainer_args={"save_steps": 100, "logging_steps": 1},
        seed=0,
        launch=LaunchConfig(mode="accelerate", num_processes=2, cpu=True),
    )
    lines, progress = [], []
    result = run_sft(
        synthetic_kept[:16],
        tiny_model_dir,
        cfg,
        ModelConfig(),
        tmp_path,
        log=lines.append,
        progress=lambda *a, **kw: progress.append(a),
    )
    assert result["num_processes"] == 2 and result["steps"] == 2
    # the launched job's log lines and progress reach this process (event lines on its stdout)
    assert [line.split(" · ")[0] for line in lines] == ["[sft] step 1/2", "[sft] step 2/2"]
    assert progress[-1] == ("sft", 2, 2)
    assert (tmp_path / "curves" / "loss.png").exists()
    assert result["rows_iqa"] + result["rows_iaa"] >= 16
    load_model_and_processor(tmp_path / "model")


def test_kept_spec_uses_kept_schema(tmp_path, synthetic_kept):
    path = write_spec("sft", tmp_path, synthetic_kept[:3], KeptRecord, tmp_path, SftConfig(), ModelConfig())
    assert read_spec(path)["records"] == synthetic_kept[:3]


def test_launch_python_runs_accelerate_of_that_interpreter(tmp_path):
    spec = tmp_path / "spec.json"
    one = launch_command("sft", LaunchConfig(mode="accelerate", python="/envs/gpu/bin/python", cpu=False), spec)
    assert one[:3] == ["/envs/gpu/bin/python", "-m", "accelerate.commands.launch"]
    two_cpu = launch_command(
        "grpo", LaunchConfig(mode="accelerate", python="/envs/gpu/bin/python", num_processes=2), spec
    )
    assert two_cpu[:5] == [
        "env",
        "ACCELERATE_USE_CPU=true",
        "/envs/gpu/bin/python",
        "-m",
        "accelerate.commands.launch",
    ]
    with pytest.raises(ValidationError, match="launch.python .* needs launch.mode: accelerate"):
        LaunchConfig(python="/envs/gpu/bin/python")


def test_missing_launch_python_fails_before_launching(tmp_path, synthetic_kept, tiny_model_dir):
    from tatar_core.training.sft import run_sft

    cfg = SftConfig(max_steps=1, launch=LaunchConfig(mode="accelerate", python=str(tmp_path / "nope" / "python")))
    with pytest.raises(LaunchError, match=r"launch.python .*nope/python is not an executable file.*make gpu-env"):
        run_sft(synthetic_kept[:4], tiny_model_dir, cfg, ModelConfig(), tmp_path / "out")
    assert not (tmp_path / "out" / "launch" / "spec.json").exists()


def test_job_info_lists_loaded_prefect_modules():
    import prefect  # noqa: F401  (this test process has it; a launched job must not)

    info = job_info()
    assert info["python"] == sys.executable and "prefect" in info["prefect_modules"]


@pytest.mark.slow
def test_training_job_runs_in_launch_python_and_never_imports_prefect(tmp_path, synthetic_kept, tiny_model_dir):
    from tatar_core.training.sft import run_sft

    used = tmp_path / "used.txt"
    wrapper = tmp_path / "train-env-python"  # stands for another environment's interpreter; records each use
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{used}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    cfg = SftConfig(
        max_steps=1,
        learning_rate=3e-3,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        trainer_args={"save_steps": 100, "logging_steps": 1},
        seed=0,
        launch=LaunchConfig(mode="accelerate", num_processes=1, cpu=True, python=str(wrapper)),
    )
    result = run_sft(synthetic_kept[:4], tiny_model_dir, cfg, ModelConfig(), tmp_path / "out")
    assert used.read_text().startswith("-m accelerate.commands.launch ")
    assert result["steps"] == 1 and (tmp_path / "out" / "model" / "config.json").exists()
    job = json.loads((tmp_path / "out" / "launch" / "result.json").read_text())["job"]
    assert job == result["job"] and job["prefect_modules"] == []
