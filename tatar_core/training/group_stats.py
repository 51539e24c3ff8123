"""Per-task GRPO group statistics: how much signal the summed reward gives each prompt's group of completions.

trl normalises the summed reward within each prompt's group of G completions (`scale_rewards: group`, its default):

    A_i = (r_i − mean_g) / (std_g + 1e-4)        std_g: unbiased (Bessel) std of the group's rewards, as trl's nanstd

A group whose G rewards are all equal (std_g = 0, trl's `frac_reward_zero_std`) has A = 0: it teaches nothing. Per
logging step and task this module records, over the groups of that task:

    group_std     mean within-group std of the summed reward (the spread GRPO learns from)
    adv_var        mean of A² over the task's completions (each group's advantages have mean 0, so this is their
                   variance); ≈ (G−1)/G × (1 − zero_std_frac) under group scaling, less where std_g is tiny
    zero_std_frac  share of the task's groups whose rewards are all equal
    groups         number of groups

`scale_rewards: none` uses A = r − mean_g; `batch` divides by the std of the call's completions (this process's
slice of the step; trl uses the whole step's). A group is the completions of one sample_id within one reward call;
with several processes a group split between two processes counts as two groups.

`GroupStats.wrap(funcs)` wraps trl's reward callables (same names, same outputs): each call's weighted rewards are
kept, and when the last callable of a step has been called (trl calls them in list order with the same batch) their
sum per completion is grouped.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import defaultdict
from typing import Callable, Sequence

from tatar_core.method.prompts import TASKS

ZERO_STD_ATOL = 1e-8  # torch.isclose(std, 0) as trl counts frac_reward_zero_std
ADV_EPS = 1e-4
GROUP_KEYS = ("group_std", "adv_var", "zero_std_frac", "groups")


def scale_mode(trainer_args: dict) -> str:
    """trl's `scale_rewards` from the section's trainer_args (True → group, False → none; default group)."""
    v = trainer_args.get("scale_rewards", "group")
    return {True: "group", False: "none"}.get(v, v)


def _std(x: Sequence[float]) -> float:
    n = len(x)
    if n < 2:
        return float("nan")
    m = sum(x) / n
    return math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1))


def group_rows(
    tasks: Sequence[str], sample_ids: Sequence[str], rewards: Sequence[float], scale: str = "group"
) -> dict[str, dict[str, list[float]]]:
    """Per task: {"std": [std_g per group], "zero": [0/1 per group], "adv_sq": [A² per completion]}."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(sample_ids):
        groups[str(s)].append(i)
    batch_std = _std(list(rewards)) if scale == "batch" else float("nan")
    out: dict[str, dict[str, list[float]]] = {t: {"std": [], "zero": [], "adv_sq": []} for t in TASKS}
    for idx in groups.values():
        r = [float(rewards[i]) for i in idx]
        task = tasks[idx[0]]
        std = _std(r)
        mean = sum(r) / len(r)
        denom = {"group": std, "batch": batch_std}.get(scale)
        adv = [
            (v - mean) / ((denom if math.isfinite(denom) else 0.0) + ADV_EPS) if denom is not None else v - mean
            for v in r
        ]
        if len(r) > 1:
            out[task]["std"].append(std)
            out[task]["zero"].append(1.0 if abs(std) <= ZERO_STD_ATOL else 0.0)
        out[task]["adv_sq"] += [a * a for a in adv]
    return out


class GroupStats:
    """Accumulates `group_rows` over the reward calls of a logging step (thread-safe); `summary()` gives the means."""

    def __init__(self, scale: str = "group"):
        self.scale = scale
        self._lock = threading.Lock()
        self._pending: dict[str, list[float]] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._acc: dict[str, dict[str, list[float]]] = {t: {"std": [], "zero": [], "adv_sq": []} for t in TASKS}

    def add(self, tasks: Sequence[str], sample_ids: Sequence[str], rewards: Sequence[float]) -> None:
        rows = group_rows(tasks, sample_ids, rewards, self.scale)
        with self._lock:
            for t, d in rows.items():
                for k, v in d.items():
                    self._acc[t][k] += v

    def summary(self) -> dict[str, dict[str, float]]:
        """{task: {group_std, adv_var, zero_std_frac, groups}} for the tasks seen since reset."""

        def mean(x: list[float]) -> float:
            return sum(x) / len(x) if x else float("nan")

        with self._lock:
            return {
                t: {
                    "group_std": mean(d["std"]),
                    "adv_var": mean(d["adv_sq"]),
                    "zero_std_frac": mean(d["zero"]),
                    "groups": float(len(d["std"])),
                }
                for t, d in self._acc.items()
                if d["adv_sq"]
            }

    def wrap(self, funcs: Sequence[Callable]) -> list[Callable]:
        """The reward callables, each recording its output; the last one also groups the summed rewards."""
        names = [f.__name__ for f in funcs]

        def wrapped(i: int, f: Callable) -> Callable:
            @functools.wraps(f)
            def call(*args, **kw):
                out = f(*args, **kw)
                with self._lock:
                    self._pending[names[i]] = [0.0 if v is None else float(v) for v in out]
                if i == len(funcs) - 1:
                    with self._lock:
                        parts, self._pending = [self._pending.get(n) for n in names], {}
                    if all(p is not None and len(p) == len(out) for p in parts):
                        self.add(list(kw["task"]), list(kw["sample_id"]), [sum(v) for v in zip(*parts)])
                return out

            return call

        return [wrapped(i, f) for i, f in enumerate(funcs)]


__all__ = ["GroupStats", "group_rows", "scale_mode", "GROUP_KEYS"]
