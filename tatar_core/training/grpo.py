"""Stage 3: GRPO from the SFT checkpoint (trl.GRPOTrainer) with the rewards of tatar_core.method.rewards.

Step composition (what one optimizer step holds, over all processes):

    P = cfg.prompts_per_step distinct images, G = cfg.num_generations completions each, C = P·G completions;
    C = per_device_train_batch_size · num_processes · gradient_accumulation_steps      (steps_per_generation = GA)

trl generates one batch of C completions per optimizer step; with shuffle_dataset=False its RepeatSampler walks
the dataset in order, block by block of P rows, and process k receives the k-th contiguous C/num_processes slice.
`plan_order` therefore lays the dataset out as one block of P distinct images per step, drawn from seeded,
reshuffled-every-pass task streams, with n_iaa = clamp(round(P·f_iaa), min_iaa_images_per_step, P) IAA images
(f_iaa = IAA share of the data) placed at evenly spaced positions so every process holds some; the rank reward
all-gathers completions so it ranks all IAA images of the step. Settings that cannot satisfy this raise ValueError.

Logs: per logging step and task, the reward components (one per registered reward) / words / parse rate (RewardStats)
and the group statistics of the summed reward (within-group std, advantage variance, share of zero-variance groups:
GroupStats), combined across processes, go into the trainer logs ("iqa/reward_score", ...) and
out_dir/"train_log.parquet" (TrainLogRecord, a `reward_<name>` column per reward);
each rank-reward gather is recorded in out_dir/"gather_log"/process-{k}.jsonl (local vs gathered sample_ids).
Checkpoints: out_dir/"checkpoints" (resume from the last complete one); final model + processor: out_dir/"model"
(with `lora.enabled`: the adapter in out_dir/"adapter", merged into the SFT model; the KL reference is the model
with the adapter disabled, so no reference copy is loaded).
Generation: HF `generate` in the trainer, or vLLM (`grpo.vllm`, mapped onto trl's use_vllm / vllm_* fields).
Reporting: `ReportCallback` (progress per step; a line per logging step: reward per component and task, words,
parse rate, KL, ETA); at the end out_dir/"log_history.json" and the curves in out_dir/"curves" (reward per task,
words, parse rate, KL).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from data_contracts import StageContext, StageOutputs, StageResult
from data_contracts.config import PipelineConfig
from data_contracts.config.model import ModelConfig
from data_contracts.config.training import GrpoConfig
from data_contracts.manifest import ProgressFn, no_progress
from data_contracts.parquet_io import read_records, write_records
from data_contracts.records import SampleRecord, TrainLogRecord
from tatar_core.method.prompts import TASKS, prompt_messages

TRAIN_LOG = "train_log.parquet"
GATHER_LOG_DIR = "gather_log"


@dataclass(frozen=True)
class BatchPlan:
    """trl batch settings that realize `prompts_per_step` prompts per optimizer step."""

    num_processes: int
    prompts_per_step: int
    num_generations: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations


def batch_plan(cfg: GrpoConfig, num_processes: int) -> BatchPlan:
    """Per-device batch and accumulation such that per_device · processes · GA = prompts_per_step · G."""
    P, G, ga = cfg.prompts_per_step, cfg.num_generations, cfg.gradient_accumulation_steps
    C = P * G
    if C % (num_processes * ga) != 0:
        raise ValueError(
            f"grpo: prompts_per_step·num_generations = {P}·{G} = {C} completions per step is not divisible by "
            f"num_processes·gradient_accumulation_steps = {num_processes}·{ga}; change prompts_per_step, "
            "num_generations, gradient_accumulation_steps or launch.num_processes"
        )
    per_device = C // (num_processes * ga)
    if cfg.per_device_train_batch_size is not None and cfg.per_device_train_batch_size != per_device:
        raise ValueError(
            f"grpo: per_device_train_batch_size={cfg.per_device_train_batch_size} gives "
            f"{cfg.per_device_train_batch_size * num_processes * ga} completions per step, but prompts_per_step·"
            f"num_generations = {C} (with {num_processes} processes and GA {ga} it must be {per_device}; "
            "or leave it unset)"
        )
    return BatchPlan(num_processes, P, G, per_device, ga)


def select_train(train: Sequence[SampleRecord], cfg: GrpoConfig) -> list[SampleRecord]:
    """Train-split samples, at most cfg.max_train_samples (seeded, per-task proportional, IAA kept ≥ min_iaa)."""
    rows = sorted((r for r in train if r.split == "train"), key=lambda r: r.sample_id)
    n = cfg.max_train_samples
    if n is None or n >= len(rows):
        return rows
    rng = random.Random(f"select:{cfg.seed}")
    by_task = {t: [r for r in rows if r.task == t] for t in TASKS}
    for t in TASKS:
        rng.shuffle(by_task[t])
    n_iaa = round(n * len(by_task["iaa"]) / len(rows))
    if by_task["iaa"]:
        n_iaa = max(n_iaa, min(cfg.min_iaa_images_per_step, len(by_task["iaa"])))
    n_iaa = min(n_iaa, len(by_task["iaa"]), n)
    n_iqa = min(n - n_iaa, len(by_task["iqa"]))
    return sorted(by_task["iqa"][:n_iqa] + by_task["iaa"][:n_iaa], key=lambda r: r.sample_id)


class _Stream:
    """Endless seeded stream over items: a fresh shuffle each pass; `take(k)` returns k distinct items."""

    def __init__(self, items: Sequence[SampleRecord], rng: random.Random):
        self.items, self.rng, self.queue = list(items), rng, deque()

    def _refill(self) -> None:
        order = list(self.items)
        self.rng.shuffle(order)
        self.queue.extend(order)

    def take(self, k: int) -> list[SampleRecord]:
        if k > len(self.items):
            raise ValueError(f"cannot take {k} distinct items from {len(self.items)}")
        out, seen, deferred = [], set(), []
        while len(out) < k:
            if not self.queue:
                self._refill()
            item = self.queue.popleft()
            if item.sample_id in seen:
                deferred.append(item)
                continue
            seen.add(item.sample_id)
            out.append(item)
        self.queue.extendleft(reversed(deferred))
        return out


def iaa_per_step(cfg: GrpoConfig, n_iqa: int, n_iaa: int) -> int:
    """IAA images per step: all of P with only IAA data, 0 without IAA, else clamp(round(P·f_iaa), min_iaa, P)."""
    P = cfg.prompts_per_step
    if n_iaa == 0:
        return 0
    if n_iqa == 0:
        k = P
    else:
        k = min(P, max(cfg.min_iaa_images_per_step, round(P * n_iaa / (n_iqa + n_iaa))))
        k = max(k, P - n_iqa)  # too few distinct IQA images to fill the rest
    if k > n_iaa:
        raise ValueError(
            f"grpo: each step needs {k} distinct IAA images (min_iaa_images_per_step="
            f"{cfg.min_iaa_images_per_step}, prompts_per_step={P}, {n_iqa} IQA images) but the train data has only "
            f"{n_iaa}; lower min_iaa_images_per_step / prompts_per_step or add IAA data"
        )
    if P - k > n_iqa:
        raise ValueError(f"grpo: prompts_per_step={P} distinct images per step, but only {n_iqa + n_iaa} exist")
    return k


def total_steps(cfg: GrpoConfig, n_samples: int) -> int:
    """cfg.max_steps if > 0, else ceil(num_train_epochs · n_samples / prompts_per_step)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.num_train_epochs * n_samples / cfg.prompts_per_step))


