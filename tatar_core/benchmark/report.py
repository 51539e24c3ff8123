"""Benchmark report: our metrics beside the paper's, per-task means, a scatter plot per benchmark and the training
curves of the scored model; `report.md` and the same page as one self-contained `report.html`.

The published TATAR numbers live on the dataset spec rows (`tatar_core.samples.specs`, field `paper`).
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional, Sequence

from data_contracts.records import GroupMetricRecord, MetricRecord, PredictionRecord
from tatar_core.benchmark.run import IN_SAMPLE_SUFFIX, summarize
from tatar_core.method.prompts import TASKS
from tatar_core.samples.specs import DATASET_SPECS, PAPER_SOURCE, DatasetSpec, PaperNumbers, spec_for_benchmark


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
MODEL_LABEL = {
    "base": "base model (before SFT)",
    "sft": "after SFT",
    "grpo": "after GRPO (final)",
    "laplacian": "Laplacian-variance floor",
    "random_forest": "random forest, numpy features",
}


def _sorted(metrics: Sequence[MetricRecord]) -> list[MetricRecord]:
    """The final model's metrics, IQA first."""
    return sorted(
        (m for m in metrics if m.model == FINAL_MODEL), key=lambda m: (0 if m.task == "iqa" else 1, m.benchmark)
    )


def _by_model(rows):
    return sorted(
        rows,
        key=lambda m: (
            0 if m.task == "iqa" else 1,
            m.benchmark,
            MODEL_ORDER.index(m.model) if m.model in MODEL_ORDER else 99,
        ),
    )


def _learning_rows(metrics: Sequence[MetricRecord]) -> list[tuple[str, ...]]:
    return [
        (
            m.benchmark,
            MODEL_LABEL.get(m.model, m.model),
            m.readout,
            _valid(m),
            _f(m.srcc),
            _f(m.plcc),
            _f(m.srcc_greedy) if m.readout == "expected" else "",
            _f(m.pair_acc),
        )
        for m in _by_model(metrics)
    ]


LEARNING_HEAD = ("benchmark", "model", "readout", "valid", "SRCC", "PLCC", "greedy SRCC", "pair acc")


def format_table(metrics: Sequence[MetricRecord]) -> str:
    """Plain-text table (one line per benchmark + per-task means), with the paper's SRCC/PLCC where it has them."""
    head = (
        "benchmark",
        "task",
        "n",
        "skip",
        "valid",
        "lenient",
        "words",
        "SRCC",
        "PLCC",
        "PLCC-log",
        "paper SRCC",
        "paper PLCC",
    )
    rows = []
    for m in _sorted(metrics):
        p = paper_row(m.benchmark)
        rows.append(
            (
                m.benchmark,
                m.task,
                str(m.n),
                str(m.n_skipped),
                _valid(m),
                str(m.n_lenient),
                _f(m.mean_words, 1),
                _f(m.srcc),
                _f(m.plcc),
                _f(m.plcc_logistic),
                _f(p.srcc) if p else "",
                _f(p.plcc) if p else "",
            )
        )
    for task, s in summarize(_sorted(metrics)).items():
        rows.append(
            (
                f"mean {task.upper()}",
                task,
                "",
                "",
                "",
                "",
                "",
                _f(s["srcc"]),
                _f(s["plcc"]),
                _f(s["plcc_logistic"]),
                "",
                "",
            )
        )
    text = _text_table(head, rows)
    if any(m.model != FINAL_MODEL for m in metrics):
        text += f"\n\n{_scope(metrics)}, every model and baseline on the same images:\n" + _text_table(
            LEARNING_HEAD, _learning_rows(metrics)
        )
    return text


def _scope(metrics: Sequence[MetricRecord]) -> str:
    """ "Held-out", or "In-sample" when a benchmark is a training set (benchmark.demo_split: train_photos)."""
    return "In-sample" if any(m.benchmark.endswith(IN_SAMPLE_SUFFIX) for m in metrics) else "Held-out"


