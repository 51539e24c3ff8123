"""Prefect side of reporting: live progress of a running stage, and the artifacts of a finished one.

`PrefectReporter` is the stage context's `log` / `progress` under Prefect:
    log(line)        -> the flow run's logger (INFO), so the UI and `python -m flows.follow` show it;
    progress(...)    -> the stage's progress artifact (key `tatar-<stage>-progress`: percent done, and the progress
                        line as description), updated at most every `every_s` seconds and at the end, from any thread;
                        and progress lines to the logger (`tatar_core.progress.ProgressLines`: when `line_every_s`
                        passed without any other line, also in the middle of a long step).
`publish_stage` adds, for a finished stage: a table of row counts and headline numbers, a markdown card with its
files (paths as text: a browser cannot follow file:// links from a web page) and its pictures embedded as
data: URIs (training curves; for the benchmark the whole report with its scatter plots and curves).
"""

from __future__ import annotations

import math
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tatar_core.benchmark.report import inline_images
from tatar_core.pipeline.describe import headline
from tatar_core.pipeline.runner import StageResult
from tatar_core.progress import ProgressLines
from tatar_core.training.curves import curve_files


def progress_key(stage: str) -> str:
    return f"tatar-{stage}-progress"


class PrefectReporter:
    """`log` / `progress` of a stage context under Prefect (see the module docstring)."""

    def __init__(
        self, logger, every_s: float = 2.0, line_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ):
        self.logger, self.every_s, self.clock = logger, every_s, clock
        self._artifacts: dict[str, list] = {}  # stage -> [artifact id, last update time]
        self._last: dict[str, str] = {}  # stage -> the artifact's last progress text
        self.lines = ProgressLines(logger.info, line_every_s, clock)
        self._lock = threading.Lock()
        self._warned = False

    @contextmanager
    def stage(self, stage: str, live: bool = True):
        """Around a stage run (in the flow's own thread, which links the artifact to the flow run): when `live` (not
        cached), its progress artifact at 0% and the line ticker; at the end 100% with the last progress line and
        the time (left as it is when the stage fails)."""
        if not live:
            yield
            return
        aid = create_progress_artifact(0.0, key=progress_key(stage), description=f"[{stage}] starting", _sync=True)
        self._artifacts[stage] = [aid, self.clock()]
        self.lines.start()
        t0 = self.clock()
        try:
            yield
        finally:
            self.lines.stop()
        last = self._last.get(stage)
        text = f"finished in {self.clock() - t0:.1f} s"
        self._update(stage, 100.0, f"{last} · {text}" if last else f"[{stage}] {text}")

    def log(self, line: str) -> None:
        self.lines.saw_line()
        self.logger.info(line)

    def progress(self, stage: str, done: int, total: int, unit: str = "", **info: Any) -> None:
        text = self.lines.progress(stage, done, total, unit, **info)
        with self._lock:
            self._last[stage] = text
            art, now = self._artifacts.get(stage), self.clock()
            if art is not None and (done >= total or now - art[1] >= self.every_s):
                art[1] = now
                self._update(stage, 100.0 * done / total if total else 100.0, text)

    def _update(self, stage: str, percent: float, text: str) -> None:
        try:
            update_progress_artifact(self._artifacts[stage][0], percent, description=text, _sync=True)
        except Exception as e:  # noqa: BLE001 - the UI falling behind must never stop the work
            if not self._warned:
                self._warned = True
                self.logger.warning(f"progress artifact update failed (the stage goes on): {e}")


_IMAGE = re.compile(r"!\[[^\]]*\]\([^)\s]+\)")


def image_grid(markdown: str, columns: int = 2) -> str:
    """Put each line of several images into a table, `columns` per row: the Prefect UI shows every image of a
    paragraph on a line of its own, a table cell side by side."""
    out = []
    for line in markdown.splitlines():
        images = _IMAGE.findall(line)
        if len(images) < 2 or _IMAGE.sub("", line).strip():
            out.append(line)
            continue
        rows = [images[i : i + columns] for i in range(0, len(images), columns)]
        rows[-1] += [""] * (columns - len(rows[-1]))
        out.append("|" + "   |" * columns)  # an empty header: the UI leaves out a table without body rows
        out.append("|" + "---|" * columns)
        out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _code_list(result: StageResult) -> str:
    m = result.manifest
    return "\n".join(f"- **{name}**: `{result.dir / rel}`" for name, rel in m.outputs.items())


def _curves_markdown(folder: Path) -> str:
    pngs = curve_files(folder)
    if not pngs:
        return ""
    return (
        "\n\n#### Training curves\n\n"
        + inline_images(image_grid(" ".join(f"![{p.stem}]({p.name})" for p in pngs)), folder / "curves")
        + "\n"
    )


def publish_stage(result: StageResult) -> None:
    m = result.manifest
    key = f"tatar-{result.stage}"
    status = "cached" if result.cached else f"ran in {m.seconds:.1f} s"
    rows = [{"item": "status", "value": status}, {"item": "headline", "value": headline(m)}]
    rows += [{"item": k, "value": v} for k, v in m.row_counts.items()]
    create_table_artifact(rows, key=key, description=f"{result.stage}: row counts (key {m.key[:16]})")
    md = (
        f"### {result.stage} ({status})\n\n{headline(m)}\n\nFolder (on the machine that ran it): `{result.dir}`\n\n"
        f"{_code_list(result)}\n"
    )
    if result.stage == "filtered" and m.metrics.get("reasons"):
        create_table_artifact(
            m.metrics["reasons"], key="tatar-rejections", description="rejections by task and reason"
        )
    if result.stage in ("sft", "grpo"):
        md += _curves_markdown(result.dir)
    if result.stage == "grpo" and (result.dir / "train_log.parquet").exists():
        import polars as pl

        log = pl.read_parquet(result.dir / "train_log.parquet")
        last = log.sort("step").group_by("task", maintain_order=True).last()
        create_table_artifact(
            [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in last.to_dicts()],
            key="tatar-grpo-rewards",
            description="last logged rewards per task",
        )
    if result.stage == "benchmark":
        report = result.dir / m.outputs.get("report", "report.md")
        page = result.dir / m.outputs.get("report_html", "report.html")
        md += (
            f"\nThe same report as one page with every picture embedded: `{page}` (open it in a browser on that "
            "machine, or copy the file anywhere).\n"
        )
        if report.exists():
            md += "\n---\n" + inline_images(image_grid(report.read_text()), result.dir)
        create_table_artifact(
            _metric_rows(m.metrics.get("benchmarks", [])), key="tatar-metrics", description="SRCC/PLCC per benchmark"
        )
    create_markdown_artifact(md, key=f"{key}-files", description=f"{result.stage} outputs")


def _metric_rows(benchmarks: list[dict]) -> list[dict]:
    """The metrics table, narrow: benchmark, task, n, valid, SRCC, PLCC (3 decimals)."""

    def r(x):
        return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(x, 3)

    return [
        {
            "benchmark": b.get("benchmark"),
            "task": b.get("task"),
            "n": b.get("n"),
            "valid": b.get("n_valid"),
            "SRCC": r(b.get("srcc")),
            "PLCC": r(b.get("plcc")),
            "PLCC-log": r(b.get("plcc_logistic")),
        }
        for b in benchmarks
    ]
