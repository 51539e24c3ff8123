"""The probes grid: cells (probe, variant, seed) expanded into pipeline configs, and their stage runs deduplicated by
cache key.

    cell overrides = overrides ∪ scale ∪ probe.overrides ∪ variant ∪ {seed_key: seed for seed_keys} ∪ {run_dir}

Every cell shares `run_dir`, so a stage whose key two cells share is one `Node`: it runs once and both read it (the
variants that differ only in GRPO settings share samples → sft; the reasoning variants share samples; the variant
that is the base recipe in several probes shares everything). `plan_text` shows the grid's cost: distinct stage runs
per stage, how many cells share them, which are finished, and the estimated seconds left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from data_contracts import ConfigError
from data_contracts.config import STAGES, PipelineConfig, load_config
from data_contracts.config.probes import ProbesConfig, flatten
from tatar_core.pipeline.keys import STAGE_INPUTS
from tatar_core.pipeline.runner import Pipeline


@dataclass
class Cell:
    probe: str
    variant: str
    seed: int
    overrides: dict[str, Any]
    cfg: PipelineConfig
    keys: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.probe}/{self.variant}/seed {self.seed}"


@dataclass
class Node:
    """One distinct stage run: (stage, key), with the overrides of the first cell that needs it (to run it)."""

    stage: str
    key: str
    overrides: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)
    inputs: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> tuple[str, str]:
        return self.stage, self.key

    @property
    def name(self) -> str:
        return f"{self.stage} {self.key[:12]}"


@dataclass
class Grid:
    cfg: ProbesConfig
    base: str
    cells: list[Cell]
    nodes: dict[tuple[str, str], Node]
    base_dir: Optional[Path] = None

    def pipeline(self, node_or_cell, log=lambda _: None) -> Pipeline:
        cfg = node_or_cell.cfg if isinstance(node_or_cell, Cell) else node_or_cell.cells[0].cfg
        return Pipeline(cfg, base=self.base_dir, log=log)

    def ordered(self) -> list[Node]:
        """Nodes in the order the runner prefers: seed by seed (a whole seed is done early), stage order within."""
        seed_rank = {s: i for i, s in enumerate(self.cfg.seeds)}
        return sorted(
            self.nodes.values(), key=lambda n: (min(seed_rank[c.seed] for c in n.cells), STAGES.index(n.stage))
        )

    def cell(self, probe: str, variant: str, seed: int) -> Cell:
        return next(c for c in self.cells if (c.probe, c.variant, c.seed) == (probe, variant, seed))


def cell_overrides(cfg: ProbesConfig, probe: str, variant: str, seed: int) -> dict[str, Any]:
    spec = cfg.probes[probe]
    out = {
        **flatten(cfg.overrides),
        **flatten(cfg.scale),
        **flatten(spec.overrides),
        **flatten(spec.variants[variant]),
    }
    out.update({k: seed for k in cfg.seed_keys})
    out["run_dir"] = cfg.run_dir
    return out


def build_grid(cfg: ProbesConfig, base_dir: Optional[Path] = None) -> Grid:
    """Every cell's pipeline config and keys (a bad override fails here, naming the cell), and the distinct nodes."""
    base = cfg.base if Path(cfg.base).is_absolute() or base_dir is None else str(Path(base_dir) / cfg.base)
    cells, nodes = [], {}
    for probe, spec in cfg.probes.items():
        for variant in spec.variants:
            for seed in cfg.seeds:
                ov = cell_overrides(cfg, probe, variant, seed)
                try:
                    pc = load_config(base, ov)
                except ConfigError as e:
                    raise ConfigError(f"probes: cell {probe}/{variant}/seed {seed}: {e}") from None
                if spec.model == "sft" and "sft" not in pc.benchmark.compare:
                    raise ConfigError(
                        f"probes: cell {probe}/{variant}/seed {seed}: the probe reads the SFT model, "
                        "but benchmark.compare does not score it: add `benchmark.compare: [sft]` to the "
                        "grid's overrides"
                    )
                pipe = Pipeline(pc, base=base_dir, log=lambda _: None)
                cell = Cell(probe, variant, seed, ov, pc, pipe.keys)
                cells.append(cell)
                for stage in STAGES:
                    nid = (stage, pipe.keys[stage])
                    if nid not in nodes:
                        nodes[nid] = Node(
                            stage, pipe.keys[stage], ov, inputs=tuple((u, pipe.keys[u]) for u in STAGE_INPUTS[stage])
                        )
                    nodes[nid].cells.append(cell)
    if len(cfg.seeds) > 1:
        for probe, spec in cfg.probes.items():
            for variant in spec.variants:
                keys = {c.keys["benchmark"] for c in cells if (c.probe, c.variant) == (probe, variant)}
                if len(keys) < len(cfg.seeds):
                    raise ConfigError(
                        f"probes: the seeds of {probe}/{variant} give equal cache keys: seed_keys {cfg.seed_keys} "
                        "change nothing (a top-level `seed` only fills the sections that set no seed of their own)"
                    )
    return Grid(cfg, base, cells, nodes, base_dir)