def _text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def learning_section(metrics: Sequence[MetricRecord], groups: Sequence[GroupMetricRecord]) -> list[str]:
    """Markdown: what each stage adds on the scored images, beside the baselines; per type / manipulation."""
    if not any(m.model != FINAL_MODEL for m in metrics) and not groups:
        return []
    lines = [
        "",
        f"## Does it learn? {_scope(metrics)} images, every model and baseline",
        "",
        "The same images scored by the model before SFT, after SFT and after GRPO, and by two classical IQA "
        "baselines measured in this run (the random forest is fitted on the train split's IQA images). "
        "pair acc = within-reference pairwise accuracy (versions of the same content ordered correctly; "
        "0.5 = chance). greedy SRCC = the parsed greedy answers when the readout is the expected score.",
        "",
    ]
    lines += _md_table(LEARNING_HEAD, _learning_rows(metrics))
    if groups:
        models = [m for m in MODEL_ORDER if any(g.model == m for g in groups)]
        by = {(g.benchmark, g.group, g.model): g for g in groups}
        for bench in sorted({g.benchmark for g in groups}):
            names = sorted({g.group for g in groups if g.benchmark == bench})
            head = ("type / manipulation", *[f"{m} SRCC" for m in models], *[f"{m} vs anchor" for m in models])
            rows = [
                (
                    g,
                    *[_f(by[(bench, g, m)].srcc) if (bench, g, m) in by else "" for m in models],
                    *[_f(by[(bench, g, m)].pair_acc) if (bench, g, m) in by else "" for m in models],
                )
                for g in names
            ]
            lines += [
                "",
                f"### {bench}: per distortion type / manipulation",
                "",
                "SRCC within each group; vs anchor = how often the reference's best version (pristine photo / "
                "original) is rated above this group's version of it.",
                "",
            ]
            lines += _md_table(head, rows)
    return lines


SIZE_SUFFIX = re.compile(r"^(?P<base>.+)-(?P<w>\d+)x(?P<h>\d+)$")


def _image_size(preds: Sequence[PredictionRecord]) -> Optional[tuple[int, int]]:
    """(width, height) of a benchmark's first readable image, None if none opens."""
    from PIL import Image

    for p in preds[:3]:
        try:
            with Image.open(p.image_path) as im:
                return im.size
        except OSError:
            continue
    return None


def size_section(metrics: Sequence[MetricRecord], predictions: Sequence[PredictionRecord]) -> list[str]:
    """Markdown: per image size, every model and baseline, for each family of benchmarks named `<base>` and
    `<base>-WxH` (the same photos at several sizes, e.g. the demo's `eval_sizes`)."""
    family: dict[str, set[str]] = defaultdict(set)
    for m in metrics:
        match = SIZE_SUFFIX.match(m.benchmark)
        family[match["base"] if match else m.benchmark].add(m.benchmark)
    family = {k: v for k, v in family.items() if len(v) > 1}
    if not family:
        return []
    by = {(m.benchmark, m.model): m for m in metrics}
    preds: dict[str, list[PredictionRecord]] = defaultdict(list)
    for p in predictions:
        if p.model == FINAL_MODEL:
            preds[p.benchmark].append(p)
    lines = [
        "",
        "## Per image size",
        "",
        "The same held-out photos, distorted at each size (long side and orientation as listed), scored by "
        "every model and baseline; SRCC.",
        "",
    ]
    for base, names in sorted(family.items()):
        models = [m for m in MODEL_ORDER if any((n, m) in by for n in names) and m != "base"]
        rows = []
        for name in sorted(names, key=lambda n: ((sz := _image_size(preds[n]) or (0, 0))[0] * sz[1], n)):
            w, h = _image_size(preds[name]) or (0, 0)
            shape = "square" if w == h else "landscape" if w > h else "portrait"
            cells = [_f(by[(name, m)].srcc) if (name, m) in by else "" for m in models]
            gap = by.get((name, FINAL_MODEL)), by.get((name, "random_forest"))
            rows.append(
                (
                    name,
                    f"{w}x{h} {shape}",
                    *cells,
                    _f(gap[0].srcc - gap[1].srcc) if all(gap) and None not in (gap[0].srcc, gap[1].srcc) else "",
                )
            )
        head = ("benchmark", "size", *[MODEL_LABEL.get(m, m) for m in models], "final − forest")
        lines += [f"### {base}", ""] + _md_table(head, rows) + [""]
    return lines


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "benchmark"


