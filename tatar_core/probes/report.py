"""The probes report: per probe a table of every variant (mean and 95% interval over seeds), the paper's claim, each
comparison's paired difference and the verdict it supports, GRPO curves over steps; `report.md`, the same page as one
self-contained `report.html` (pictures embedded), and `cells.parquet` (every cell's numbers).

Written to `<run_dir>/probes/<digest16>/`, the digest naming the grid (every cell's probe, variant, seed and benchmark
key), so reruns of the same grid rewrite the same folder and another grid (a row added, other seeds) gets its own.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import polars as pl

from data_contracts.config.probes import ProbeSpec
from tatar_core.benchmark.report import render_html
from tatar_core.method.prompts import TASKS
from tatar_core.probes.grid import Cell, Grid
from tatar_core.probes.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Interval, interval, paired, verdict

REPORT_MD, REPORT_HTML, CELLS = "report.md", "report.html", "cells.parquet"
TRAIN_FIELDS = ("reward_total", "group_std", "adv_var", "zero_std_frac", "words", "parse_rate")
TRAIN_LABEL = {
    "reward_total": "summed reward",
    "group_std": "within-group reward std",
    "adv_var": "advantage variance",
    "zero_std_frac": "zero-variance groups (share)",
    "words": "completion words",
    "parse_rate": "strict parse rate",
}
METRIC_LABEL = {
    "srcc": "SRCC",
    "plcc": "PLCC",
    "pair_acc": "pair accuracy",
    "words": "answer words",
    "words_sd": "sd of answer words",
    "valid": "parsed share",
    "train_reward": "GRPO reward",
    "train_reward_std": "GRPO within-group reward std",
    "train_adv_var": "GRPO advantage variance",
    "train_zero_std_frac": "GRPO zero-variance groups",
    "train_words": "GRPO completion words",
    "train_words_drop": "GRPO completion words, first third - last third",
}
PAPER_TABLE2 = "the paper's Table 2 (arXiv 2603.19779), quoted by a third-party summary, not checked against the PDF"


def report_dir(grid: Grid) -> Path:
    h = hashlib.sha256()
    for c in grid.cells:
        h.update(f"{c.probe}/{c.variant}/{c.seed}/{c.keys['benchmark']}\n".encode())
    root = grid.cells[0].cfg.run_dir
    root = Path(root) if Path(root).is_absolute() or grid.base_dir is None else Path(grid.base_dir) / root
    return root / "probes" / h.hexdigest()[:16]


# ---------------------------------------------------------------- one cell's numbers
def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def _sd(xs) -> float:
    xs = [float(x) for x in xs]
    if len(xs) < 2:
        return float("nan")
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def cell_numbers(grid: Grid, cell: Cell, model: str, cache: dict) -> Optional[dict]:
    """{task: {metric: value}} + {"kept": {...}, "train": rows} for a cell whose benchmark finished, else None."""
    pipe = grid.pipeline(cell)
    bench = pipe.manifest("benchmark")
    if bench is None:
        return None
    key = (pipe.dir("benchmark"), model)
    if key in cache:
        return cache[key]
    d = pipe.dir("benchmark")
    metrics = pl.read_parquet(d / "metrics.parquet").filter(pl.col("model") == model)
    preds = pl.read_parquet(d / "predictions.parquet", columns=["task", "model", "n_words", "pred"]).filter(
        pl.col("model") == model
    )
    train = pl.DataFrame()
    if pipe.manifest("grpo") is not None and (pipe.dir("grpo") / "train_log.parquet").exists():
        train = pl.read_parquet(pipe.dir("grpo") / "train_log.parquet")
    filt = pipe.manifest("filtered")
    out: dict = {"kept": {t: (filt.row_counts.get(f"kept_{t}") if filt else None) for t in TASKS}, "train": train}
    for t in TASKS:
        m = metrics.filter(pl.col("task") == t)
        p = preds.filter(pl.col("task") == t)
        row = {
            "srcc": _mean(m["srcc"].to_list()),
            "plcc": _mean(m["plcc"].to_list()),
            "pair_acc": _mean(m["pair_acc"].to_list()),
            "words": _mean(m["mean_words"].to_list()),
            "words_sd": _sd(p["n_words"].to_list()) if len(p) else float("nan"),
            "valid": (m["n_valid"].sum() / m["n"].sum()) if len(m) and m["n"].sum() else float("nan"),
        }
        tr = train.filter(pl.col("task") == t).sort("step") if len(train) else train
        if len(tr):
            row.update(
                {
                    f"train_{k}": _mean(tr[f].to_list())
                    for k, f in (
                        ("reward", "reward_total"),
                        ("reward_std", "group_std"),
                        ("adv_var", "adv_var"),
                        ("zero_std_frac", "zero_std_frac"),
                        ("words", "words"),
                    )
                }
            )
            w = tr["words"].to_list()
            third = max(1, len(w) // 3)
            row["train_words_drop"] = _mean(w[:third]) - _mean(w[-third:])
        out[t] = row
    cache[key] = out
    return out


def collect(grid: Grid) -> dict[str, dict[str, dict[int, Optional[dict]]]]:
    """probe -> variant -> seed -> cell_numbers (None: that cell's benchmark has not finished)."""
    cache: dict = {}
    out: dict = defaultdict(lambda: defaultdict(dict))
    for c in grid.cells:
        out[c.probe][c.variant][c.seed] = cell_numbers(grid, c, grid.cfg.probes[c.probe].model, cache)
    return out


def _values(per_seed: dict[int, Optional[dict]], task: str, metric: str) -> dict[int, Optional[float]]:
    return {s: (v[task].get(metric) if v else None) for s, v in per_seed.items()}


# ---------------------------------------------------------------- curves
def probe_curves(probe: str, spec: ProbeSpec, data: dict, out_dir: Path) -> list[Path]:
    """Per task: one figure, a panel per GRPO log field, a line per variant (mean over seeds; band: min–max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for task in TASKS:
        fig, axes = plt.subplots(2, 3, figsize=(12, 6), dpi=90)
        drawn = False
        for i, (variant, per_seed) in enumerate(data.items()):
            frames = [
                v["train"].filter(pl.col("task") == task)
                for v in per_seed.values()
                if v is not None and len(v["train"])
            ]
            frames = [f for f in frames if len(f)]
            if not frames:
                continue
            drawn = True
            allf = pl.concat([f.select("step", *TRAIN_FIELDS) for f in frames])
            for ax, field in zip(axes.flat, TRAIN_FIELDS):
                g = (
                    allf.group_by("step")
                    .agg(
                        pl.col(field).mean().alias("m"),
                        pl.col(field).min().alias("lo"),
                        pl.col(field).max().alias("hi"),
                    )
                    .sort("step")
                )
                ax.plot(g["step"], g["m"], color=colors[i % len(colors)], label=f"{variant} ({len(frames)} seeds)")
                if len(frames) > 1:
                    ax.fill_between(g["step"], g["lo"], g["hi"], color=colors[i % len(colors)], alpha=0.15, lw=0)
                ax.set_title(TRAIN_LABEL[field], fontsize=9)
                ax.set_xlabel("GRPO step", fontsize=8)
                ax.tick_params(labelsize=7)
        if not drawn:
            plt.close(fig)
            continue
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"{spec.title}: GRPO logs, {task.upper()} (mean over seeds; band: min-max)", fontsize=10)
        fig.tight_layout()
        p = out_dir / f"curves_{probe}_{task}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    return paths


# ---------------------------------------------------------------- tables
def _ci(iv: Interval, nd: int = 3) -> str:
    return iv.text(nd) + (f" (n {iv.n})" if 0 < iv.n < 3 else "")


def _cell_count(per_seed: dict[int, Optional[dict]]) -> str:
    done = sum(v is not None for v in per_seed.values())
    return f"{done}/{len(per_seed)}"


def variant_table(spec: ProbeSpec, data: dict, method: str) -> list[str]:
    head = ["variant", "overrides", "seeds", "kept IQA / IAA"]
    cols = [(t, m) for t in TASKS for m in ("srcc", "plcc", "pair_acc", "words")]
    head += [f"{t.upper()} {METRIC_LABEL[m]}" for t, m in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, per_seed in data.items():
        kept = [(v["kept"]["iqa"], v["kept"]["iaa"]) for v in per_seed.values() if v]
        kept_txt = ", ".join(sorted({f"{a}/{b}" for a, b in kept})) or "–"
        ov = ", ".join(f"`{k}={v}`" for k, v in spec.variants[variant].items()) or "(base recipe)"
        row = [f"**{variant}**", ov, _cell_count(per_seed), kept_txt]
        for t, m in cols:
            row.append(_ci(interval(list(_values(per_seed, t, m).values()), method), 1 if m == "words" else 3))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def train_table(data: dict, method: str, tasks: Sequence[str] = TASKS) -> list[str]:
    keys = (
        "train_reward",
        "train_reward_std",
        "train_adv_var",
        "train_zero_std_frac",
        "train_words",
        "train_words_drop",
        "words_sd",
    )
    head = ["variant", "task"] + [
        METRIC_LABEL[k] if k != "words_sd" else "sd of answer words (benchmark)" for k in keys
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, per_seed in data.items():
        for t in tasks:
            row = [f"**{variant}**", t.upper()]
            for k in keys:
                row.append(_ci(interval(list(_values(per_seed, t, k).values()), method), 1 if "words" in k else 3))
            lines.append("| " + " | ".join(row) + " |")
    return lines


def comparison_rows(spec: ProbeSpec, data: dict, method: str) -> list[dict]:
    rows = []
    for c in spec.comparisons:
        b, w = _values(data[c.better], c.task, c.metric), _values(data[c.worse], c.task, c.metric)
        diff = paired(b, w, c.direction, method)
        rows.append(
            {
                "claim": c.claim,
                "test": f"{c.better} {'>' if c.direction == 'higher' else '<'} {c.worse}",
                "task": c.task,
                "metric": c.metric,
                "better": interval(list(b.values()), method),
                "worse": interval(list(w.values()), method),
                "diff": diff,
                "verdict": verdict(diff),
            }
        )
    return rows


def comparison_table(rows: list[dict]) -> list[str]:
    lines = [
        "| paper's claim | test | task · metric | left | right | paired difference [95%] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r["verdict"]
        badge = f"**{v}**" if v != INCONCLUSIVE else v
        lines.append(
            f"| {r['claim']} | {r['test']} | {r['task'].upper()} · {METRIC_LABEL[r['metric']]} | "
            f"{_ci(r['better'])} | {_ci(r['worse'])} | {_ci(r['diff'])} | {badge} |"
        )
    return lines


def paper_table(spec: ProbeSpec, data: dict, method: str) -> list[str]:
    lines = [
        "| variant | paper IQA SRCC / PLCC | ours IQA SRCC | ours IQA PLCC | paper IAA SRCC / PLCC | "
        "ours IAA SRCC | ours IAA PLCC |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, per_seed in data.items():
        p = spec.paper.get(variant, {})

        def pp(t: str) -> str:
            a, b = p.get(f"{t}_srcc"), p.get(f"{t}_plcc")
            return f"{a:.3f} / {b:.3f}" if a is not None and b is not None else "–"

        ours = {
            (t, m): _ci(interval(list(_values(per_seed, t, m).values()), method))
            for t in TASKS
            for m in ("srcc", "plcc")
        }
        lines.append(
            f"| **{variant}** | {pp('iqa')} | {ours['iqa', 'srcc']} | {ours['iqa', 'plcc']} | {pp('iaa')} | "
            f"{ours['iaa', 'srcc']} | {ours['iaa', 'plcc']} |"
        )
    return lines


def seed_table(grid: Grid, numbers: dict) -> tuple[list[str], list[dict]]:
    lines = [
        "| probe | variant | seed | model | IQA SRCC | IQA PLCC | IAA SRCC | IAA PLCC | IAA pair acc | "
        "sft key | grpo key | benchmark key |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    records = []
    for c in grid.cells:
        v = numbers[c.probe][c.variant][c.seed]
        model = grid.cfg.probes[c.probe].model
        rec = {
            "probe": c.probe,
            "variant": c.variant,
            "seed": c.seed,
            "model": model,
            "finished": v is not None,
            **{f"{k}_key": c.keys[k][:16] for k in ("samples", "rationales", "sft", "grpo", "benchmark")},
        }
        for t in TASKS:
            for m in (
                "srcc",
                "plcc",
                "pair_acc",
                "words",
                "words_sd",
                "valid",
                "train_reward",
                "train_reward_std",
                "train_adv_var",
                "train_zero_std_frac",
                "train_words",
                "train_words_drop",
            ):
                rec[f"{t}_{m}"] = v[t].get(m, float("nan")) if v else float("nan")
        records.append(rec)
        f = lambda x: "–" if not math.isfinite(x) else f"{x:.3f}"  # noqa: E731
        lines.append(
            f"| {c.probe} | {c.variant} | {c.seed} | {model} | "
            + (
                " | ".join(f(rec[k]) for k in ("iqa_srcc", "iqa_plcc", "iaa_srcc", "iaa_plcc", "iaa_pair_acc"))
                if v
                else "not finished | | | |"
            )
            + f" | {c.keys['sft'][:10]} | {c.keys['grpo'][:10]} | {c.keys['benchmark'][:10]} |"
        )
    return lines, records


# ---------------------------------------------------------------- the page
def write_probes_report(grid: Grid, outcome=None) -> Path:
    """Write the report of every finished cell (module doc); returns the report.html path."""
    from data_contracts.config.probes import flatten

    out = report_dir(grid)
    out.mkdir(parents=True, exist_ok=True)
    cfg, method = grid.cfg, grid.cfg.interval
    numbers = collect(grid)
    how = (
        "mean ± t(0.975, n−1)·sd/√n over the seeds (Student t interval)"
        if method == "t"
        else "percentile bootstrap of the mean over the seeds (10,000 resamples)"
    )
    scale = flatten(cfg.scale)
    verdicts: list[dict] = []
    body: list[str] = []
    for probe, spec in cfg.probes.items():
        data = numbers[probe]
        model = "after SFT" if spec.model == "sft" else "after GRPO"
        body += [
            "",
            f"## {spec.title}",
            "",
            f"> **The paper:** {spec.claim}" + (f" — *{spec.source}*" if spec.source else ""),
            "",
            f"Held-out benchmark numbers {model} (mean [95% interval] over seeds; each task's numbers are the mean "
            "over that task's benchmarks; words = mean completion length).",
            "",
        ]
        if spec.overrides:
            body += [
                "Every variant of this probe also sets "
                + ", ".join(f"`{k}={v}`" for k, v in flatten(spec.overrides).items())
                + ".",
                "",
            ]
        body += variant_table(spec, data, method)
        if spec.paper:
            body += [
                "",
                f"The paper's numbers beside ours ({PAPER_TABLE2}; the paper's are means over its 4 IQA and "
                "4 IAA benchmarks, ours over this run's benchmarks):",
                "",
            ]
            body += paper_table(spec, data, method)
        if spec.curves:
            body += [
                "",
                "GRPO training logs (mean over logging steps; `train_words_drop` = mean completion words of "
                "the first third of steps − the last third: a positive value is completions getting shorter):",
                "",
            ]
            body += train_table(data, method)
            pics = probe_curves(probe, spec, data, out)
            if pics:
                body += [""] + [f"![{p.stem}]({p.name})" for p in pics]
        rows = comparison_rows(spec, data, method)
        verdicts += [{**r, "probe": probe} for r in rows]
        if rows:
            body += [
                "",
                "What the intervals support (paired over seeds: each seed's difference, then its interval):",
                "",
            ]
            body += comparison_table(rows)
    count = {v: sum(r["verdict"] == v for r in verdicts) for v in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)}
    done = sum(v is not None for p in numbers.values() for var in p.values() for v in var.values())
    lines = [
        "# TATAR controlled probes",
        "",
        f"Base config `{grid.base}` with {len(scale)} scale override(s) "
        + (f"({', '.join(f'`{k}={v}`' for k, v in scale.items())})" if scale else "(the base recipe unchanged)")
        + f"; seeds {cfg.seeds} (set as {', '.join(f'`{k}`' for k in cfg.seed_keys)}); "
        f"{done} of {len(grid.cells)} cells finished; {len(grid.nodes)} distinct stage runs.",
        "",
        f"Intervals: 95%, {how}. A verdict reads the interval of the paired difference: **supported** when it lies "
        "above 0, **not supported** when it lies below 0 (the opposite holds at this scale), otherwise "
        "*inconclusive at this scale* (also with fewer than 2 seeds). Each comparison is read alone (no correction "
        "for the number of comparisons). This is a demo-scale experiment on the embedded tiny model unless the "
        "base config says otherwise: a verdict says what this grid shows, not what the paper's model does.",
        "",
        f"Verdicts: {count[SUPPORTED]} supported, {count[NOT_SUPPORTED]} not supported, "
        f"{count[INCONCLUSIVE]} inconclusive at this scale.",
    ]
    if outcome is not None:
        lines += [
            "",
            f"This run: {outcome.ran} stage run(s) ran, {len(outcome.results) - outcome.ran} cached, "
            f"{len(outcome.failed)} failed, {len(outcome.skipped)} not run (input failed); {outcome.seconds:.0f} s.",
        ]
    seeds_md, records = seed_table(grid, numbers)
    lines += body + ["", "## Every cell", "", *seeds_md, ""]
    text = "\n".join(lines) + "\n"
    (out / REPORT_MD).write_text(text, encoding="utf-8")
    (out / REPORT_HTML).write_text(render_html(text, out, title="TATAR controlled probes"), encoding="utf-8")
    pl.DataFrame(records).write_parquet(out / CELLS)
    pl.DataFrame(
        [
            {
                "probe": r["probe"],
                "claim": r["claim"],
                "test": r["test"],
                "task": r["task"],
                "metric": r["metric"],
                "diff": r["diff"].mean,
                "lo": r["diff"].lo,
                "hi": r["diff"].hi,
                "n": r["diff"].n,
                "verdict": r["verdict"],
            }
            for r in verdicts
        ]
        or [
            {
                "probe": "",
                "claim": "",
                "test": "",
                "task": "",
                "metric": "",
                "diff": 0.0,
                "lo": 0.0,
                "hi": 0.0,
                "n": 0,
                "verdict": "",
            }
        ]
    ).filter(pl.col("probe") != "").write_parquet(out / "verdicts.parquet")
    return out / REPORT_HTML


__all__ = ["write_probes_report", "report_dir", "collect", "cell_numbers", "REPORT_MD", "REPORT_HTML"]
