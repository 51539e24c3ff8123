"""scripts/bench_scorer.py runs end to end on a few demo images and prints every speed and both ratios."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_scorer.py"


@pytest.mark.slow
def test_bench_scorer_script_prints_speeds(sft_checkpoint, capsys):
    spec = importlib.util.spec_from_file_location("bench_scorer", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--model", str(sft_checkpoint), "--n", "8", "--batch-size", "8", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ours .*\d+\.\d+ img/s", out) and re.search(r"reference .*\d+\.\d+ img/s", out)
    assert re.search(r"generate .*batch  8, stop at </answer>.*\d+\.\d+ img/s", out)
    assert re.search(r"fair speed-up over HF generate at the same batch and stop ids: \d+\.\d+x", out)
    assert re.search(r"speed-up over the reference-style loop: \d+\.\d+x; without drafts \d+\.\d+x", out)
    assert "same completions as ours 8/8" in out  # the fair baseline stops where ours does, same tokens (fp32)
    assert re.search(r"same parsed score as the reference on \d+/8 images", out)
    assert "same completions as with drafts on 8/8" in out  # drafting never changes a completion
