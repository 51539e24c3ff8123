"""Trainer callback that reports training to the stage: progress per optimizer step, one log line per logging step.

    progress(stage, global_step, max_steps, unit="steps", **headline)      every optimizer step (listeners throttle;
                                                                          on a logging step after its line)
    log("[sft] step 120/300 · loss 0.523 · lr 1.2e-03 · token acc 0.81 · 2450 tok/s · ETA 45 s")
    log("[grpo] step 5/20 · kl 0.0012 · ETA 1 min 12 s | iqa reward 1.23 (score 0.45 rank 0 format 0.98) words 3.1
         parse 100% zero-std groups 25% | iaa …")  (one "name value" per `<task>/reward_<name>` key of the logs:
         every reward)

tokens/s = Δ num_tokens / Δ wall time between two logging steps (trl logs the cumulative `num_tokens`).
Only the main process reports. In a launched job the sinks are `tatar_core.progress.EventEmitter` (event lines the
parent turns into its own log/progress), so `tatar run`, Prefect and `accelerate launch` show the same lines.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from transformers import TrainerCallback

from data_contracts.manifest import ProgressFn, no_progress
from tatar_core.method.prompts import TASKS
from tatar_core.progress import Meter, format_duration


def _g(x: Optional[float], spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def _eta(step: int, total: int, eta: Optional[float]) -> str:
    return "done" if step >= total else (f"ETA {format_duration(eta)}" if eta is not None else "")


def sft_line(step: int, total: int, logs: dict, tokens_per_s: Optional[float], eta: Optional[float]) -> str:
    parts = [
        f"[sft] step {step}/{total}",
        f"loss {_g(logs.get('loss'), '.4f')}",
        f"lr {_g(logs.get('learning_rate'), '.2e')}",
    ]
    if "mean_token_accuracy" in logs:
        parts.append(f"token acc {logs['mean_token_accuracy']:.3f}")
    if tokens_per_s is not None:
        parts.append(f"{tokens_per_s:.0f} tok/s")
    parts.append(_eta(step, total, eta))
    return " · ".join(p for p in parts if p)


def grpo_line(step: int, total: int, logs: dict, eta: Optional[float]) -> str:
    head = [f"[grpo] step {step}/{total}"]
    if "kl" in logs:
        head.append(f"kl {logs['kl']:.4g}")
    head.append(_eta(step, total, eta))
    parts = [" · ".join(p for p in head if p)]
    for t in TASKS:
        if f"{t}/reward_total" not in logs:
            continue
        g = lambda k: logs.get(f"{t}/{k}")  # noqa: E731
        rewards = " ".join(
            f"{k.removeprefix(f'{t}/reward_')} {_g(v)}"
            for k, v in logs.items()
            if k.startswith(f"{t}/reward_") and k != f"{t}/reward_total"
        )  # one per registered reward
        zero = g("zero_std_frac")
        parts.append(
            f"{t} reward {_g(g('reward_total'))} ({rewards}) words {_g(g('words'), '.1f')} "
            f"parse {100 * (g('parse_rate') or 0):.0f}%"
            + (f" zero-std groups {100 * zero:.0f}%" if zero is not None and zero == zero else "")
        )
    return " | ".join(parts)


def headline(stage: str, logs: dict) -> dict:
    """The numbers the progress artifact / bar shows next to the step count."""
    if stage == "sft":
        return {"loss": logs.get("loss")}
    return {f"{t} reward": logs[f"{t}/reward_total"] for t in TASKS if f"{t}/reward_total" in logs}


class ReportCallback(TrainerCallback):
    """Reports a trl run of `stage` ("sft" | "grpo") to `log` and `progress` (module docstring)."""

    def __init__(
        self,
        stage: str,
        log: Callable[[str], None] = print,
        progress: ProgressFn = no_progress,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stage, self._log, self._progress, self.clock = stage, log, progress, clock
        self.meter = Meter(clock)
        self.info: dict = {}
        self._tokens: Optional[tuple[float, float]] = None  # (time, num_tokens) at the last logging step
        self._pending = False  # a step whose progress waits for its log line

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.meter.eta(state.global_step, state.max_steps)
            self._progress(self.stage, state.global_step, state.max_steps, unit="steps")

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if control.should_log:  # this step logs next: report its progress with the fresh numbers, after the line
            self._pending = True
        else:
            self._progress(self.stage, state.global_step, state.max_steps, unit="steps", **self.info)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        step, total = state.global_step, state.max_steps
        if "loss" in logs:
            eta = self.meter.eta(step, total)
            self.info = headline(self.stage, logs)
            if self.stage == "sft":
                now, tokens, tps = self.clock(), logs.get("num_tokens"), None
                if tokens is not None:
                    if self._tokens is not None and now > self._tokens[0]:
                        tps = (tokens - self._tokens[1]) / (now - self._tokens[0])
                    self._tokens = (now, tokens)
                self._log(sft_line(step, total, logs, tps, eta))
            else:
                self._log(grpo_line(step, total, logs, eta))
        if self._pending:
            self._pending = False
            self._progress(self.stage, step, total, unit="steps", **self.info)


def quiet_printer(trainer) -> None:
    """Drop transformers' PrinterCallback (it prints every logs dict; `ReportCallback` writes the readable line)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


__all__ = ["ReportCallback", "sft_line", "grpo_line", "headline", "quiet_printer"]
