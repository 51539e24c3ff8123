"""Prefect side of reporting: live progress of a running stage, and the artifacts of a finished one.

`PrefectReporter` is the stage context's `log` / `progress` under Prefect:
    log(line)        -> the flow run's logger (INFO), so the UI and `python -m flows.follow` show it;
    progress(...)    -> the stage's progress artifact (key `tatar-<stage>-progress`: percent done, and the progress
                        line as description), updated at most every `every_s` seconds and at the end, from any thread;
                        and the progress line to the logger when `line_every_s` passed without any other line.
`publish_stage` adds, for a finished stage: a table of row counts and headline numbers, a markdown card with its
files (paths as text: a browser cannot follow file:// links from a web page) and its pictures embedded as
data: URIs (training curves; for the benchmark the whole report with its scatter plots and curves).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from prefect.artifacts import (
    create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact,
)

from tatar_core.benchmark.report import inline_images
from tatar_core.pipeline.describe import headline
from tatar_core.pipeline.runner import StageResult
from tatar_core.progress import Meter, progress_line


def progress_key(stage: str) -> str:
    return f"tatar-{stage}-progress"


class PrefectReporter:
    """`log` / `progress` of a stage context under Prefect (see the module docstring)."""

    def __init__(self, logger, every_s: float = 2.0, line_every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger, self.every_s, self.line_every_s, self.clock = logger, every_s, line_every_s, clock
        self._artifacts: dict[str, list] = {}  # stage -> [artifact id, last update time]
        self._meters: dict[str, Meter] = {}
        self._lines: dict[str, str] = {}  # stage -> its last progress line
        self._last_line = clock()
        self._lock = threading.Lock()
        self._warned = False

    def start(self, stage: str) -> None:
        """Create the stage's progress artifact at 0% (call in the flow's own thread: it links the artifact to the
        flow run)."""
        aid = create_progress_artifact(0.0, key=progress_key(stage), description=f"[{stage}] starting", _sync=True)
        self._artifacts[stage] = [aid, self.clock()]

    def finish(self, stage: str, text: str) -> None:
        """Set the stage's progress artifact to 100%: its last progress line (if any), then `text`."""
        if stage in self._artifacts:
            last = self._lines.get(stage)
            self._update(stage, 100.0, f"{last} · {text}" if last else text)

    def log(self, line: str) -> None:
        self._last_line = self.clock()
        self.logger.info(line)

    def progress(self, stage: str, done: int, total: int, unit: str = "", **info: Any) -> None:
        with self._lock:
            eta = self._meters.setdefault(stage, Meter(self.clock)).eta(done, total)
            line = self._lines[stage] = progress_line(stage, done, total, unit, eta, **info)
            now, finished = self.clock(), done >= total
            art = self._artifacts.get(stage)
            if art is not None and (finished or now - art[1] >= self.every_s):
                art[1] = now
                self._update(stage, 100.0 * done / total if total else 100.0, line)
            if finished or now - self._last_line >= self.line_every_s:
                self._last_line = now
                self.logger.info(line)

    def _update(self, stage: str, percent: float, text: str) -> None:
        try:
            update_progress_artifact(self._artifacts[stage][0], percent, description=text, _sync=True)
        except Exception as e:  # noqa: BLE001 - the UI falling behind must never stop the work
            if not self._warned:
                self._warned = True
                self.logger.warning(f"progress artifact update failed (the stage goes on): {e}")


def _code_list(result: StageResult) -> str:
    m = result.manifest
    return "\n".join(f"- **{name}**: `{result.dir / rel}`" for name, rel in m.outputs.items())


def _curves_markdown(folder: Path) -> str:
    pngs = sorted((folder / "curves").glob("*.png"))
    if not pngs:
        return ""
    return "\n\n#### Training curves\n\n" + inline_images(" ".join(f"![{p.stem}]({p.name})" for p in pngs),
                                                          folder / "curves") + "\n"


def publish_stage(result: StageResult, flow_run_url: Optional[str] = None) -> None:
    m = result.manifest
    key = f"tatar-{result.stage}"
    status = "cached" if result.cached else f"ran in {m.seconds:.1f} s"
    rows = [{"item": "status", "value": status}, {"item": "headline", "value": headline(m)}]
    rows += [{"item": k, "value": v} for k, v in m.row_counts.items()]
    create_table_artifact(rows, key=key, description=f"{result.stage}: row counts (key {m.key[:16]})")
    md = (f"### {result.stage} ({status})\n\n{headline(m)}\n\nFolder (on the machine that ran it): `{result.dir}`\n\n"
          f"{_code_list(result)}\n")
    if result.stage == "filtered" and m.metrics.get("reasons"):
        create_table_artifact(m.metrics["reasons"], key="tatar-rejections", description="rejections by task and reason")
    if result.stage in ("sft", "grpo"):
        md += _curves_markdown(result.dir)
    if result.stage == "grpo" and (result.dir / "train_log.parquet").exists():
        import polars as pl

        log = pl.read_parquet(result.dir / "train_log.parquet")
        last = log.sort("step").group_by("task", maintain_order=True).last()
        create_table_artifact([{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                               for r in last.to_dicts()], key="tatar-grpo-rewards",
                              description="last logged rewards per task")
    if result.stage == "benchmark":
        report = result.dir / m.outputs.get("report", "report.md")
        page = result.dir / m.outputs.get("report_html", "report.html")
        md += (f"\nThe same report as one page with every picture embedded: `{page}` (open it in a browser on that "
               "machine, or copy the file anywhere).\n")
        if report.exists():
            md += "\n---\n" + inline_images(report.read_text(), result.dir)
        create_table_artifact(_metric_rows(m.metrics.get("benchmarks", [])), key="tatar-metrics",
                              description="SRCC/PLCC per benchmark")
    create_markdown_artifact(md, key=f"{key}-files", description=f"{result.stage} outputs")


def _metric_rows(benchmarks: list[dict]) -> list[dict]:
    """The metrics table, narrow: benchmark, task, n, valid, SRCC, PLCC (3 decimals)."""
    def r(x):
        return round(x, 3) if isinstance(x, float) else x

    return [{"benchmark": b.get("benchmark"), "task": b.get("task"), "n": b.get("n"), "valid": b.get("n_valid"),
             "SRCC": r(b.get("srcc")), "PLCC": r(b.get("plcc")), "PLCC-log": r(b.get("plcc_logistic"))}
            for b in benchmarks]
