"""How a training stage runs: in this process, or under `accelerate launch` (many processes / devices).

`launch.mode == "accelerate"`: the stage's inputs are written as a *spec* into `out_dir/"launch"` (records as
Parquet, configs as JSON), then

    accelerate launch --num_processes N [--cpu] [--mixed_precision X]
        [--use_deepspeed --deepspeed_config_file F] [extra args] -m tatar_core.train_entry {sft|grpo} SPEC

runs as a subprocess; its output is streamed to ours and the result dict comes back as `out_dir/result.json`
(written by the main process of the launched job). A failure raises `LaunchError` with the tail of the output.
Also here: checkpoint discovery for resume (shared by SFT and GRPO).
"""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from pydantic import BaseModel

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import LaunchConfig
from data_contracts.parquet_io import read_records, write_records

STAGES = ("sft", "grpo")
RESULT_FILE = "result.json"
LAUNCHED_ENV = "TATAR_LAUNCHED"  # set in the launched processes so they never launch again
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


# ---------------------------------------------------------------- launching
def is_launched_process() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def launch_command(stage: str, launch_cfg: LaunchConfig, spec_path: Path | str) -> list[str]:
    """The `accelerate launch … -m tatar_core.train_entry STAGE SPEC` command line (printed by `tatar plan`)."""
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r} (expected one of {STAGES})")
    script = Path(sys.executable).parent / "accelerate"
    cmd = [str(script), "launch"] if script.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    cmd += ["--num_processes", str(launch_cfg.num_processes)]
    if launch_cfg.num_processes > 1 and not launch_cfg.cpu and not launch_cfg.deepspeed_config:
        cmd.append("--multi_gpu")
    if launch_cfg.cpu:
        cmd.append("--cpu")
    cmd += ["--mixed_precision", launch_cfg.mixed_precision]
    if launch_cfg.deepspeed_config:
        cmd += ["--use_deepspeed", "--deepspeed_config_file", str(launch_cfg.deepspeed_config)]
    cmd += ["--num_machines", "1", "--dynamo_backend", "no"]
    cmd += list(launch_cfg.extra_args)
    cmd += ["-m", "tatar_core.train_entry", stage, str(spec_path)]
    return cmd


def write_spec(stage: str, out_dir: Path, records: Sequence[BaseModel], record_model: type[BaseModel],
               model_path: Path, cfg: BaseModel, model_cfg: ModelConfig) -> Path:
    """Write the launched job's inputs into out_dir/launch: records.parquet + spec.json (configs as JSON)."""
    spec_dir = Path(out_dir) / "launch"
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
    spec_path = spec_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    return spec_path


def read_spec(spec_path: Path | str) -> dict[str, Any]:
    """Inverse of `write_spec`: {"stage", "records", "model_path", "out_dir", "cfg", "model_cfg"} as objects."""
    from data_contracts.config.training import GrpoConfig, SftConfig
    from data_contracts.records import KeptRecord, SampleRecord

    spec_path = Path(spec_path)
    if not spec_path.exists():
        raise FileNotFoundError(f"{spec_path}: launch spec not found")
    raw = json.loads(spec_path.read_text())
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
                 model_path: Path, cfg: BaseModel, model_cfg: ModelConfig, tail_lines: int = 60) -> dict:
    """Write the spec, run `launch_command` as a subprocess (output streamed), return the job's result dict."""
    out_dir = Path(out_dir)
    spec_path = write_spec(stage, out_dir, records, record_model, model_path, cfg, model_cfg)
    result_path = out_dir / RESULT_FILE
    if result_path.exists():
        result_path.unlink()
    cmd = launch_command(stage, cfg.launch, spec_path)
    env = dict(os.environ, **{LAUNCHED_ENV: "1", "PYTHONUNBUFFERED": "1"})
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    print("launching:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
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
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(path)


__all__ = [
    "launch_command", "run_launched", "write_spec", "read_spec", "write_result", "last_complete_checkpoint",
    "checkpoint_step", "is_launched_process", "LaunchError",
]
