"""Benchmark report: our metrics beside the paper's, per-task means, and a scatter plot per benchmark.

The published TATAR numbers live on the dataset spec rows (`tatar_core.samples.specs`, field `paper`).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

from data_contracts.records import GroupMetricRecord, MetricRecord, PredictionRecord
from tatar_core.method.prompts import TASKS
from tatar_core.samples.specs import DATASET_SPECS, PAPER_SOURCE, DatasetSpec, PaperNumbers, spec_for_benchmark
from tatar_core.benchmark.run import summarize


def paper_row(benchmark: str) -> Optional[PaperNumbers]:
    """The paper's SRCC/PLCC for a benchmark name (matched to a dataset spec by name or alias), or None."""
    spec = spec_for_benchmark(benchmark)
    return spec.paper if spec else None


def _paper_specs() -> list[DatasetSpec]:
    return [s for s in DATASET_SPECS.values() if s.paper is not None]


def paper_means() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for task in TASKS:
        rows = [s.paper for s in _paper_specs() if s.task == task]
        out[task] = {"srcc": sum(r.srcc for r in rows) / len(rows), "plcc": sum(r.plcc for r in rows) / len(rows)}
    return out


def _f(x: Optional[float], nd: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _ci(v: float, lo: float, hi: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) and math.isfinite(hi) else f"{v:.3f}"


def _valid(m: MetricRecord) -> str:
    return f"{m.n_valid}/{m.n} ({100.0 * m.n_valid / m.n:.0f}%)" if m.n else "0/0"


FINAL_MODEL = "grpo"
MODEL_ORDER = ("base", "sft", "grpo", "laplacian", "random_forest")
MODEL_LABEL = {"base": "base model (before SFT)", "sft": "after SFT", "grpo": "after GRPO (final)",
               "laplacian": "Laplacian-variance floor", "random_forest": "random forest, numpy features"}


def _sorted(metrics: Sequence[MetricRecord]) -> list[MetricRecord]:
    """The final model's metrics, IQA first."""
    return sorted((m for m in metrics if m.model == FINAL_MODEL), key=lambda m: (0 if m.task == "iqa" else 1,
                                                                                 m.benchmark))


def _by_model(rows):
    return sorted(rows, key=lambda m: (0 if m.task == "iqa" else 1, m.benchmark,
                                       MODEL_ORDER.index(m.model) if m.model in MODEL_ORDER else 99))


def _learning_rows(metrics: Sequence[MetricRecord]) -> list[tuple[str, ...]]:
    return [(m.benchmark, m.task, MODEL_LABEL.get(m.model, m.model), m.readout, _valid(m), _f(m.srcc), _f(m.plcc),
             _f(m.srcc_greedy) if m.readout == "expected" else "", _f(m.pair_acc)) for m in _by_model(metrics)]


LEARNING_HEAD = ("benchmark", "task", "model", "readout", "valid", "SRCC", "PLCC", "greedy SRCC", "pair acc")


def format_table(metrics: Sequence[MetricRecord]) -> str:
    """Plain-text table (one line per benchmark + per-task means), with the paper's SRCC/PLCC where it has them."""
    head = ("benchmark", "task", "n", "skip", "valid", "lenient", "words", "SRCC", "PLCC", "PLCC-log", "paper SRCC",
            "paper PLCC")
    rows = []
    for m in _sorted(metrics):
        p = paper_row(m.benchmark)
        rows.append((m.benchmark, m.task, str(m.n), str(m.n_skipped), _valid(m), str(m.n_lenient), _f(m.mean_words, 1),
                     _f(m.srcc), _f(m.plcc), _f(m.plcc_logistic), _f(p.srcc) if p else "", _f(p.plcc) if p else ""))
    for task, s in summarize(_sorted(metrics)).items():
        rows.append((f"mean {task.upper()}", task, "", "", "", "", "", _f(s["srcc"]), _f(s["plcc"]),
                     _f(s["plcc_logistic"]), "", ""))
    text = _text_table(head, rows)
    if any(m.model != FINAL_MODEL for m in metrics):
        text += "\n\nHeld-out, every model and baseline on the same images:\n" + _text_table(
            LEARNING_HEAD, _learning_rows(metrics))
    return text


def _text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def learning_section(metrics: Sequence[MetricRecord], groups: Sequence[GroupMetricRecord]) -> list[str]:
    """Markdown: what each stage adds on held-out images, beside the baselines; per type / manipulation."""
    if not any(m.model != FINAL_MODEL for m in metrics) and not groups:
        return []
    lines = ["", "## Does it learn? Held-out images, every model and baseline", "",
             "The same images scored by the model before SFT, after SFT and after GRPO, and by two classical IQA "
             "baselines measured in this run (the random forest is fitted on the train split's IQA images). "
             "pair acc = within-reference pairwise accuracy (versions of the same content ordered correctly; "
             "0.5 = chance). greedy SRCC = the parsed greedy answers when the readout is the expected score.", ""]
    lines += _md_table(LEARNING_HEAD, _learning_rows(metrics))
    if groups:
        models = [m for m in MODEL_ORDER if any(g.model == m for g in groups)]
        by = {(g.benchmark, g.group, g.model): g for g in groups}
        for bench in sorted({g.benchmark for g in groups}):
            names = sorted({g.group for g in groups if g.benchmark == bench})
            head = ("type / manipulation", *[f"{m} SRCC" for m in models], *[f"{m} vs anchor" for m in models])
            rows = [(g, *[_f(by[(bench, g, m)].srcc) if (bench, g, m) in by else "" for m in models],
                     *[_f(by[(bench, g, m)].pair_acc) if (bench, g, m) in by else "" for m in models]) for g in names]
            lines += ["", f"### {bench}: per distortion type / manipulation", "",
                      "SRCC within each group; vs anchor = how often the reference's best version (pristine photo / "
                      "original) is rated above this group's version of it.", ""]
            lines += _md_table(head, rows)
    return lines


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "benchmark"


def scatter_plot(preds: Sequence[PredictionRecord], path: Path, title: str) -> Path:
    """Prediction vs ground truth (both 0–100) for the parsed predictions; PNG via matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = [p for p in preds if p.pred is not None]
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=100)
    ax.scatter([p.gt for p in valid], [p.pred for p in valid], s=8, alpha=0.6, edgecolors="none")
    ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("ground truth (0–100)")
    ax.set_ylabel("prediction (0–100)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(metrics: Sequence[MetricRecord], predictions: Sequence[PredictionRecord], out_dir: Path,
                 groups: Sequence[GroupMetricRecord] = (), engine: str = "") -> Path:
    """Write `out_dir/report.md` (+ one `scatter_<benchmark>.png` per benchmark) and return the report path;
    `engine`: which scoring engine scored the models (a line under the heading)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_bench: dict[str, list[PredictionRecord]] = defaultdict(list)
    for p in predictions:
        if p.model == FINAL_MODEL:
            by_bench[p.benchmark].append(p)
    ms = _sorted(metrics)
    lines = ["# Benchmark report", "",
             "Scores on 0–100 (higher is better). SRCC: Spearman with average ranks; PLCC: Pearson on raw predictions; "
             "PLCC-log: Pearson after the 4-parameter logistic fit. Brackets: 95% bootstrap intervals. valid = parsed "
             "predictions (strict or lenient; failures are dropped, never given a default score); lenient = parsed only "
             "by the lenient fallback (first number of the last closed answer block; no answer block = failed); "
             "words = mean completion length.", "",
             *([f"Scored by the {engine} engine.", ""] if engine else []),
             "| benchmark | task | n | skipped | valid | lenient | words | SRCC [95% CI] | PLCC [95% CI] | PLCC-log "
             "| paper SRCC | paper PLCC |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for m in ms:
        p = paper_row(m.benchmark)
        lines.append(f"| {m.benchmark} | {m.task} | {m.n} | {m.n_skipped} | {_valid(m)} | {m.n_lenient} | "
                     f"{_f(m.mean_words, 1)} | {_ci(m.srcc, m.srcc_lo, m.srcc_hi)} | {_ci(m.plcc, m.plcc_lo, m.plcc_hi)} "
                     f"| {_f(m.plcc_logistic)} | {_f(p.srcc) if p else ''} | {_f(p.plcc) if p else ''} |")
    summ = summarize(ms)
    pm = paper_means()
    if summ:
        lines += ["", "## Mean per task", "",
                  "| task | benchmarks | SRCC | PLCC | PLCC-log | valid | paper SRCC (same sets) | paper PLCC (same sets) "
                  "| paper SRCC (all 4) | paper PLCC (all 4) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for task, s in summ.items():
            same = [paper_row(m.benchmark) for m in ms if m.task == task and paper_row(m.benchmark)]
            ps = sum(r.srcc for r in same) / len(same) if same else None
            pp = sum(r.plcc for r in same) / len(same) if same else None
            lines.append(f"| {task} | {s['n_benchmarks']} | {_f(s['srcc'])} | {_f(s['plcc'])} | "
                         f"{_f(s['plcc_logistic'])} | {_f(100 * s['valid_fraction'], 0)}% | {_f(ps)} | {_f(pp)} | "
                         f"{_f(pm[task]['srcc'])} | {_f(pm[task]['plcc'])} |")
    lines += learning_section(metrics, groups)
    ours = {spec.name: m for m in ms if (spec := spec_for_benchmark(m.benchmark)) is not None}
    lines += ["", "## The paper's Table 1 beside ours", "",
              "| benchmark | task | paper SRCC | paper PLCC | our SRCC | our PLCC | our n |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for spec in _paper_specs():
        key, row, m = spec.name, spec.paper, ours.get(spec.name)
        lines.append(f"| {key} | {spec.task} | {_f(row.srcc)} | {_f(row.plcc)} | {_f(m.srcc) if m else 'not run'} | "
                     f"{_f(m.plcc) if m else 'not run'} | {m.n_valid if m else ''} |")
    lines += ["", f"Paper numbers: {PAPER_SOURCE}. Blank = the paper has no such benchmark. "
              "– = undefined: fewer than 3 valid predictions, or constant predictions (a model that gives every image "
              "the same score has no rank correlation).", "", "## Scatter plots", ""]
    for m in ms:
        name = f"scatter_{_safe(m.benchmark)}.png"
        title = f"{m.benchmark} ({m.task}): SRCC {_f(m.srcc)}, PLCC {_f(m.plcc)}, n_valid {m.n_valid}"
        scatter_plot(by_bench.get(m.benchmark, []), out_dir / name, title)
        lines += [f"### {m.benchmark}", "", f"![{m.benchmark}: prediction vs ground truth]({name})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["paper_row", "paper_means", "format_table", "write_report", "scatter_plot"]