# ---------------------------------------------------------------- cost
def training_steps(pc: PipelineConfig, stage: str, rows: Optional[int]) -> Optional[int]:
    """Optimizer steps of a training stage: max_steps, else epochs x rows / (effective batch or prompts per step)."""
    c = getattr(pc, stage)
    if c.max_steps > 0:
        return c.max_steps
    if rows is None:
        return None
    per = (
        c.per_device_train_batch_size * c.gradient_accumulation_steps * c.launch.num_processes
        if stage == "sft"
        else c.prompts_per_step
    )
    return max(1, math.ceil(c.num_train_epochs * rows / per))


def _rows(grid: Grid, node: Node) -> Optional[int]:
    """Rows a training stage reads, when its input stage has finished (kept rows for sft, train samples for grpo)."""
    pipe = grid.pipeline(node)
    up = pipe.manifest("filtered" if node.stage == "sft" else "samples")
    if up is None:
        return None
    rc = up.row_counts
    return rc.get("kept") if node.stage == "sft" else (rc.get("train_iqa", 0) + rc.get("train_iaa", 0)) or None


def estimate(grid: Grid, node: Node) -> tuple[Optional[float], Optional[int]]:
    """(estimated seconds, optimizer steps) of one node from the config's `estimate_s`."""
    pc = node.cells[0].cfg
    steps = training_steps(pc, node.stage, _rows(grid, node)) if node.stage in ("sft", "grpo") else None
    e = grid.cfg.estimate_s.get(node.stage)
    if e is None or (node.stage in ("sft", "grpo") and steps is None and e.per_step):
        return None, steps
    return e.fixed + e.per_step * (steps or 0), steps


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def work(grid: Grid, node: Node) -> str:
    """What one stage run does, in units that do not depend on the machine."""
    pc, steps = node.cells[0].cfg, estimate(grid, node)[1]
    if node.stage == "rationales":
        up = grid.pipeline(node).manifest("samples")
        n = (up.row_counts.get("train_iqa", 0) + up.row_counts.get("train_iaa", 0)) if up else None
        t = pc.rationales.teacher
        return (
            f"{n if n is not None else '?'} teacher calls ({t.kind}, IQA {t.style_of('iqa')}, IAA {t.style_of('iaa')})"
        )
    if node.stage == "sft":
        c = pc.sft
        eff = c.per_device_train_batch_size * c.gradient_accumulation_steps * c.launch.num_processes
        return f"{steps if steps is not None else '?'} steps x batch {eff}"
    if node.stage == "grpo":
        c = pc.grpo
        return f"{steps if steps is not None else '?'} steps x {c.prompts_per_step * c.num_generations} completions"
    if node.stage == "benchmark":
        return f"{1 + len(pc.benchmark.compare)} model(s) x the benchmark images"
    return ""


