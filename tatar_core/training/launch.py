"""How a training stage runs: in this process, or under `accelerate launch` (many processes / devices).

`launch.mode == "accelerate"`: the stage's inputs are written as a *spec* into `out_dir/"launch"` (records as
Parquet, configs as JSON), then

    accelerate launch --num_processes N [--cpu | --multi_gpu | --use_deepspeed --deepspeed_config_file F]
        --mixed_precision X [extra args] -m tatar_core.training.entry {sft|grpo} SPEC

(see `launch_command` for CPU with N > 1) runs as a subprocess; its output is streamed to ours line by line and the
result dict comes back as `out_dir/launch/result.json` (written by the main process of the launched job). The job's
log lines and progress arrive as event lines (`tatar_core.progress.EventEmitter`) and go to the caller's `log` /
`progress`, as if it trained in-process. A failure raises `LaunchError` with the tail of the output.
Also here: checkpoint discovery for resume and the final save (shared by SFT and GRPO).
"""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from pydantic import BaseModel

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import LaunchConfig
from data_contracts.manifest import ProgressFn, no_progress
from data_contracts.parquet_io import read_records, write_records
from tatar_core.code_version import PROJECT_ROOT
from tatar_core.progress import dispatch_event

STAGES = ("sft", "grpo")
RESULT_FILE = "launch/result.json"
LAUNCHED_ENV = "TATAR_LAUNCHED"  # set in the launched processes so they never launch again
CPU_ENV = "ACCELERATE_USE_CPU"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


class LaunchError(RuntimeError):
    pass


# ---------------------------------------------------------------- checkpoints
def _is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint folder is complete when it holds trainer_state.json and weights (model or adapter)."""
    if not (path / "trainer_state.json").exists():
        return False
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def last_complete_checkpoint(checkpoints_dir: Path) -> Optional[Path]:
    """The highest-step `checkpoint-N` folder that is complete, or None."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    found = []
    for p in checkpoints_dir.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    for _, p in sorted(found, reverse=True):
        if _is_complete_checkpoint(p):
            return p
    return None


def checkpoint_step(path: Optional[Path]) -> int:
    m = _CKPT_RE.match(Path(path).name) if path else None
    return int(m.group(1)) if m else 0


