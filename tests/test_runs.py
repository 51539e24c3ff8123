"""`tatar runs`: every stage folder of every run with its key, status (finished / in progress / failed), time and
headline numbers, newest run first; the status files the runner keeps while a stage runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from e2e_support import TINY

from data_contracts import StageManifest
from data_contracts.config import load_config
from tatar_core.cli.main import main
from tatar_core.pipeline.runner import Pipeline
from tatar_core.pipeline.runs import STATUS_NAME, StatusWriter, list_runs


def _section(text: str, header_end: str) -> str:
    blocks = text.split("\n\n")
    return next(b for b in blocks if b.splitlines()[0].split()[0].endswith(header_end))


def test_runs_lists_finished_failed_in_progress_and_killed_stages(tmp_path, capsys):
    runs = tmp_path / "runs"
    tiny = {k: v for k, v in TINY.items() if k.startswith("samples.")}
    # an older run: the samples stage really ran (status file gone once the manifest is written)
    old = Pipeline(load_config("configs/demo.yaml", {**tiny, "run_dir": str(runs / "old")}), log=lambda _: None)
    done = old.run("samples")
    assert not (done.dir / STATUS_NAME).exists()
    time.sleep(1.1)  # the newer run is newer by more than the timestamps' resolution

    # a newer run: samples failed (missing dataset folder), sft in progress (this process), grpo killed
    bad = Pipeline(
        load_config(
            "configs/demo.yaml",
            {
                "run_dir": str(runs / "new"),
                "samples.source": "datasets",
                "samples.datasets": [{"name": "koniq", "root": str(tmp_path / "nowhere")}],
            },
        ),
        log=lambda _: None,
    )
    with pytest.raises(Exception, match="not found"):
        bad.run("samples")
    failed = json.loads((bad.dir("samples") / STATUS_NAME).read_text())
    assert failed["state"] == "failed" and "not found" in failed["error"]
    sft = runs / "new" / "sft" / "0123456789abcdef"
    sft.mkdir(parents=True)
    seen = []
    report = StatusWriter(sft, "sft").tee(lambda *a, **kw: seen.append(a))
    report("sft", 120, 300, unit="steps")
    assert seen == [("sft", 120, 300)]  # the tee passes progress on
    grpo = runs / "new" / "grpo" / "fedcba9876543210"
    grpo.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tatar_core.pipeline.runs import StatusWriter; StatusWriter(sys.argv[1], 'grpo')",
            str(grpo),
        ],
        check=True,
    )  # its process is gone now

    statuses = {(s.run, s.stage): s for _, rows in list_runs(runs) for s in rows}
    assert statuses[("old", "samples")].status == "finished"
    assert statuses[("new", "samples")].status == "failed"
    assert statuses[("new", "sft")].status == "in progress" and statuses[("new", "sft")].text == "120/300 steps"
    assert statuses[("new", "grpo")].status == "failed" and "is gone" in statuses[("new", "grpo")].text

    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert out.index(str(runs / "new")) < out.index(str(runs / "old"))  # newest first
    m = StageManifest.read(done.dir)
    old_rows = _section(out, "old").splitlines()
    row = next(line for line in old_rows if line.lstrip().startswith("samples"))
    assert done.dir.name in row and " finished " in row and f"{m.seconds:.0f} s" in row
    assert f"train {m.row_counts['train_iqa']} IQA + {m.row_counts['train_iaa']} IAA" in row
    new_rows = _section(out, "new").splitlines()
    assert any(" failed " in r and "DatasetError" in r and "not found" in r for r in new_rows if "samples" in r)
    assert any(" in progress " in r and "120/300 steps" in r for r in new_rows if r.lstrip().startswith("sft"))
    assert any(" failed " in r and "is gone" in r for r in new_rows if r.lstrip().startswith("grpo"))


def test_benchmark_headline_gives_the_final_models_numbers_not_the_mean_over_baselines():
    from tatar_core.pipeline.describe import headline

    rows = [
        ("grpo", "iqa", 0.68, 0.69),
        ("sft", "iqa", 0.60, 0.61),
        ("laplacian", "iqa", 0.21, 0.32),
        ("random_forest", "iqa", 0.90, 0.91),
        ("grpo", "iaa", 0.38, 0.61),
        ("base", "iaa", None, None),
    ]
    m = StageManifest(
        stage="benchmark",
        key="k" * 16,
        code_version="c",
        outputs={},
        row_counts={"predictions": 837},
        metrics={
            "benchmarks": [
                {"benchmark": f"demo-{t}", "task": t, "model": model, "srcc": s, "plcc": p} for model, t, s, p in rows
            ]
        },
    )
    assert headline(m) == "837 predictions; iqa SRCC 0.680 PLCC 0.690; iaa SRCC 0.380 PLCC 0.610"


def test_benchmark_headline_names_a_split_other_than_test():
    from tatar_core.pipeline.describe import headline

    def manifest(split):
        return StageManifest(
            stage="benchmark",
            key="k" * 16,
            code_version="c",
            outputs={},
            row_counts={"predictions": 4},
            config={"benchmark": {"demo_split": split}},
            metrics={"benchmarks": [{"benchmark": "demo-iqa", "task": "iqa", "srcc": 0.5, "plcc": 0.5}]},
        )

    assert headline(manifest("test")) == "4 predictions; iqa SRCC 0.500 PLCC 0.500"
    assert headline(manifest("train_photos")) == "4 predictions; demo train_photos split: iqa SRCC 0.500 PLCC 0.500"
