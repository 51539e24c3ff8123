#!/usr/bin/env python
"""Draw the stage diagram of the README and docs/pipeline.md: the six stages, what each one runs and writes, and
which Prefect work pool runs it.

    .venv/bin/python scripts/draw_pipeline.py [--out docs/img/pipeline.png]

Deterministic (no dates in the file's metadata), so redrawing an unchanged diagram gives the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

# (stage, what runs it, what it writes in runs/<name>/<stage>/<key>/)
STAGES = [
    ("samples", "dataset folders\nor the demo generator", ["samples.parquet", "skipped.parquet"]),
    ("rationales", "teacher: offline or\nOpenAI-compatible", ["rationales.parquet", "failed.parquet", "shards/"]),
    ("filtered", "rule checks +\noptional LLM judge", ["kept.parquet", "rejected.parquet"]),
    ("sft", "trl SFTTrainer", ["model/", "checkpoints/", "curves/"]),
    ("grpo", "trl GRPOTrainer +\nTATAR rewards", ["model/", "checkpoints/", "train_log.parquet", "curves/"]),
    (
        "benchmark",
        "scorer: transformers\nor vLLM; baselines",
        ["predictions.parquet", "metrics.parquet", "report.md / .html"],
    ),
]
POOLS = [("CPU pool  (tatar-cpu)", 0, 3, "#e8f1fb", "#2f6db5"), ("GPU pool  (tatar-gpu)", 3, 6, "#fdf0e4", "#c0661a")]

BOX_W, BOX_H, GAP = 2.1, 1.15, 0.5
X0, BOX_Y = 0.45, 2.35


def box_x(i: int) -> float:
    return X0 + i * (BOX_W + GAP)


def draw(out: Path) -> None:
    width = box_x(len(STAGES) - 1) + BOX_W + X0
    fig, ax = plt.subplots(figsize=(width, 5.0))
    ax.set_xlim(0, width)
    ax.set_ylim(0, 5.0)
    ax.axis("off")

    # the pools: one band each, behind their stages
    for label, first, last, fill, edge in POOLS:
        x = box_x(first) - 0.22
        w = box_x(last - 1) + BOX_W + 0.22 - x
        ax.add_patch(
            FancyBboxPatch(
                (x, 0.8),
                w,
                3.2,
                boxstyle="round,pad=0,rounding_size=0.12",
                facecolor=fill,
                edgecolor=edge,
                linewidth=1.2,
                zorder=0,
            )
        )
        ax.text(x + 0.15, 3.78, label, ha="left", va="center", fontsize=11, fontweight="bold", color=edge)

    # the tatar flow that dispatches the stages
    ax.add_patch(
        FancyBboxPatch(
            (box_x(0) - 0.22, 4.35),
            width - 2 * (box_x(0) - 0.22),
            0.6,
            boxstyle="round,pad=0,rounding_size=0.12",
            facecolor="#f3f3f3",
            edgecolor="#555555",
            linewidth=1.0,
        )
    )
    ax.text(
        width / 2,
        4.65,
        "tatar/full  (the tatar flow, on the CPU pool): reports finished stages as cached and "
        "starts each unfinished stage's deployment on its pool",
        ha="center",
        va="center",
        fontsize=10.5,
    )

    for i, (name, runs, writes) in enumerate(STAGES):
        x = box_x(i)
        edge = POOLS[0][4] if i < 3 else POOLS[1][4]
        ax.add_patch(
            FancyBboxPatch(
                (x, BOX_Y),
                BOX_W,
                BOX_H,
                boxstyle="round,pad=0,rounding_size=0.1",
                facecolor="white",
                edgecolor=edge,
                linewidth=1.8,
                zorder=2,
            )
        )
        ax.text(
            x + BOX_W / 2,
            BOX_Y + BOX_H - 0.27,
            name,
            ha="center",
            va="center",
            fontsize=13,
            fontweight="bold",
            zorder=3,
        )
        ax.text(
            x + BOX_W / 2,
            BOX_Y + 0.36,
            runs,
            ha="center",
            va="center",
            fontsize=9,
            color="#333333",
            linespacing=1.25,
            zorder=3,
        )
        ax.text(x + 0.08, BOX_Y - 0.2, "writes", ha="left", va="top", fontsize=9, style="italic", color="#555555")
        ax.text(
            x + 0.08,
            BOX_Y - 0.5,
            "\n".join(writes),
            ha="left",
            va="top",
            fontsize=9,
            family="monospace",
            linespacing=1.5,
        )
        if i + 1 < len(STAGES):
            ax.add_patch(
                FancyArrowPatch(
                    (x + BOX_W + 0.04, BOX_Y + BOX_H / 2),
                    (box_x(i + 1) - 0.04, BOX_Y + BOX_H / 2),
                    arrowstyle="-|>",
                    mutation_scale=16,
                    linewidth=1.6,
                    color="#333333",
                    zorder=4,
                )
            )

    ax.text(
        width / 2,
        0.1,
        "Each stage writes runs/<name>/<stage>/<key>/ and manifest.json last.\n"
        "The key hashes the config the stage reads, its inputs' keys and its code: a rerun reuses every "
        "finished stage.",
        linespacing=1.4,
        ha="center",
        va="bottom",
        fontsize=10,
        color="#333333",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight", facecolor="white", metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/img/pipeline.png"))
    args = ap.parse_args()
    draw(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
