"""`scripts/gpu_check.py --shape tiny` runs on CPU: every phase runs (vLLM is skipped with its reason where it does
not import), the JSON summary holds the figures, and nothing on its import path needs pydantic, polars or Prefect
(the GPU machine has none of them)."""

from __future__ import annotations

import json
import subprocess
import sys

RUN = """
import json, runpy, sys
sys.argv = ["gpu_check.py"] + sys.argv[1:]
try:
    runpy.run_path("scripts/gpu_check.py", run_name="__main__")
except SystemExit as e:
    rc = e.code
tops = sorted({m.split(".")[0] for m in sys.modules})
print("MODULES " + json.dumps([m for m in ("pydantic", "polars", "prefect", "data_contracts") if m in tops]))
sys.exit(rc)
"""


def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    out = tmp_path / "summary.json"
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN,
            "--shape",
            "tiny",
            "--steps",
            "1",
            "--images",
            "2",
            "--score-batch",
            "2",
            "--max-new-tokens",
            "8",
            "--prompts",
            "1",
            "--generations",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads(out.read_text())
    phases = summary["phases"]
    assert summary["shape"] == "tiny" and summary["device"] == "cpu"
    assert phases["build"]["config_vocab"] == 152_064 and phases["build"]["vocab"] == 151_665
    for name in ("sft_full", "sft_lora", "grpo_hf", "score_iqa", "score_iaa"):
        assert "error" not in phases[name] and phases[name]["seconds"] > 0, (name, phases[name])
    assert phases["sft_full"]["master_dtype"] == "torch.float32"
    assert phases["sft_lora"]["trainable_parameters"] < phases["sft_full"]["trainable_parameters"] / 10
    assert phases["grpo_hf"]["reference_model"] is False  # LoRA: the adapter-disabled model is the reference
    assert phases["score_iqa"]["images"] == 2 and phases["score_iqa"]["images_per_s"] > 0
    assert "skipped" in phases["grpo_vllm"] or "error" not in phases["grpo_vllm"]
    modules = json.loads(next(line for line in p.stdout.splitlines() if line.startswith("MODULES "))[8:])
    assert modules == [], f"on the GPU check's import path: {modules}"
