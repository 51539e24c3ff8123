"""Prefect artifacts for a finished stage: a table of row counts/metrics and links to its files."""
from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tatar_core.pipeline.runner import StageResult


def publish_stage(result: StageResult) -> None:
    m = result.manifest
    key = f"tatar-{result.stage}"
    rows = [{"item": k, "value": v} for k, v in m.row_counts.items()]
    rows.append({"item": "status", "value": "cached" if result.cached else f"ran in {m.seconds:.1f} s"})
    create_table_artifact(rows, key=key, description=f"{result.stage}: row counts (key {m.key[:16]})")
    links = "\n".join(f"- **{name}**: [`{result.dir / rel}`](file://{result.dir / rel})" for name, rel in m.outputs.items())
    md = f"### {result.stage} ({'cached' if result.cached else 'ran'})\n\nFolder: `{result.dir}`\n\n{links}\n"
    if result.stage == "filtered" and m.metrics.get("reasons"):
        create_table_artifact(m.metrics["reasons"], key="tatar-rejections", description="rejections by task and reason")
    if result.stage == "grpo" and (result.dir / "train_log.parquet").exists():
        import polars as pl

        log = pl.read_parquet(result.dir / "train_log.parquet")
        last = log.sort("step").group_by("task", maintain_order=True).last()
        create_table_artifact(last.to_dicts(), key="tatar-grpo-rewards", description="last logged rewards per task")
    if result.stage == "benchmark":
        report = result.dir / m.outputs.get("report", "report.md")
        if report.exists():
            md += "\n---\n" + report.read_text()
        create_table_artifact(m.metrics.get("benchmarks", []), key="tatar-metrics", description="SRCC/PLCC per benchmark")
    create_markdown_artifact(md, key=f"{key}-files", description=f"{result.stage} outputs")
