"""Filter teacher rationales: rule checks for every row, then (optionally) the LLM judge.

- Rules (`tatar_core.filtered.rules.rule_reasons`, with the image-exists check) run on every row, with the word
  bounds and aspect check of each task's rationale style (`rationales.teacher.style`).
- The LLM judge (when `cfg.judge.enabled`) runs only on rows that pass every rule: a row that already failed
  is rejected anyway, so judging it would only cost requests. Judge calls run concurrently (at most
  `judge.endpoint.concurrency` in flight).
- A row is kept when it has no reason; a rejected row lists every reason (rules and judge) in
  `RejectedRecord.reasons`, and the judge's verdict JSON (if any) in `.judge`.
- `reason_counts(rejected)` tallies rejections by task and reason code (the text before the detail).

The stage writes `kept.parquet` and `rejected.parquet`; it stops as incomplete when every row was rejected.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm.auto import tqdm

from data_contracts import StageContext, StageIncomplete, StageOutputs, StageResult, write_records
from data_contracts.config import PipelineConfig
from data_contracts.config.rationales import FilterConfig
from data_contracts.records import KeptRecord, RationaleRecord, RejectedRecord, SampleRecord
from tatar_core.llm.keys import SecretResolver
from tatar_core.method.prompts import TASKS


def _rule_reasons(rec: RationaleRecord, cfg: FilterConfig, styles: Optional[dict[str, str]]) -> list[str]:
    from tatar_core.filtered.rules import rule_reasons

    return list(rule_reasons(rec, cfg.rules, check_image=True, style=(styles or {}).get(rec.task)))


async def _judge_all(
    rows: list[tuple[int, RationaleRecord]],
    samples_by_id: dict[str, SampleRecord],
    cfg: FilterConfig,
    secret_resolver: Optional[SecretResolver],
    progress: bool,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> dict:
    import asyncio

    from tatar_core.filtered.judge import LLMJudge
    from tatar_core.method.aspects import covered_aspects

    judge = LLMJudge(cfg.judge, secret_resolver=secret_resolver)
    results: dict = {}
    feed = iter(rows)
    bar = tqdm(total=len(rows), desc="judge", unit="row", disable=not progress, dynamic_ncols=True)

    async def worker():  # a fixed number of workers: images are encoded only for rows about to be sent
        for i, rec in feed:
            sample = samples_by_id.get(rec.sample_id)
            covered = covered_aspects(rec.rationale) if rec.task == "iaa" else []
            results[i] = await judge.ajudge(rec, sample, covered)
            bar.update(1)
            if on_progress is not None:
                on_progress(len(results), len(rows))

    try:
        await asyncio.gather(*(worker() for _ in range(min(cfg.judge.endpoint.concurrency, len(rows)) or 1)))
    finally:
        bar.close()
    return results


def filter_rationales(
    records: Sequence[RationaleRecord],
    samples_by_id: dict[str, SampleRecord],
    cfg: FilterConfig,
    secret_resolver: Optional[SecretResolver] = None,
    progress: bool = True,
    on_progress: Optional[Callable[[int, int], None]] = None,
    styles: Optional[dict[str, str]] = None,
) -> tuple[list[KeptRecord], list[RejectedRecord]]:
    """(kept, rejected), each in input order; see the module docstring. `on_progress(done, total)`: rows judged;
    `styles`: the rationale style per task (the rationales stage's `teacher.style`; None = IQA fast, IAA slow), which
    chooses the word bounds and aspect check of the rules."""
    from tatar_core.llm.client import run_coroutine

    reasons = [_rule_reasons(r, cfg, styles) for r in tqdm(records, desc="rules", unit="row", disable=not progress)]
    verdicts: dict[int, str] = {}
    if cfg.judge.enabled:
        todo = [(i, r) for i, r in enumerate(records) if not reasons[i]]
        if todo:
            results = run_coroutine(
                lambda: _judge_all(todo, samples_by_id, cfg, secret_resolver, progress, on_progress)
            )
            for i, res in results.items():
                reasons[i] += res.reasons
                verdicts[i] = res.verdict_json
    kept, rejected = [], []
    for i, r in enumerate(records):
        base = r.model_dump()
        if reasons[i]:
            rejected.append(RejectedRecord(**base, reasons=reasons[i], judge=verdicts.get(i, "")))
        else:
            kept.append(KeptRecord(**base, judge=verdicts.get(i, "")))
    return kept, rejected


_JUDGE_CODE = re.compile(r"^judge:\s*([A-Za-z_]+)")


def reason_code(reason: str) -> str:
    """The countable part of a reason: "judge: <criterion>" for judge reasons, else the text before the first ':'
    ("words: iqa 72 > 65" → "words")."""
    m = _JUDGE_CODE.match(reason)
    if m:
        return f"judge: {m.group(1)}"
    return reason.split(":", 1)[0].strip()


def reason_counts(rejected: Sequence[RejectedRecord]) -> list[dict]:
    """[{"task", "reason", "count"}, …] by task, most frequent first (a row counts once per distinct code)."""
    c: Counter = Counter()
    for r in rejected:
        for code in {reason_code(x) for x in r.reasons}:
            c[(r.task, code)] += 1
    return [
        {"task": t, "reason": code, "count": n}
        for (t, code), n in sorted(c.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
    ]


def run_stage(cfg: PipelineConfig, out_dir: Path, upstream: dict[str, StageResult], ctx: StageContext) -> StageOutputs:
    """Rules (+ judge) over the rationales: `kept.parquet`, `rejected.parquet` (every reason per row)."""
    from tatar_core.samples.stage import read_samples

    records = upstream["rationales"].records("rationales", RationaleRecord)
    samples = {s.sample_id: s for s in read_samples(upstream["samples"])}
    kept, rejected = filter_rationales(
        records,
        samples,
        cfg.filtered,
        secret_resolver=ctx.secret_resolver,
        progress=False,
        on_progress=lambda done, total: ctx.progress("filtered", done, total, unit="rows"),
        styles={t: cfg.rationales.teacher.style_of(t) for t in TASKS},
    )  # the rationales key holds the style
    write_records(kept, out_dir / "kept.parquet", KeptRecord, run_root=ctx.run_root)
    write_records(rejected, out_dir / "rejected.parquet", RejectedRecord, run_root=ctx.run_root)
    counts = {"rationales": len(records), "kept": len(kept), "rejected": len(rejected)}
    for task in TASKS:
        counts[f"kept_{task}"] = sum(k.task == task for k in kept)
    if not kept:
        raise StageIncomplete(f"filtered: every rationale was rejected (reasons in {out_dir / 'rejected.parquet'})")
    return StageOutputs(
        {"kept": "kept.parquet", "rejected": "rejected.parquet"}, counts, {"reasons": reason_counts(rejected)}
    )