def plan_order(train: Sequence[SampleRecord], cfg: GrpoConfig, steps: int) -> list[SampleRecord]:
    """The dataset in trl's reading order: `steps` blocks of prompts_per_step distinct images (see module doc)."""
    P = cfg.prompts_per_step
    by_task = {t: [r for r in train if r.task == t] for t in TASKS}
    k_iaa = iaa_per_step(cfg, len(by_task["iqa"]), len(by_task["iaa"]))
    rng = random.Random(f"grpo-order:{cfg.seed}")
    streams = {t: _Stream(by_task[t], rng) for t in TASKS}
    iaa_slots = {math.floor((j + 0.5) * P / k_iaa) for j in range(k_iaa)} if k_iaa else set()
    order: list[SampleRecord] = []
    for _ in range(steps):
        iaa = streams["iaa"].take(k_iaa) if k_iaa else []
        iqa = streams["iqa"].take(P - k_iaa) if P - k_iaa else []
        iaa_it, iqa_it = iter(iaa), iter(iqa)
        order += [next(iaa_it) if pos in iaa_slots else next(iqa_it) for pos in range(P)]
    return order


# ---------------------------------------------------------------- gather + logging
def make_gather(num_processes: int, process_index: int, log_dir: Optional[Path] = None) -> Callable[[list], list]:
    """All-gather of python lists across processes (identity for one process); records each call as a JSONL line."""
    from accelerate.utils import gather_object

    log_path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"process-{process_index}.jsonl"
    calls = {"n": 0}

    def gather(items: list) -> list:
        out = gather_object(items) if num_processes > 1 else list(items)
        calls["n"] += 1
        if log_path is not None:

            def columns(parts: list) -> list[dict]:  # the rank reward's payloads (see rewards.gather_guarded)
                return [
                    p["data"]
                    for p in parts
                    if isinstance(p, dict) and isinstance(p.get("data"), dict) and "sample_id" in p["data"]
                ]

            local = columns(items)
            if local:
                rec = {
                    "call": calls["n"],
                    "process": process_index,
                    "local": sorted({(s, t) for p in local for s, t in zip(p["sample_id"], p["task"])}),
                    "gathered": [sorted({(s, t) for s, t in zip(p["sample_id"], p["task"])}) for p in columns(out)],
                }
                with log_path.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
        return out

    return gather