def plan_text(grid: Grid, source: str = "") -> str:
    """What the grid costs: distinct stage runs per stage (shared by how many cells), finished ones, estimates."""
    cfg = grid.cfg
    lines = [
        f"Probes {source}: base {grid.base}, {len(cfg.seeds)} seed(s) {cfg.seeds} via {', '.join(cfg.seed_keys)}, "
        f"run folder {cfg.run_dir}, {cfg.parallel} stage run(s) at once",
        f"Scale overrides ({len(flatten(cfg.scale))}): "
        + (", ".join(f"{k}={v}" for k, v in flatten(cfg.scale).items()) or "none (the base recipe as is)"),
        f"Cells: {len(grid.cells)} = "
        + " + ".join(f"{p} {len(s.variants)} variants" for p, s in cfg.probes.items())
        + f", x {len(cfg.seeds)} seed(s)",
        "",
    ]
    head = f"{'stage':<11}{'runs':>5}{'finished':>10}{'cells/run':>11}{'est. each':>11}{'est. left':>11}  work per run"
    lines += ["Distinct stage runs (cells with equal cache keys share one run):", head, "-" * (len(head) + 20)]
    total_left, unknown, measured, done_n = 0.0, 0, 0.0, 0
    for stage in STAGES:
        ns = [n for n in grid.nodes.values() if n.stage == stage]
        done, left, each, works = 0, 0.0, [], {}
        for n in ns:
            m = grid.pipeline(n).manifest(stage)
            w = work(grid, n)
            works[w] = works.get(w, 0) + 1
            if m is not None:
                done += 1
                measured += m.seconds
                continue
            est, _ = estimate(grid, n)
            if est is None:
                unknown += 1
            else:
                left += est
                each.append(est)
        done_n += done
        total_left += left
        share = sum(len(n.cells) for n in ns) / len(ns) if ns else 0
        each_txt = _dur(sum(each) / len(each)) if each else ("-" if done == len(ns) else "?")
        left_txt = _dur(left) if each or done == len(ns) else "?"
        work_txt = "; ".join(f"{k} ({v})" if len(works) > 1 else k for k, v in works.items() if k)
        lines.append(f"{stage:<11}{len(ns):>5}{done:>10}{share:>11.1f}{each_txt:>11}{left_txt:>11}  {work_txt}")
    lines.append("")
    lines.append(
        f"{len(grid.nodes)} distinct stage runs for {len(grid.cells) * len(STAGES)} cell-stages; {done_n} finished"
        + (f" ({_dur(measured)} measured)" if done_n else "")
    )
    if unknown == 0:
        lines.append(
            f"Estimated stage time left: {_dur(total_left)}, one run at a time (parallel {cfg.parallel} on as "
            "many cores: less)"
        )
    elif total_left:
        lines.append(f"Estimated stage time left: {_dur(total_left)} + {unknown} run(s) with no estimate")
    else:
        lines.append(
            "No time estimate: estimate_s is measured for the probes file's own base and scale (multiply the "
            "work per run above by your machines' rates: docs/probes.md)"
        )
    if any(n.stage in ("sft", "grpo") and estimate(grid, n)[1] is None for n in grid.nodes.values()):
        lines.append(
            "steps ?: num_train_epochs over rows not known yet (the kept rows for sft, the train samples for "
            "grpo): shown once the samples / filtered stages of the grid have finished"
        )
    if cfg.estimate_s:
        lines.append(
            "Estimates: estimate_s of the probes config (fixed + per step), measured at its scale on a 2-core "
            "CPU; a stage run started as a Prefect deployment adds ~10-20 s to start its flow run."
        )
    return "\n".join(lines)


__all__ = ["Cell", "Node", "Grid", "build_grid", "cell_overrides", "plan_text", "estimate", "training_steps", "work"]
