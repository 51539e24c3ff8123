"""How a training stage runs: in this process, or under `accelerate launch` (many processes / devices).

`launch.mode == "accelerate"`: the stage's inputs are written as a *spec* into `out_dir/"launch"` (records as
Parquet, configs as JSON, paths relative to the run folder), then

    [launch.python -m accelerate.commands.]accelerate launch --num_processes N
        [--cpu | --multi_gpu | --use_deepspeed --deepspeed_config_file F]
        --mixed_precision X [extra args] -m tatar_core.training.entry {sft|grpo} SPEC

(see `launch_command` for CPU with N > 1) runs as a subprocess; its output is streamed to ours line by line and the
result dict comes back as `out_dir/launch/result.json` (written by the main process of the launched job). The job's
log lines and progress arrive as event lines (`tatar_core.progress.EventEmitter`) and go to the caller's `log` /
`progress`, as if it trained in-process. A failure raises `LaunchError` with the tail of the output. With
`launch.python` the job runs in another interpreter (the training environment: CUDA torch, DeepSpeed, vLLM); the
spec and result files are its only interface, and it imports nothing from Prefect (its result records which
interpreter ran it and any Prefect module it loaded: `job_info`).
Also here: checkpoint discovery for resume and the final save (shared by SFT and GRPO).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from pydantic import BaseModel

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import LaunchConfig
from data_contracts.files import atomic_write_text
from data_contracts.manifest import ProgressFn, no_progress
from data_contracts.parquet_io import read_records, write_records
from data_contracts.paths import local_path, run_root_of, stored_path
from tatar_core.code_version import PROJECT_ROOT
from tatar_core.progress import dispatch_event

STAGES = ("sft", "grpo")
RESULT_FILE = "launch/result.json"
LAUNCHED_ENV = "TATAR_LAUNCHED"  # set in the launched processes so they never launch again
CPU_ENV = "ACCELERATE_USE_CPU"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
log = logging.getLogger(__name__)
# the last line of a Python traceback, optionally prefixed by torchrun's "[rankN]: "
_EXCEPTION_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?((?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): \S.*)$")


class LaunchError(RuntimeError):
    pass


# ---------------------------------------------------------------- checkpoints
def _safetensors_problem(path: Path) -> Optional[str]:
    """None if `path` has a whole safetensors header: u64 little-endian length N, N bytes of JSON, and every
    tensor's data_offsets inside the file (so a truncated file is caught without reading the tensors)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name}: {size} bytes, shorter than a safetensors header"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return f"{path.name}: header length {n} exceeds the file ({size} bytes)"
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            return f"{path.name}: header is not JSON ({e})"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        return f"{path.name}: truncated ({size} bytes, the header describes {8 + n + end})"
    return None


def _zip_problem(path: Path) -> Optional[str]:
    """None if `path` (a torch.save file: a zip archive) has its central directory, i.e. was written to the end."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        return f"{path.name}: not a whole torch file ({e})"
    return None


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why `path` is not a complete checkpoint, or None. Complete: trainer_state.json parses (with a global_step),
    at least one weight file (model or adapter, *.safetensors or *.bin), and every weight and state file
    (*.safetensors: header + sizes; *.bin / *.pt / *.pth: zip directory) is whole."""
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        if "global_step" not in json.loads(state.read_text()):
            return "trainer_state.json has no global_step"
    except (ValueError, UnicodeDecodeError) as e:
        return f"trainer_state.json does not parse ({e})"
    weights = [p for p in path.glob("*") if p.suffix in (".safetensors", ".bin")]
    if not weights:
        return "no weight files (*.safetensors / *.bin)"
    for p in sorted(path.glob("*")):
        problem = (
            _safetensors_problem(p)
            if p.suffix == ".safetensors"
            else _zip_problem(p)
            if p.suffix in (".bin", ".pt", ".pth")
            else None
        )
        if problem:
            return problem
    return None


