"""Stage 2: supervised fine-tuning on the kept teacher rationales (trl.SFTTrainer, completion-only loss).

Rows: {"images": [PIL], "prompt": prompt_messages(task), "completion": completion_message(target)}.

- Asymmetric thought dropout: row r of task t keeps its rationale unless u_r < p_t, where
  u_r = Random(f"{seed}:{sample_id}").random() (deterministic per row, independent of order) and p_t is
  cfg.thought_dropout_{iqa,iaa}; a dropped row's target is make_target("", score) (empty think).
- Task mix: datasets.interleave_datasets([iqa, iaa], probabilities=[f, 1−f], stopping_strategy="all_exhausted",
  seed) with f = cfg.iqa_fraction, so the smaller task is oversampled; one task absent (or f ∈ {0, 1}) -> only the
  other task.
- Optional score-token loss (`score_loss_weight` > 0): L = L_trl + w · L_score, a Gaussian soft label on the answer's
  leading score token (`tatar_core.training.score_loss`); off by default (the paper's loss).
- Checkpoints: out_dir/"checkpoints"/checkpoint-N every `save_steps` (trainer_args, default 100); a rerun resumes
from the last complete one.
  Final model + processor: out_dir/"model" (with `lora.enabled`: the adapter in out_dir/"adapter", merged into
  the base for out_dir/"model").
- Order: the trl arguments are built before the model loads (under DeepSpeed ZeRO-3 they register the config that
  makes `from_pretrained` load partitioned); weights load in model.train_dtype (fp32 master weights by default).
- Reporting: `ReportCallback` (progress per step, a line per logging step: loss, lr, token accuracy, tokens/s, ETA);
  at the end out_dir/"log_history.json" and the curves out_dir/"curves"/{loss,token_accuracy}.png.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Sequence

from data_contracts import StageContext, StageOutputs, StageResult
from data_contracts.config import PipelineConfig
from data_contracts.config.model import ModelConfig
from data_contracts.config.training import SftConfig
from data_contracts.manifest import ProgressFn, no_progress
from data_contracts.records import KeptRecord
from tatar_core.method.prompts import TASKS, completion_message, make_target, prompt_messages


def drops_thought(seed: int, sample_id: str, p: float) -> bool:
    """True when this row's rationale is dropped (probability p, deterministic per (seed, sample_id))."""
    if p <= 0.0:
        return False
    if p >= 1.0:
        return True
    return random.Random(f"{seed}:{sample_id}").random() < p


def mixed_order(kept: Sequence[KeptRecord], cfg: SftConfig) -> list[KeptRecord]:
    """The interleaved training order (with oversampling of the smaller task), deterministic for cfg.seed."""
    from datasets import Dataset, interleave_datasets

    by_task = {t: sorted((r for r in kept if r.task == t), key=lambda r: r.sample_id) for t in TASKS}
    probs = {"iqa": cfg.iqa_fraction, "iaa": 1.0 - cfg.iqa_fraction}
    present = [t for t in TASKS if by_task[t] and probs[t] > 0]
    if not present:
        have = [t for t in TASKS if by_task[t]]
        raise ValueError(
            f"sft: no training rows for the configured mix (rows for {have or 'no task'}, "
            f"iqa_fraction={cfg.iqa_fraction})"
        )
    if len(present) == 1:
        return list(by_task[present[0]])
    index = {f"{t}:{i}": r for t in present for i, r in enumerate(by_task[t])}
    parts = [Dataset.from_dict({"key": [f"{t}:{i}" for i in range(len(by_task[t]))]}) for t in present]
    mixed = interleave_datasets(
        parts, probabilities=[probs[t] for t in present], seed=cfg.seed, stopping_strategy="all_exhausted"
    )
    return [index[k] for k in mixed["key"]]


def build_sft_rows(kept: Sequence[KeptRecord], cfg: SftConfig) -> tuple[list[dict], dict]:
    """Training rows in mixed order (image as a path), and counts {"rows_iqa", "rows_iaa", "dropped_iqa", ...}."""
    counts = {"rows_iqa": 0, "rows_iaa": 0, "dropped_iqa": 0, "dropped_iaa": 0}
    p = {"iqa": cfg.thought_dropout_iqa, "iaa": cfg.thought_dropout_iaa}
    rows = []
    for r in mixed_order(kept, cfg):
        drop = drops_thought(cfg.seed, r.sample_id, p[r.task])
        target = make_target("", r.score) if drop else r.target
        counts[f"rows_{r.task}"] += 1
        counts[f"dropped_{r.task}"] += int(drop)
        rows.append(
            {
                "image_path": r.image_path,
                "prompt": prompt_messages(r.task),
                "completion": completion_message(target),
                "task": r.task,
                "sample_id": r.sample_id,
            }
        )
    return rows, counts


# trl arguments the SFT stage defaults (change them through sft.trainer_args)
# (disable_tqdm: the stage reports progress through its context; set it False for trl's own bar)
SFT_TRAINER_DEFAULTS = dict(logging_steps=10, lr_scheduler_type="linear", disable_tqdm=True)


