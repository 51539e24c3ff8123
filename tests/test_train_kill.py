"""Killed training resumes: a real SFT / GRPO run (one process, and `accelerate launch` with two CPU processes) is
SIGKILLed once two checkpoints exist; the newest checkpoint is then broken as a full disk leaves it (truncated
trainer_state.json). The rerun skips it with a warning naming it, resumes from the one before, trains to max_steps,
and the final model folder loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import descendants, wait_for

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import GrpoConfig, LaunchConfig, SftConfig
from data_contracts.parquet_io import read_records
from data_contracts.records import KeptRecord, SampleRecord, TrainLogRecord
from tatar_core.code_version import PROJECT_ROOT
from tatar_core.training.launch import LAUNCHED_ENV, launch_command, write_spec

MAX_STEPS = 5
TRAINER_ARGS = {"save_steps": 1, "save_total_limit": None, "logging_steps": 1}


def _cfg(stage: str, mode: str):
    launch = LaunchConfig(mode=mode, num_processes=2 if mode == "accelerate" else 1, cpu=True)
    if stage == "sft":
        return SftConfig(
            max_steps=MAX_STEPS,
            learning_rate=3e-3,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            seed=0,
            trainer_args=TRAINER_ARGS,
            launch=launch,
        )
    return GrpoConfig(
        max_steps=MAX_STEPS,
        num_generations=4,
        prompts_per_step=4,
        min_iaa_images_per_step=2,
        max_completion_length=64,
        learning_rate=1e-4,
        beta=0.001,
        seed=0,
        trainer_args=TRAINER_ARGS,
        launch=launch,
    )


def _whole(ckpt: Path) -> bool:
    """Independent of the code under test: trainer_state.json parses and every safetensors file opens."""
    from safetensors import safe_open

    try:
        json.loads((ckpt / "trainer_state.json").read_text())
        files = list(ckpt.glob("*.safetensors"))
        for f in files:
            with safe_open(str(f), "pt") as st:
                for k in st.keys():
                    st.get_tensor(k)
        return bool(files) and (ckpt / "optimizer.pt").is_file()
    except Exception:  # noqa: BLE001 - anything unreadable is not whole
        return False


def _checkpoints(out: Path) -> list[Path]:
    d = out / "checkpoints"
    found = [p for p in d.glob("checkpoint-*") if p.name.split("-")[1].isdigit()] if d.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _start_and_kill(stage: str, cfg, records, record_model, model_path: Path, out: Path) -> None:
    """Start the training job as its own process group, SIGKILL the whole group once two checkpoints are whole."""
    spec = write_spec(stage, out, records, record_model, model_path, cfg, ModelConfig())
    if cfg.launch.mode == "accelerate":
        cmd = launch_command(stage, cfg.launch, spec)
    else:  # the in-process code path, in a process of its own so that it can be killed
        cmd = [sys.executable, "-m", "tatar_core.training.entry", stage, str(spec)]
    env = dict(os.environ, **{LAUNCHED_ENV: "1", "PYTHONPATH": str(PROJECT_ROOT)})
    log = open(out / "killed_run.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 240
    try:
        while sum(_whole(p) for p in _checkpoints(out)) < 2:
            assert proc.poll() is None, (
                f"the run ended before it was killed:\n{(out / 'killed_run.log').read_text()[-3000:]}"
            )
            assert time.time() < deadline, "no two checkpoints within 240 s"
            time.sleep(0.05)
    finally:
        # freeze the whole tree at once (torchrun starts each worker in a session of its own), then kill it
        tree = [proc.pid, *descendants(proc.pid)]
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in tree:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        proc.wait()
        log.close()
        wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in tree), 30, "the killed processes to go")
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model").exists() and not (out / "checkpoints" / f"checkpoint-{MAX_STEPS}").exists(), (
        "the run finished before the kill: raise MAX_STEPS"
    )


def _break_newest(out: Path) -> tuple[Path, int, dict]:
    """Truncate trainer_state.json of the newest whole checkpoint; return it, the step of the one before it, and the
    killed run's log entry of the step after that one (read before the truncation)."""
    whole = [p for p in _checkpoints(out) if _whole(p)]
    newest, before = whole[-1], whole[-2]
    step = int(before.name.split("-")[1])
    state = newest / "trainer_state.json"
    text = state.read_text()
    logged = next(h for h in json.loads(text)["log_history"] if h.get("step") == step + 1 and "loss" in h)
    state.write_text(text[:40])
    return newest, step, logged


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inprocess", "accelerate"])
@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_sigkill_then_rerun_continues_from_the_last_whole_checkpoint(stage, mode, request, tmp_path, caplog, capfd):
    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.training.grpo import run_grpo
    from tatar_core.training.sft import run_sft

    cfg = _cfg(stage, mode)
    fixture = request.getfixturevalue
    if stage == "sft":
        run, records, record_model = run_sft, fixture("synthetic_kept")[:16], KeptRecord
        model_path = fixture("tiny_model_dir")
    else:
        run, records, record_model = run_grpo, fixture("synthetic_samples"), SampleRecord
        model_path = fixture("sft_checkpoint")
    _start_and_kill(stage, cfg, records, record_model, model_path, tmp_path)
    broken, resume_step, killed_log = _break_newest(tmp_path)

    with caplog.at_level("WARNING", logger="tatar_core.training.launch"):
        result = run(records, model_path, cfg, ModelConfig(), tmp_path)
    out = capfd.readouterr()
    warned = out.out + out.err + caplog.text
    assert f"skipping incomplete checkpoint {broken}: trainer_state.json does not parse" in warned
    assert result["resumed_from_step"] == resume_step and result["steps"] == MAX_STEPS
    state = json.loads((tmp_path / "checkpoints" / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    logged = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in logged] == list(range(1, MAX_STEPS + 1))  # kept up to the checkpoint, none twice
    # the step after the checkpoint repeats the killed run's step exactly: weights, optimizer and RNG were restored
    again = logged[resume_step]
    for k in ("loss", "grad_norm", *(("reward",) if stage == "grpo" else ())):
        assert again[k] == pytest.approx(killed_log[k], rel=1e-4, abs=1e-7), (k, again, killed_log)
    if stage == "grpo":
        rows = sorted((r.step, r.task) for r in read_records(tmp_path / "train_log.parquet", TrainLogRecord))
        assert rows == [(s, t) for s in range(1, MAX_STEPS + 1) for t in ("iaa", "iqa")]
    model, processor = load_model_and_processor(tmp_path / "model")
    assert model.num_parameters() > 0 and hasattr(processor, "image_processor")