def last_complete_checkpoint(checkpoints_dir: Path, warn: Callable[[str], None] = log.warning) -> Optional[Path]:
    """The highest-step `checkpoint-N` folder that is complete (`checkpoint_problem`), or None; each newer folder
    that is skipped is reported through `warn`, naming it and why."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    found = []
    for p in checkpoints_dir.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    for _, p in sorted(found, reverse=True):
        problem = checkpoint_problem(p)
        if problem is None:
            return p
        warn(f"skipping incomplete checkpoint {p}: {problem}")
    return None


def load_for_training(model_path: Path, resume: Optional[Path], model_cfg: ModelConfig, lora: bool = False):
    """(model, processor) to train: from `model_path`, or, resuming a full fine-tune, with the weights of the
    checkpoint `resume`; call `train_from_checkpoint` with the trainer built on it.

    Why not just `trainer.train(resume_from_checkpoint=...)`: transformers' Trainer reloads a checkpoint's weights
    with `load_state_dict(strict=False)`, without the key renaming `from_pretrained` applies, and Qwen2.5-VL
    checkpoints are saved under the original key names (`visual.*`, `model.layers.*`), so it matched only `lm_head`
    and kept the base weights for every other tensor (measured: transformers 5.23, 1 of 57 tensors restored) while the
    step, optimizer and scheduler resumed. `from_pretrained(checkpoint)` restores all of them. The config keeps naming
    `model_path` (trl's GRPO loads its reference model from `config._name_or_path`). LoRA checkpoints hold only the
    adapter, which the Trainer reloads itself (through peft).
    """
    from tatar_core.models.loading import load_model_and_processor

    if resume is None or lora:
        return load_model_and_processor(model_path, model_cfg, for_training=True)
    model, processor = load_model_and_processor(resume, model_cfg, for_training=True)
    model.config._name_or_path = str(model_path)
    return model, processor


def train_from_checkpoint(trainer, resume: Optional[Path], lora: bool = False):
    """`trainer.train(resume_from_checkpoint=resume)` for a model from `load_for_training`: the checkpoint's step,
    optimizer, scheduler and RNG states are restored by the Trainer; its weights are already loaded (a full
    fine-tune), so the Trainer's own reload of them (the mismatched one described there) is skipped."""
    if resume is not None and not lora:
        trainer._load_from_checkpoint = lambda *args, **kwargs: None
    return trainer.train(resume_from_checkpoint=str(resume) if resume else None)


def checkpoint_step(path: Optional[Path]) -> int:
    m = _CKPT_RE.match(Path(path).name) if path else None
    return int(m.group(1)) if m else 0


def save_final(trainer, processor, final_dir: Path, lora_base: Optional[tuple[Path, ModelConfig]] = None) -> None:
    """Save weights + processor to final_dir (every process calls it: ZeRO-3 gathers).

    With LoRA, `lora_base` = (base model folder, model config): the trainer saves the adapter (gathered) into
    final_dir.parent/"adapter", then the main process merges it into the base read from disk
    (`tatar_core.models.lora.merge_adapter`) and saves the merged model.
    """
    final_dir.mkdir(parents=True, exist_ok=True)
    main = trainer.accelerator.is_main_process
    if lora_base is None:
        trainer.save_model(str(final_dir))
    else:
        from tatar_core.models.loading import load_model_and_processor
        from tatar_core.models.lora import merge_adapter

        base_dir, model_cfg = lora_base
        adapter_dir = final_dir.parent / "adapter"
        trainer.save_model(str(adapter_dir))
        if main:
            merge_adapter(
                Path(base_dir),
                adapter_dir,
                final_dir,
                lambda p: load_model_and_processor(p, model_cfg, for_training=True)[0],
            )
    if main:
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
    if launch_cfg.python:  # the training environment's interpreter and its accelerate
        cmd = [launch_cfg.python, "-m", "accelerate.commands.launch"]
    elif script.exists():
        cmd = [str(script), "launch"]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
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


def score_label_positions_only() -> None:
    """Make trl's fused LM head score only the positions that have a label on CPU, as it already does with Triton.

    trl 1.16 (`trl.trainer.utils._fused_forward`, used by SFTTrainer's loss and GRPOTrainer's log-probabilities)
    projects hidden states onto the vocabulary in chunks; on devices without Triton it scores *every* position of
    the batch (prompt and image tokens too) so that tile shapes stay fixed for graph compilers (Neuron). Eager CPU
    compiles nothing, and positions labelled -100 add exactly zero to the loss and its gradient, so scoring only the
    labelled ones gives the same loss and gradients (tests/test_train_sft.py) in less time: an embedded-model SFT
    step 2.3x faster (scripts/bench_sft_loss.py). CUDA and other devices keep trl's choice. Idempotent; the original
    test stays reachable as `trl.trainer.utils._use_triton.__wrapped__`; a no-op on trl versions without it.

    trl 1.16 has no public option for this (the trainers call `add_fused_lm_head` themselves and it reads the module
    global `_use_triton` on every forward), so this replaces a private function: tests/test_trl_private_patch.py
    fails, saying what to re-check, when trl is not the pinned version or the function moves or changes.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "label_positions_only", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    compact.__wrapped__, compact.label_positions_only = original, True
    trl_utils._use_triton = compact


def distributed_state():
    """accelerate's PartialState, on CPU when the launch asked for it (ACCELERATE_USE_CPU, as TrainingArguments)."""
    from accelerate import PartialState

    cpu = os.environ.get(CPU_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return PartialState(cpu=cpu)


def spec_path(out_dir: Path | str) -> Path:
    """Where `run_launched` writes the launched job's spec: out_dir/launch/spec.json."""
    return Path(out_dir) / "launch" / "spec.json"


def write_spec(
    stage: str,
    out_dir: Path,
    records: Sequence[BaseModel],
    record_model: type[BaseModel],
    model_path: Path,
    cfg: BaseModel,
    model_cfg: ModelConfig,
) -> Path:
    """Write the launched job's inputs into out_dir/launch: records.parquet + spec.json (configs as JSON).

    Paths inside the run folder (`run_root_of(out_dir)`) are stored relative to it, the run folder itself relative to
    the spec's folder, so the job finds everything wherever the run folder is mounted."""
    spec_file = spec_path(out_dir)
    spec_dir = spec_file.parent
    spec_dir.mkdir(parents=True, exist_ok=True)
    root = run_root_of(Path(out_dir).resolve())
    records_path = write_records(list(records), spec_dir / "records.parquet", record_model, run_root=root)
    spec = {
        "stage": stage,
        "run_root": os.path.relpath(root, spec_dir.resolve()),
        "records": stored_path(records_path, root),
        "record_model": record_model.__name__,
        "model_path": stored_path(model_path, root),
        "out_dir": stored_path(out_dir, root),
        "cfg": cfg.model_dump(mode="json"),
        "model_cfg": model_cfg.model_dump(mode="json"),
    }
    atomic_write_text(spec_file, json.dumps(spec, indent=1))
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
    root = os.path.normpath(local_path(raw["run_root"], path.parent))
    return {
        "stage": raw["stage"],
        "records": read_records(local_path(raw["records"], root), record_model, run_root=root),
        "model_path": Path(local_path(raw["model_path"], root)),
        "out_dir": Path(local_path(raw["out_dir"], root)),
        "cfg": cfg_model.model_validate(raw["cfg"]),
        "model_cfg": ModelConfig.model_validate(raw["model_cfg"]),
    }


def run_launched(
    stage: str,
    out_dir: Path,
    records: Sequence[BaseModel],
    record_model: type[BaseModel],
    model_path: Path,
    cfg: BaseModel,
    model_cfg: ModelConfig,
    tail_lines: int = 60,
    log: Callable[[str], None] = print,
    progress: ProgressFn = no_progress,
) -> dict:
    """Write the spec, run `launch_command` as a subprocess (output streamed, its event lines to `log` /
    `progress`), return the job's result dict."""
    out_dir = Path(out_dir)
    python = cfg.launch.python
    if python and not (Path(python).is_file() and os.access(python, os.X_OK)):
        raise LaunchError(
            f"{stage}: launch.python {python} is not an executable file (the training environment: "
            "`make gpu-env` builds .venv-gpu where CUDA exists)"
        )
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
    errors: dict[str, None] = {}  # the processes' exception lines, first seen first (torchrun's summary buries them)
    print("launching:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        if dispatch_event(line.rstrip("\n"), log, progress):
            continue
        sys.stdout.write(line)
        tail.append(line)
        m = _EXCEPTION_LINE.match(line)
        if m and len(errors) < 10:
            errors[m.group(1).strip()] = None
    rc = proc.wait()
    if rc != 0:
        said = "".join(f"\n  {e}" for e in errors) if errors else " (no Python exception in the output)"
        raise LaunchError(
            f"{stage}: `{' '.join(cmd[:3])} …` exited with {rc}; the job raised:{said}\nlast output:\n" + "".join(tail)
        )
    if not result_path.exists():
        raise LaunchError(f"{stage}: launched job finished but wrote no {result_path}; last output:\n" + "".join(tail))
    return json.loads(result_path.read_text())


def job_info() -> dict:
    """The interpreter that runs this (launched) job and every Prefect module it has loaded (there must be none)."""
    return {
        "python": sys.executable,
        "prefect_modules": sorted(m for m in sys.modules if m.split(".")[0] == "prefect"),
    }


def write_result(out_dir: Path, result: dict) -> None:
    """The launched job's result dict, with `job_info()` under "job", atomically into out_dir/launch/result.json."""
    atomic_write_text(Path(out_dir) / RESULT_FILE, json.dumps({**result, "job": job_info()}, indent=1, default=float))


__all__ = [
    "launch_command",
    "run_launched",
    "write_spec",
    "read_spec",
    "write_result",
    "last_complete_checkpoint",
    "checkpoint_problem",
    "load_for_training",
    "train_from_checkpoint",
    "checkpoint_step",
    "is_launched_process",
    "LaunchError",
    "save_final",
    "distributed_state",
    "apply_threads",
    "spec_path",
    "job_info",
]