def sft_args(cfg: SftConfig, out_dir: Path):
    """trl's SFTConfig for this stage (`launch.trainer_kwargs` gives the order of precedence)."""
    from trl import SFTConfig

    from tatar_core.training.launch import trainer_kwargs

    return SFTConfig(
        **trainer_kwargs(
            cfg,
            out_dir,
            SFT_TRAINER_DEFAULTS,
            dict(
                num_train_epochs=cfg.num_train_epochs,
                max_steps=cfg.max_steps,
                per_device_train_batch_size=cfg.per_device_train_batch_size,
                gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                max_length=None,
                completion_only_loss=True,
            ),
        )
    )


def run_sft(
    kept: list[KeptRecord],
    model_path: Path,
    cfg: SftConfig,
    model_cfg: ModelConfig,
    out_dir: Path,
    log: Callable[[str], None] = print,
    progress: ProgressFn = no_progress,
) -> dict:
    """Fine-tune `model_path` on `kept`; returns {"train_loss", "steps", "seconds", "rows_*", "dropped_*", ...}.

    Dispatches on cfg.launch.mode ("inprocess" here, "accelerate" through tatar_core.training.launch); either way
    the training log lines go to `log` and the step count to `progress`.
    """
    from tatar_core.training import launch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not kept:
        raise ValueError("sft: no kept rationales to train on")
    if cfg.launch.mode == "accelerate" and not launch.is_launched_process():
        return launch.run_launched(
            "sft", out_dir, kept, KeptRecord, model_path, cfg, model_cfg, log=log, progress=progress
        )
    return _run_sft_here(kept, Path(model_path), cfg, model_cfg, out_dir, log, progress)


def _run_sft_here(
    kept,
    model_path: Path,
    cfg: SftConfig,
    model_cfg: ModelConfig,
    out_dir: Path,
    log: Callable[[str], None],
    progress: ProgressFn,
) -> dict:
    from trl import SFTTrainer

    from tatar_core.models import draft_corpus, lora
    from tatar_core.models.loading import check_master_weights, image_dataset
    from tatar_core.training import curves, launch
    from tatar_core.training.callbacks import ReportCallback, quiet_printer

    launch.apply_threads(cfg.launch)
    launch.score_label_positions_only()
    t0 = time.time()
    rows, counts = build_sft_rows(kept, cfg)
    train = image_dataset(rows, ("prompt", "completion"))
    check_master_weights(model_cfg, "sft", cfg)
    args = sft_args(cfg, out_dir)  # before the model: ZeRO-3 loading needs the DeepSpeed config registered
    resume = launch.last_complete_checkpoint(out_dir / "checkpoints")
    model, processor = launch.load_for_training(model_path, resume, model_cfg, lora=cfg.lora.enabled)
    peft_config = lora.peft_config(cfg.lora) if cfg.lora.enabled else None
    kwargs = dict(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[ReportCallback("sft", log, progress)],
    )
    if cfg.score_loss_weight > 0:
        from tatar_core.training.score_loss import ScoreLossSFTTrainer

        trainer = ScoreLossSFTTrainer(
            **kwargs, score_loss_weight=cfg.score_loss_weight, score_label_sigma=cfg.score_label_sigma
        )
    else:
        trainer = SFTTrainer(**kwargs)
    quiet_printer(trainer)
    output = launch.train_from_checkpoint(trainer, resume, lora=cfg.lora.enabled)
    final_dir = out_dir / "model"
    launch.save_final(trainer, processor, final_dir, lora_base=(model_path, model_cfg) if cfg.lora.enabled else None)
    if trainer.accelerator.is_main_process:  # the scorer drafts from the training targets
        draft_corpus.write_corpus(
            final_dir, [(r["sample_id"], r["task"], r["completion"][0]["content"][0]["text"]) for r in rows]
        )
        curves.save_log_history(trainer.state.log_history, out_dir)
        curves.sft_curves(trainer.state.log_history, out_dir)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = {
        "train_loss": float(output.training_loss),
        "first_logged_loss": float(losses[0]) if losses else None,
        "last_logged_loss": float(losses[-1]) if losses else None,
        "steps": int(trainer.state.global_step),
        "resumed_from_step": launch.checkpoint_step(resume),
        "seconds": round(time.time() - t0, 2),
        "num_processes": int(trainer.accelerator.num_processes),
        "model_dir": str(final_dir),
        **counts,
    }
    if trainer.accelerator.is_main_process and launch.is_launched_process():
        launch.write_result(out_dir, result)
    return result


def run_stage(cfg: PipelineConfig, out_dir: Path, upstream: dict[str, StageResult], ctx: StageContext) -> StageOutputs:
    """SFT of the configured base model (the embedded one is built on first use) on the kept rationales."""
    from tatar_core.models.loading import resolve_model

    kept = upstream["filtered"].records("kept", KeptRecord)
    base = resolve_model(cfg.model, ctx.run_root / "models")
    metrics = run_sft(kept, base, cfg.sft, cfg.model, out_dir, log=ctx.log, progress=ctx.progress)
    counts = {
        "train_rows": len(kept),
        **{k: int(metrics[k]) for k in ("steps", "dropped_iqa", "dropped_iaa") if k in metrics},
    }
    return StageOutputs(
        {"model": "model", "curves": "curves", "log_history": "log_history.json"},
        counts,
        metrics | {"base_model": str(base)},
    )


__all__ = ["run_sft", "build_sft_rows", "mixed_order", "drops_thought"]
