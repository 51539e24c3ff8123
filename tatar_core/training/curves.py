"""Training curves as small PNGs (matplotlib, Agg) in `out_dir/curves/`, drawn from the trainer's logs.

    SFT:  loss.png (training loss per logging step), token_accuracy.png (trl's mean_token_accuracy)
    GRPO: reward_iqa.png / reward_iaa.png (reward_total and its weighted components, one per reward in the log:
          score / rank / format by default),
          words.png (mean completion words per task), parse_rate.png (strict parse rate per task), kl.png (β > 0)

`log_history` is `trainer.state.log_history` (saved next to the curves as `log_history.json`); GRPO's per-task
numbers come from train_log.parquet (TrainLogRecord rows).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from data_contracts.records import TrainLogRecord
from tatar_core.method.prompts import TASKS

CURVES_DIR = "curves"
LOG_HISTORY = "log_history.json"
TASK_COLORS = {"iqa": "#1f77b4", "iaa": "#d62728"}
REWARD_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))  # line styles of the components


CURVE_ORDER = (
    "loss",
    "token_accuracy",
    "reward_iqa",
    "reward_iaa",
    "words",
    "parse_rate",
    "group_std",
    "zero_std",
    "kl",
)


def curve_files(stage_dir: Path) -> list[Path]:
    """The curve PNGs of a training stage folder, in reading order (CURVE_ORDER, then any other by name)."""
    pngs = (Path(stage_dir) / CURVES_DIR).glob("*.png")
    return sorted(
        pngs, key=lambda p: (CURVE_ORDER.index(p.stem) if p.stem in CURVE_ORDER else len(CURVE_ORDER), p.stem)
    )


def _figure(title: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(4.0, 2.75), dpi=90)  # 360 px wide, as the scatter plots
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("optimizer step", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax = fig.axes[0]
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _series(log_history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(h["step"]), float(h[key])) for h in log_history if key in h and "step" in h]
    return [p[0] for p in pts], [p[1] for p in pts]


def save_log_history(log_history: Sequence[dict], out_dir: Path) -> Path:
    path = Path(out_dir) / LOG_HISTORY
    path.write_text(json.dumps(list(log_history), indent=0, default=float))
    return path


def sft_curves(log_history: Sequence[dict], out_dir: Path) -> list[Path]:
    """loss.png and token_accuracy.png (each only when the logs hold the value)."""
    out, d = [], Path(out_dir) / CURVES_DIR
    for key, name, title, ylabel in (
        ("loss", "loss.png", "SFT training loss", "loss (completion tokens)"),
        ("mean_token_accuracy", "token_accuracy.png", "SFT token accuracy", "mean token accuracy"),
    ):
        steps, vals = _series(log_history, key)
        if not steps:
            continue
        fig, ax = _figure(title, ylabel)
        ax.plot(steps, vals, marker="." if len(steps) < 30 else None, color="#1f77b4")
        out.append(_save(fig, d / name))
    return out


def grpo_curves(log_history: Sequence[dict], rows: Sequence[TrainLogRecord], out_dir: Path) -> list[Path]:
    """reward_<task>.png, words.png, parse_rate.png, group_std.png, zero_std.png and kl.png from the GRPO logs."""
    out, d = [], Path(out_dir) / CURVES_DIR
    by_task = {t: sorted((r for r in rows if r.task == t), key=lambda r: r.step) for t in TASKS}
    for t, rs in by_task.items():
        if not rs:
            continue
        fig, ax = _figure(f"GRPO reward, {t.upper()}", "mean reward per completion")
        steps = [r.step for r in rs]
        ax.plot(steps, [r.reward_total for r in rs], "-", label="total")
        for i, name in enumerate(rs[0].rewards()):  # every reward of the log (TrainLogRecord's reward_<name>)
            ax.plot(
                steps, [r.rewards()[name] for r in rs], linestyle=REWARD_STYLES[i % len(REWARD_STYLES)], label=name
            )
        out.append(_save(fig, d / f"reward_{t}.png"))
    for field, name, title, ylabel in (
        ("words", "words.png", "GRPO completion length", "mean words"),
        ("parse_rate", "parse_rate.png", "GRPO strict parse rate", "fraction parsed"),
        ("group_std", "group_std.png", "GRPO within-group reward std", "mean std of the summed reward"),
        ("zero_std_frac", "zero_std.png", "GRPO zero-variance groups", "share of groups (no signal)"),
    ):
        if not any(by_task.values()):
            break
        if field in ("group_std", "zero_std_frac") and not any(
            math.isfinite(getattr(r, field)) for rs in by_task.values() for r in rs
        ):
            continue  # a log written before these were recorded
        fig, ax = _figure(title, ylabel)
        for t, rs in by_task.items():
            if rs:
                ax.plot([r.step for r in rs], [getattr(r, field) for r in rs], color=TASK_COLORS[t], label=t.upper())
        if field in ("parse_rate", "zero_std_frac"):
            ax.set_ylim(-0.05, 1.05)
        out.append(_save(fig, d / name))
    steps, kl = _series(log_history, "kl")
    if steps:
        fig, ax = _figure("GRPO KL to the reference model", "KL")
        ax.plot(steps, kl, color="#2ca02c")
        out.append(_save(fig, d / "kl.png"))
    return out


__all__ = ["sft_curves", "grpo_curves", "save_log_history", "curve_files", "CURVES_DIR", "CURVE_ORDER", "LOG_HISTORY"]
