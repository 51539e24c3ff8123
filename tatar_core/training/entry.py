"""Entry point of a launched training job: `accelerate launch … -m tatar_core.training.entry {sft|grpo} SPEC`.

Reads the spec written by tatar_core.training.launch.write_spec and runs the stage in every process (the trainers
coordinate through accelerate); the main process writes out_dir/launch/result.json and reports its log lines and
progress as event lines on stdout (`tatar_core.progress.EventEmitter`), which the parent hands to its stage context.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tatar_core.training.entry", description=__doc__)
    parser.add_argument("stage", choices=["sft", "grpo"])
    parser.add_argument("spec", help="spec.json written by tatar_core.launch.write_spec")
    ns = parser.parse_args(argv)
    os.environ["TATAR_LAUNCHED"] = "1"  # never launch again from inside the job
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from tatar_core.progress import EventEmitter
    from tatar_core.training.launch import read_spec

    spec = read_spec(ns.spec)
    if spec["stage"] != ns.stage:
        raise SystemExit(f"{ns.spec}: spec is for stage {spec['stage']!r}, not {ns.stage!r}")
    if ns.stage == "sft":
        from tatar_core.training.sft import run_sft as run
    else:
        from tatar_core.training.grpo import run_grpo as run
    events = EventEmitter()
    run(
        spec["records"],
        spec["model_path"],
        spec["cfg"],
        spec["model_cfg"],
        spec["out_dir"],
        log=events.log,
        progress=events.progress,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