SUMMED = ("n", "groups")  # counts: summed over processes; every other key is an n-weighted mean


def combine_summaries(parts: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Merge RewardStats.summary() dicts of several processes: n-weighted means (NaN parts left out), counts summed."""
    out: dict[str, dict[str, float]] = {}
    for t in TASKS:
        rows = [p[t] for p in parts if t in p and p[t].get("n", 0) > 0]
        if not rows:
            continue
        n = sum(r["n"] for r in rows)
        merged = {}
        for k in rows[0]:
            if k in SUMMED:
                merged[k] = sum(r.get(k, 0) for r in rows)
                continue
            ok = [r for r in rows if k in r and math.isfinite(r[k])]
            w = sum(r["n"] for r in ok)
            merged[k] = sum(r[k] * r["n"] for r in ok) / w if w else float("nan")
        out[t] = {**merged, "n": n}
    return out


def _summaries(stats, groups) -> Callable[[], dict]:
    """This process's per-task summary: RewardStats' means with GroupStats' group statistics."""

    def both() -> dict:
        rs, gs = stats.summary(), groups.summary()
        return {t: {**v, **gs.get(t, {})} for t, v in rs.items()}

    return both


def _log_callback(stats, gather, out_dir: Path, is_main: bool, keep_until_step: int, groups=None):
    from transformers import TrainerCallback

    from tatar_core.method.rewards import gather_guarded
    from tatar_core.training.group_stats import GroupStats

    groups = groups if groups is not None else GroupStats()
    log_path = out_dir / TRAIN_LOG
    history: list[TrainLogRecord] = []
    if is_main and log_path.exists():  # resumed run: keep the rows up to the checkpoint
        history = [r for r in read_records(log_path, TrainLogRecord) if r.step <= keep_until_step]

    class TrainLogCallback(TrainerCallback):
        """Per logging step: per-task reward summary -> trainer logs + train_log.parquet; then reset the stats."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "loss" not in logs:
                return
            parts, _ = gather_guarded(gather, "GRPO log callback (reward summaries)", _summaries(stats, groups))
            summary = combine_summaries(parts)
            stats.reset()
            groups.reset()
            for task, vals in summary.items():
                for k, v in vals.items():
                    logs[f"{task}/{k}"] = v
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update({k: v for k, v in logs.items() if "/" in k and k[:3] in TASKS})
            if is_main and summary:
                for task, v in summary.items():  # v: n, reward_<name> per registered reward, reward_total, ...
                    history.append(
                        TrainLogRecord(
                            step=state.global_step,
                            task=task,
                            **{**v, "n": int(v["n"]), **({"groups": int(v["groups"])} if "groups" in v else {})},
                        )
                    )
                write_records(history, log_path, TrainLogRecord)

    return TrainLogCallback(), history


# ---------------------------------------------------------------- run
def run_grpo(
    train: list[SampleRecord],
    init_model_path: Path,
    cfg: GrpoConfig,
    model_cfg: ModelConfig,
    out_dir: Path,
    log: Callable[[str], None] = print,
    progress: ProgressFn = no_progress,
) -> dict:
    """GRPO from `init_model_path` on the train split of `train`; returns steps, seconds, per-task reward means.

    Dispatches on cfg.launch.mode ("inprocess" here, "accelerate" through tatar_core.training.launch); either way
    the training log lines go to `log` and the step count to `progress`.
    """
    from tatar_core.training import launch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not [r for r in train if r.split == "train"]:
        raise ValueError("grpo: no train-split samples")
    from tatar_core.method.rewards import check_weights

    check_weights(cfg)  # unknown reward names fail before any work
    if cfg.launch.mode == "accelerate" and not launch.is_launched_process():
        batch_plan(cfg, cfg.launch.num_processes)  # fail before launching
        return launch.run_launched(
            "grpo", out_dir, train, SampleRecord, init_model_path, cfg, model_cfg, log=log, progress=progress
        )
    return _run_grpo_here(train, Path(init_model_path), cfg, model_cfg, out_dir, log, progress)


# trl arguments the GRPO stage defaults (change them through grpo.trainer_args)
GRPO_TRAINER_DEFAULTS = dict(
    logging_steps=1, lr_scheduler_type="linear", warmup_steps=0, log_completions=False, disable_tqdm=True
)  # the stage reports progress through its context


def grpo_args(cfg: GrpoConfig, plan: BatchPlan, steps: int, out_dir: Path):
    """trl's GRPOConfig for this stage (`launch.trainer_kwargs` gives the order of precedence)."""
    from trl import GRPOConfig as TrlGRPOConfig

    from tatar_core.method.rewards import trl_reward_weights
    from tatar_core.training.launch import trainer_kwargs

    return TrlGRPOConfig(
        **trainer_kwargs(
            cfg,
            out_dir,
            GRPO_TRAINER_DEFAULTS,
            cfg.vllm.trl_kwargs()
            | dict(
                beta=cfg.beta,
                num_generations=cfg.num_generations,
                temperature=cfg.temperature,
                max_completion_length=cfg.max_completion_length,
                loss_type=cfg.loss_type,
                per_device_train_batch_size=plan.per_device_train_batch_size,
                gradient_accumulation_steps=plan.gradient_accumulation_steps,
                steps_per_generation=plan.gradient_accumulation_steps,
                num_iterations=1,
                shuffle_dataset=False,
                max_steps=steps,
                num_train_epochs=1,
                reward_weights=trl_reward_weights(),
            ),
        )
    )


def check_collective_invariants(args, plan: BatchPlan) -> None:
    """The cross-process IAA ranking gathers the completions of one optimizer step from every process; that is
    one generation's worth only if trl generates once per optimizer step (steps_per_generation == gradient
    accumulation), uses each generation once (num_iterations == 1) and reads the dataset in `plan_order`'s order
    (no shuffling). Checked on the GRPOConfig the trainer gets; raises ValueError naming what differs."""
    wrong = []
    if args.steps_per_generation != args.gradient_accumulation_steps:
        wrong.append(
            f"steps_per_generation={args.steps_per_generation} != gradient_accumulation_steps="
            f"{args.gradient_accumulation_steps}"
        )
    if args.num_iterations != 1:
        wrong.append(f"num_iterations={args.num_iterations} (must be 1)")
    if args.shuffle_dataset:
        wrong.append("shuffle_dataset=True (the sampler must read plan_order's blocks in order)")
    if args.generation_batch_size != plan.completions_per_step:
        wrong.append(
            f"generation_batch_size={args.generation_batch_size} != prompts_per_step·num_generations="
            f"{plan.completions_per_step}"
        )
    if wrong:
        raise ValueError(
            "grpo: the cross-process IAA ranking needs one generation per optimizer step, read in "
            "order: " + "; ".join(wrong)
        )


def _run_grpo_here(
    train,
    model_path: Path,
    cfg: GrpoConfig,
    model_cfg: ModelConfig,
    out_dir: Path,
    log: Callable[[str], None],
    progress: ProgressFn,
) -> dict:
    from trl import GRPOTrainer

    from tatar_core.method.rewards import RewardStats, make_reward_funcs
    from tatar_core.models import draft_corpus, lora
    from tatar_core.models.loading import check_master_weights, image_dataset
    from tatar_core.training import curves, launch
    from tatar_core.training.callbacks import ReportCallback, quiet_printer
    from tatar_core.training.group_stats import GroupStats, scale_mode

    launch.apply_threads(cfg.launch)
    launch.score_label_positions_only()
    t0 = time.time()
    state = launch.distributed_state()
    plan = batch_plan(cfg, state.num_processes)
    samples = select_train(train, cfg)
    steps = total_steps(cfg, len(samples))
    order = plan_order(samples, cfg, steps)
    dataset = image_dataset(
        [
            {
                "image_path": r.image_path,
                "prompt": prompt_messages(r.task),
                "task": r.task,
                "score": r.score,
                "sample_id": r.sample_id,
            }
            for r in order
        ],
        ("prompt", "task", "score", "sample_id"),
    )
    check_master_weights(model_cfg, "grpo", cfg)
    args = grpo_args(cfg, plan, steps, out_dir)  # before the model: ZeRO-3 loading needs the DeepSpeed config
    check_collective_invariants(args, plan)
    resume = launch.last_complete_checkpoint(out_dir / "checkpoints")
    model, processor = launch.load_for_training(model_path, resume, model_cfg, lora=cfg.lora.enabled)
    stats, groups = RewardStats(), GroupStats(scale_mode(cfg.trainer_args))
    gather = make_gather(state.num_processes, state.process_index, out_dir / GATHER_LOG_DIR)
    callback, history = _log_callback(
        stats, gather, out_dir, state.is_main_process, launch.checkpoint_step(resume), groups
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=groups.wrap(make_reward_funcs(cfg, gather=gather, stats=stats)),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[callback, ReportCallback("grpo", log, progress)],
        peft_config=lora.peft_config(cfg.lora) if cfg.lora.enabled else None,
    )
    quiet_printer(trainer)
    launch.train_from_checkpoint(trainer, resume, lora=cfg.lora.enabled)
    final_dir = out_dir / "model"
    launch.save_final(trainer, processor, final_dir, lora_base=(model_path, model_cfg) if cfg.lora.enabled else None)
    if state.is_main_process:
        draft_corpus.copy_corpus(model_path, final_dir)
        write_records(history, out_dir / TRAIN_LOG, TrainLogRecord)  # also when the resume had no step left to log
        curves.save_log_history(trainer.state.log_history, out_dir)
        curves.grpo_curves(trainer.state.log_history, history, out_dir)

    result = {
        "steps": int(trainer.state.global_step),
        "resumed_from_step": launch.checkpoint_step(resume),
        "seconds": round(time.time() - t0, 2),
        "num_processes": plan.num_processes,
        "prompts_per_step": plan.prompts_per_step,
        "per_device_train_batch_size": plan.per_device_train_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "iaa_images_per_step": iaa_per_step(
            cfg, sum(r.task == "iqa" for r in samples), sum(r.task == "iaa" for r in samples)
        ),
        "train_samples": len(samples),
        "model_dir": str(final_dir),
        **_reward_means(history),
    }
    if state.is_main_process and launch.is_launched_process():
        launch.write_result(out_dir, result)
    return result


def _reward_means(history: Sequence[TrainLogRecord]) -> dict:
    """{"rewards_first": {task: {...}}, "rewards_last": {task: {...}}} from the logged rows (main process)."""
    out: dict = {"rewards_first": {}, "rewards_last": {}}
    for task in TASKS:
        rows = [r for r in history if r.task == task]
        if rows:
            for key, row in (("rewards_first", rows[0]), ("rewards_last", rows[-1])):
                out[key][task] = {
                    "reward_total": row.reward_total,
                    **row.model_extra,
                    "words": row.words,
                    "parse_rate": row.parse_rate,
                    "group_std": row.group_std,
                    "adv_var": row.adv_var,
                    "zero_std_frac": row.zero_std_frac,
                }
    return out


def run_stage(cfg: PipelineConfig, out_dir: Path, upstream: dict[str, StageResult], ctx: StageContext) -> StageOutputs:
    """GRPO from the SFT checkpoint on the train split of the samples."""
    from tatar_core.samples.stage import read_samples

    train = read_samples(upstream["samples"], "train")
    metrics = run_grpo(
        train, upstream["sft"].path("model"), cfg.grpo, cfg.model, out_dir, log=ctx.log, progress=ctx.progress
    )
    counts = {"train_samples": len(train), **({"steps": int(metrics["steps"])} if "steps" in metrics else {})}
    return StageOutputs(
        {"model": "model", "train_log": TRAIN_LOG, "curves": "curves", "log_history": "log_history.json"},
        counts,
        metrics,
    )


__all__ = [
    "run_grpo",
    "batch_plan",
    "plan_order",
    "select_train",
    "iaa_per_step",
    "total_steps",
    "make_gather",
    "combine_summaries",
    "BatchPlan",
    "check_collective_invariants",
    "grpo_args",
]
