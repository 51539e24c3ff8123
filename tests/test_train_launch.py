"""Launching: the accelerate command line, the spec round trip, checkpoint discovery, failures surfacing the
job's output, and (slow) SFT under `accelerate launch` with two CPU processes."""
from __future__ import annotations

import pytest

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import GrpoConfig, LaunchConfig, SftConfig
from data_contracts.records import KeptRecord, SampleRecord
from tatar_core.training.launch import (
    LaunchError, checkpoint_step, last_complete_checkpoint, launch_command, read_spec, write_spec,
)


def _tail(cmd: list[str]) -> list[str]:
    return cmd[cmd.index("launch") + 1:] if "launch" in cmd else cmd


def test_launch_command_variants(tmp_path):
    spec = tmp_path / "spec.json"
    one_cpu = launch_command("sft", LaunchConfig(mode="accelerate", num_processes=1, cpu=True), spec)
    assert "--cpu" in one_cpu and "--multi_gpu" not in one_cpu
    assert one_cpu[-4:] == ["-m", "tatar_core.training.entry", "sft", str(spec)]
    assert one_cpu[one_cpu.index("--num_processes") + 1] == "1"

    two_cpu = launch_command("grpo", LaunchConfig(mode="accelerate", num_processes=2, cpu=True), spec)
    assert two_cpu[:2] == ["env", "ACCELERATE_USE_CPU=true"] and "--multi_gpu" in two_cpu
    assert "--cpu" not in two_cpu

    gpus = launch_command("grpo", LaunchConfig(mode="accelerate", num_processes=8, cpu=False,
                                               mixed_precision="bf16", extra_args=["--main_process_port", "29555"]),
                          spec)
    assert gpus[0] != "env" and "--multi_gpu" in gpus and "--cpu" not in gpus
    assert gpus[gpus.index("--mixed_precision") + 1] == "bf16"
    assert gpus[gpus.index("--main_process_port") + 1] == "29555"

    ds = launch_command("sft", LaunchConfig(mode="accelerate", num_processes=8, cpu=False,
                                            deepspeed_config="configs/zero3.json"), spec)
    assert ds[ds.index("--deepspeed_config_file") + 1] == "configs/zero3.json" and "--use_deepspeed" in ds
    assert "--multi_gpu" not in ds
    with pytest.raises(ValueError, match="unknown training stage"):
        launch_command("rl", LaunchConfig(), spec)


def test_spec_round_trip(tmp_path):
    samples = [SampleRecord(sample_id="a", image_path="/a.png", task="iaa", score=40.0, split="train", source="s",
                            ref_id="r")]
    cfg = GrpoConfig(num_generations=4, prompts_per_step=4, min_iaa_images_per_step=2, learning_rate=3e-5)
    path = write_spec("grpo", tmp_path, samples, SampleRecord, tmp_path / "m", cfg, ModelConfig(max_pixels=3136))
    spec = read_spec(path)
    assert spec["records"] == samples and spec["cfg"] == cfg
    assert spec["model_cfg"].max_pixels == 3136 and spec["out_dir"] == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="spec"):
        read_spec(tmp_path / "missing.json")


def test_last_complete_checkpoint(tmp_path):
    ck = tmp_path / "checkpoints"
    assert last_complete_checkpoint(ck) is None
    for step, complete in ((2, True), (10, True), (12, False)):
        d = ck / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text("{}")
            (d / "model.safetensors").write_bytes(b"x")
    (ck / "checkpoint-x").mkdir()
    best = last_complete_checkpoint(ck)
    assert best.name == "checkpoint-10" and checkpoint_step(best) == 10  # numeric order, incomplete 12 skipped
    assert checkpoint_step(None) == 0


def test_failed_launch_raises_with_the_output_tail(tmp_path, synthetic_kept, tiny_model_dir):
    cfg = SftConfig(max_steps=1, launch=LaunchConfig(mode="accelerate", num_processes=1,
                                                     extra_args=["--no-such-accelerate-flag"]))
    from tatar_core.training.sft import run_sft

    with pytest.raises(LaunchError, match="no-such-accelerate-flag"):
        run_sft(synthetic_kept[:4], tiny_model_dir, cfg, ModelConfig(), tmp_path)
    assert (tmp_path / "launch" / "spec.json").exists() and (tmp_path / "launch" / "records.parquet").exists()


@pytest.mark.slow
def test_sft_under_accelerate_two_cpu_processes(tmp_path, synthetic_kept, tiny_model_dir):
    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.training.sft import run_sft

    cfg = SftConfig(max_steps=2, learning_rate=3e-3, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                    trainer_args={"save_steps": 100, "logging_steps": 1}, seed=0,
                    launch=LaunchConfig(mode="accelerate", num_processes=2, cpu=True))
    lines, progress = [], []
    result = run_sft(synthetic_kept[:16], tiny_model_dir, cfg, ModelConfig(), tmp_path, log=lines.append,
                     progress=lambda *a, **kw: progress.append(a))
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