def scatter_plot(preds: Sequence[PredictionRecord], path: Path, title: str) -> Path:
    """Prediction vs ground truth (both 0–100) for the parsed predictions; PNG via matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = [p for p in preds if p.pred is not None]
    fig, ax = plt.subplots(figsize=(3.6, 3.6), dpi=100)  # 360 px: two fit side by side in a Prefect artifact
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


def _images(paths: Sequence[Path], out_dir: Path, alt: Callable[[Path], str]) -> str:
    """One paragraph of images (they sit side by side where the page is wide), paths relative to `out_dir`."""
    return " ".join(f"![{alt(p)}]({Path(os.path.relpath(p, out_dir)).as_posix()})" for p in paths)


def write_report(
    metrics: Sequence[MetricRecord],
    predictions: Sequence[PredictionRecord],
    out_dir: Path,
    groups: Sequence[GroupMetricRecord] = (),
    engine: str = "",
    curves: Sequence[tuple[str, Sequence[Path]]] = (),
) -> Path:
    """Write `out_dir/report.md` (+ one `scatter_<benchmark>.png` per benchmark) and `out_dir/report.html` (the same
    page with every picture embedded); return the report.md path.

    groups: per distortion type / manipulation metrics (the "Does it learn?" section); engine: which scoring engine
    scored the models (a line under the heading); curves: (heading, PNG paths) of the training stages of the scored
    model, e.g. ("GRPO …", [reward_iqa.png, …]).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_bench: dict[str, list[PredictionRecord]] = defaultdict(list)
    for p in predictions:
        if p.model == FINAL_MODEL:
            by_bench[p.benchmark].append(p)
    ms = _sorted(metrics)
    lines = [
        "# Benchmark report",
        "",
        "Scores on 0–100 (higher is better). SRCC: Spearman with average ranks; PLCC: Pearson on raw predictions; "
        "brackets: 95% bootstrap intervals. valid = parsed predictions / scored images (strict or lenient; "
        "failures are dropped, never given a default score).",
        "",
        *([f"Scored by the {engine} engine.", ""] if engine else []),
        "## Results",
        "",
        "| benchmark | task | valid | SRCC [95% CI] | PLCC [95% CI] | paper SRCC | paper PLCC |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for m in ms:
        p = paper_row(m.benchmark)
        lines.append(
            f"| {m.benchmark} | {m.task} | {_valid(m)} | {_ci(m.srcc, m.srcc_lo, m.srcc_hi)} | "
            f"{_ci(m.plcc, m.plcc_lo, m.plcc_hi)} | {_f(p.srcc) if p else ''} | {_f(p.plcc) if p else ''} |"
        )
    lines += [
        "",
        "## Answers",
        "",
        "skipped = images that could not be read; lenient = parsed only by the lenient fallback (first number of "
        "the last closed answer block; no answer block = failed); words = mean "
        "completion length; PLCC-log = Pearson after the 4-parameter logistic fit.",
        "",
        "| benchmark | n | skipped | valid | lenient | words | PLCC-log |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in ms:
        lines.append(
            f"| {m.benchmark} | {m.n} | {m.n_skipped} | {_valid(m)} | {m.n_lenient} | {_f(m.mean_words, 1)} "
            f"| {_f(m.plcc_logistic)} |"
        )
    summ = summarize(ms)
    pm = paper_means()
    if summ:
        lines += [
            "",
            "## Mean per task",
            "",
            "| task | sets | SRCC | PLCC | PLCC-log | valid | paper, same sets (SRCC / PLCC) "
            "| paper, all 4 (SRCC / PLCC) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for task, s in summ.items():
            same = [paper_row(m.benchmark) for m in ms if m.task == task and paper_row(m.benchmark)]
            ps = sum(r.srcc for r in same) / len(same) if same else None
            pp = sum(r.plcc for r in same) / len(same) if same else None
            lines.append(
                f"| {task} | {s['n_benchmarks']} | {_f(s['srcc'])} | {_f(s['plcc'])} | "
                f"{_f(s['plcc_logistic'])} | {_f(100 * s['valid_fraction'], 0)}% | {_f(ps)} / {_f(pp)} | "
                f"{_f(pm[task]['srcc'])} / {_f(pm[task]['plcc'])} |"
            )
    lines += size_section(metrics, predictions)
    lines += learning_section(metrics, groups)
    ours = {spec.name: m for m in ms if (spec := spec_for_benchmark(m.benchmark)) is not None}
    lines += [
        "",
        "## The paper's Table 1 beside ours",
        "",
        "| benchmark | task | paper SRCC | paper PLCC | our SRCC | our PLCC | our n |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for spec in _paper_specs():
        key, row, m = spec.name, spec.paper, ours.get(spec.name)
        lines.append(
            f"| {key} | {spec.task} | {_f(row.srcc)} | {_f(row.plcc)} | {_f(m.srcc) if m else 'not run'} | "
            f"{_f(m.plcc) if m else 'not run'} | {m.n_valid if m else ''} |"
        )
    lines += [
        "",
        f"Paper numbers: {PAPER_SOURCE}. Blank = the paper has no such benchmark. "
        "– = undefined: fewer than 3 valid predictions, or constant predictions (a model that gives every image "
        "the same score has no rank correlation).",
        "",
        "## Scatter plots",
        "",
    ]
    scatters = []
    for m in ms:
        title = f"{m.benchmark} ({m.task})\nSRCC {_f(m.srcc)}, PLCC {_f(m.plcc)}, n_valid {m.n_valid}"
        scatters.append(
            scatter_plot(by_bench.get(m.benchmark, []), out_dir / f"scatter_{_safe(m.benchmark)}.png", title)
        )
    lines += [
        _images(scatters, out_dir, lambda p: f"{p.stem.removeprefix('scatter_')}: prediction vs ground truth"),
        "",
    ]
    curves = [(heading, [Path(p) for p in pngs]) for heading, pngs in curves if pngs]
    if curves:
        lines += ["## Training curves of the scored model", ""]
        for heading, pngs in curves:
            lines += [f"### {heading}", "", _images(pngs, out_dir, lambda p: p.stem.replace("_", " ")), ""]
    text = "\n".join(lines) + "\n"
    path = out_dir / "report.md"
    path.write_text(text, encoding="utf-8")
    (out_dir / REPORT_HTML).write_text(render_html(text, out_dir), encoding="utf-8")
    return path


# ---------------------------------------------------------------- one-page HTML, embedded pictures
REPORT_HTML = "report.html"
_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")
_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; margin: 0;
       background: #f6f7f9; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 8px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #e3e6ea;
     padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #dde1e6; padding: 4px 10px; white-space: nowrap; }
th { background: #eef1f5; text-align: left; } tr:nth-child(even) td { background: #fafbfc; }
p { max-width: 900px; } p:has(img) { max-width: none; }
p img { margin: 0 12px 12px 0; vertical-align: top; border: 1px solid #e3e6ea; }
img { max-width: 100%; }
"""


def inline_images(markdown: str, base_dir: Path) -> str:
    """`![alt](x.png)` -> `![alt](data:image/png;base64,…)` for every PNG that exists (paths relative to base_dir)."""

    def embed(m: re.Match) -> str:
        path = (Path(base_dir) / m.group(2)).resolve()
        if not path.is_file():
            return m.group(0)
        return f"![{m.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"

    return _IMAGE_RE.sub(embed, markdown)


def render_html(markdown: str, base_dir: Path, title: str = "Benchmark report") -> str:
    """A self-contained HTML page of a markdown report (tables, pictures embedded as data: URIs)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = md.render(inline_images(markdown, base_dir))
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>\n'
        f"<body><main>\n{body}</main></body></html>\n"
    )


__all__ = [
    "paper_row",
    "paper_means",
    "format_table",
    "write_report",
    "scatter_plot",
    "render_html",
    "inline_images",
    "REPORT_HTML",
]