def save_final(trainer, processor, final_dir: Path, merge_lora: bool = False) -> None:
    """Save weights + processor to final_dir (every process calls it: ZeRO-3 gathers; LoRA merged first)."""
    final_dir.mkdir(parents=True, exist_ok=True)
    if merge_lora:
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(final_dir, safe_serialization=True)
    else:
        trainer.save_model(str(final_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(final_dir)
    trainer.accelerator.wait_for_everyone()


# ---------------------------------------------------------------- launching
# trl arguments the project defaults (any of them can be changed through `trainer_args`)
TRAINER_DEFAULTS: dict[str, Any] = dict(
    save_strategy="steps",
    save_steps=100,
    save_total_limit=2,
    dataloader_num_workers=0,
    dataloader_pin_memory=False,
    report_to="none",
)


def trainer_kwargs(cfg, out_dir: Path, defaults: dict[str, Any], computed: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for trl's SFTConfig / GRPOConfig, lowest priority first:

        TRAINER_DEFAULTS < the stage's `defaults` < cfg.trainer_args (the user's pass-through)
                         < the section's own keys and the values the project computes (`computed`)

    The config refuses `trainer_args` keys of the last group when it loads, so nothing the user sets is dropped.
    """
    own = dict(
        output_dir=str(Path(out_dir) / "checkpoints"),
        learning_rate=cfg.learning_rate,
        activation_checkpointing=cfg.gradient_checkpointing,  # the non-deprecated name (trl defaults it on)
        bf16=cfg.bf16,
        remove_unused_columns=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
    )
    return {**TRAINER_DEFAULTS, **defaults, **cfg.trainer_args, **own, **computed}


def is_launched_process() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def launch_command(stage: str, launch_cfg: LaunchConfig, spec_path: Path | str) -> list[str]:
    """The `accelerate launch … -m tatar_core.training.entry STAGE SPEC` command line (printed by `tatar plan`).

    CPU with several processes: `accelerate launch --cpu` starts more than one process only through mpirun, so
    the command is `env ACCELERATE_USE_CPU=true accelerate launch --multi_gpu …` instead (torchrun spawns the
    processes; accelerate then runs them as MULTI_CPU with the gloo backend).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r} (expected one of {STAGES})")
    n = launch_cfg.num_processes
    script = Path(sys.executable).parent / "accelerate"
    cmd = [str(script), "launch"] if script.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    cmd += ["--num_processes", str(n), "--num_machines", "1"]
    if launch_cfg.deepspeed_config:
        cmd += ["--use_deepspeed", "--deepspeed_config_file", str(launch_cfg.deepspeed_config)]
    elif n > 1:
        cmd.append("--multi_gpu")
        if launch_cfg.cpu:
            cmd = ["env", f"{CPU_ENV}=true", *cmd]
    elif launch_cfg.cpu:
        cmd.append("--cpu")
    cmd += ["--mixed_precision", launch_cfg.mixed_precision, "--dynamo_backend", "no"]
    cmd += list(launch_cfg.extra_args)
    cmd += ["-m", "tatar_core.training.entry", stage, str(spec_path)]
    return cmd


def apply_threads(launch_cfg: LaunchConfig) -> None:
    """torch.set_num_threads(launch.torch_threads) when set (training in this process)."""
    if launch_cfg.torch_threads:
        import torch

        torch.set_num_threads(launch_cfg.torch_threads)


def distributed_state():
    """accelerate's PartialState, on CPU when the launch asked for it (ACCELERATE_USE_CPU, as TrainingArguments)."""
    from accelerate import PartialState

    cpu = os.environ.get(CPU_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return PartialState(cpu=cpu)


def spec_path(out_dir: Path | str) -> Path:
    """Where `run_launched` writes the launched job's spec: out_dir/launch/spec.json."""
    return Path(out_dir) / "launch" / "spec.json"


def write_spec(stage: str, out_dir: Path, records: Sequence[BaseModel], record_model: type[BaseModel],
               model_path: Path, cfg: BaseModel, model_cfg: ModelConfig) -> Path:
    """Write the launched job's inputs into out_dir/launch: records.parquet + spec.json (configs as JSON)."""
    spec_file = spec_path(out_dir)
    spec_dir = spec_file.parent
    spec_dir.mkdir(parents=True, exist_ok=True)
    records_path = write_records(list(records), spec_dir / "records.parquet", record_model)
    spec = {
        "stage": stage,
        "records": str(records_path.resolve()),
        "record_model": record_model.__name__,
        "model_path": str(Path(model_path).resolve()),
        "out_dir": str(Path(out_dir).resolve()),
        "cfg": cfg.model_dump(mode="json"),
        "model_cfg": model_cfg.model_dump(mode="json"),
    }
    spec_file.write_text(json.dumps(spec, indent=1))
    return spec_file


def read_spec(path: Path | str) -> dict[str, Any]:
    """Inverse of `write_spec`: {"stage", "records", "model_path", "out_dir", "cfg", "model_cfg"} as objects."""
    from data_contracts.config.training import GrpoConfig, SftConfig
    from data_contracts.records import KeptRecord, SampleRecord

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: launch spec not found")
    raw = json.loads(path.read_text())
    record_model = {"KeptRecord": KeptRecord, "SampleRecord": SampleRecord}[raw["record_model"]]
    cfg_model = {"sft": SftConfig, "grpo": GrpoConfig}[raw["stage"]]
    return {
        "stage": raw["stage"],
        "records": read_records(raw["records"], record_model),
        "model_path": Path(raw["model_path"]),
        "out_dir": Path(raw["out_dir"]),
        "cfg": cfg_model.model_validate(raw["cfg"]),
        "model_cfg": ModelConfig.model_validate(raw["model_cfg"]),
    }


def run_launched(stage: str, out_dir: Path, records: Sequence[BaseModel], record_model: type[BaseModel],
                 model_path: Path, cfg: BaseModel, model_cfg: ModelConfig, tail_lines: int = 60,
                 log: Callable[[str], None] = print, progress: ProgressFn = no_progress) -> dict:
    """Write the spec, run `launch_command` as a subprocess (output streamed, its event lines to `log` /
    `progress`), return the job's result dict."""
    out_dir = Path(out_dir)
    spec_file = write_spec(stage, out_dir, records, record_model, model_path, cfg, model_cfg)
    result_path = out_dir / RESULT_FILE
    if result_path.exists():
        result_path.unlink()
    cmd = launch_command(stage, cfg.launch, spec_file)
    env = dict(os.environ, **{LAUNCHED_ENV: "1", "PYTHONUNBUFFERED": "1"})
    if cfg.launch.torch_threads:
        env["OMP_NUM_THREADS"] = str(cfg.launch.torch_threads)
    root = str(PROJECT_ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    print("launching:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        if dispatch_event(line.rstrip("\n"), log, progress):
            continue
        sys.stdout.write(line)
        tail.append(line)
    rc = proc.wait()
    if rc != 0:
        raise LaunchError(f"{stage}: `accelerate launch` exited with {rc}; last output:\n" + "".join(tail))
    if not result_path.exists():
        raise LaunchError(f"{stage}: launched job finished but wrote no {result_path}; last output:\n" + "".join(tail))
    return json.loads(result_path.read_text())


def write_result(out_dir: Path, result: dict) -> None:
    path = Path(out_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(path)


__all__ = [
    "launch_command", "run_launched", "write_spec", "read_spec", "write_result", "last_complete_checkpoint",
    "checkpoint_step", "is_launched_process", "LaunchError", "save_final", "distributed_state",
    "apply_threads", "spec_path",
]
