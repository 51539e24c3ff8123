#!/usr/bin/env python
"""SFT step time on CPU: trl's fused LM head scoring every position vs only the labelled ones (same batches).

    .venv/bin/python scripts/bench_sft_loss.py [--steps 40] [--batch 8] [--repeat 2]

trl 1.16 scores every position of the batch on devices without Triton; `tatar_core.training.launch.
score_label_positions_only` (applied by the SFT and GRPO stages) makes CPU score only the labelled (completion)
positions, whose loss is the same. Both modes run the demo recipe's SFT (embedded model, hand-set tower, IQA rows
with empty thoughts, lr 3e-3) on the same demo training images, alternately `--repeat` times (other processes may
share the CPU; the fastest round of each counts). Prints the trainer's own train_runtime per step for each mode,
the speed-up, and the largest relative difference between the two modes' logged losses.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()

    import torch
    import trl.trainer.utils as trl_utils

    from tatar_core.training import launch

    torch.set_num_threads(1)
    launch.score_label_positions_only()
    compact = trl_utils._use_triton
    modes = {"every position (trl on CPU)": compact.__wrapped__, "labelled positions only (tatar)": compact}
    launch.score_label_positions_only = lambda: None  # the benchmark sets the mode itself

    with tempfile.TemporaryDirectory(prefix="bench_sft_loss_") as d:
        run(Path(d), args, modes)


def run(tmp: Path, args, modes) -> None:
    import trl.trainer.utils as trl_utils

    from data_contracts.config.model import ModelConfig
    from data_contracts.config.samples import DemoDataConfig
    from data_contracts.config.training import SftConfig
    from data_contracts.records import KeptRecord
    from tatar_core.demo.data import build_demo_samples
    from tatar_core.demo.tiny import build_tiny_model
    from tatar_core.method.prompts import make_target
    from tatar_core.training.sft import run_sft

    samples = build_demo_samples(DemoDataConfig(iaa_manipulations=[], generated_refs=4), tmp / "samples")
    kept = [
        KeptRecord(
            sample_id=s.sample_id,
            image_path=s.image_path,
            task="iqa",
            score=s.score,
            rationale="",
            target=make_target("", s.score),
            teacher="none",
            n_words=0,
        )
        for s in samples
        if s.split == "train"
    ]
    base = build_tiny_model(tmp / "base", seed=0, analytic_tower=True)
    cfg = SftConfig(
        learning_rate=3e-3,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        iqa_fraction=1.0,
        seed=0,
        trainer_args={"logging_steps": 1, "save_steps": 10**6},
    )
    best, losses = {}, {}
    for r in range(args.repeat):
        for i, (name, use_triton) in enumerate(modes.items()):
            trl_utils._use_triton = use_triton
            out = tmp / f"sft-{r}-{i}"
            run_sft(kept, base, cfg, ModelConfig(), out)
            history = json.loads((out / "log_history.json").read_text())
            runtime = next(h["train_runtime"] for h in history if "train_runtime" in h)
            best[name] = min(best.get(name, runtime), runtime)
            losses[name] = [h["loss"] for h in history if "loss" in h]
    print(f"SFT on CPU, {args.steps} steps x batch {args.batch}, {len(kept)} training rows, best of {args.repeat}:")
    for name, runtime in best.items():
        print(f"  {name:34s} {runtime / args.steps:.3f} s/step")
    full, ours = best.values()
    a, b = losses.values()
    diff = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    print(f"  speed-up {full / ours:.2f}x; largest relative loss difference over {len(a)} logged steps: {diff:.1e}")


if __name__ == "__main__":
    main()
