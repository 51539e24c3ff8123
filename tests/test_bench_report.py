"""Benchmark runner (real Scorer on the tiny model, real Parquet) and the report (table, paper column, scatter
PNGs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_contracts.config.samples import DatasetSource
from data_contracts.parquet_io import read_records, write_records
from data_contracts.records import MetricRecord, PredictionRecord, SkippedRecord
from tatar_core.benchmark.metrics import compute_metrics
from tatar_core.benchmark.report import format_table, paper_means, paper_row, write_report
from tatar_core.benchmark.run import load_benchmark, run_benchmark, score_benchmark, summarize
from tatar_core.samples.specs import DATASET_SPECS


def _kadid(root: Path, n_refs=(3, 12), per_ref=4) -> Path:
    (root / "images").mkdir(parents=True)
    lines = ["dist_img,ref_img,dmos,var"]
    rng = np.random.default_rng(0)
    for r in n_refs:
        for k in range(1, per_ref + 1):
            name = f"I{r:02d}_01_{k:02d}.png"
            lines.append(f"{name},I{r:02d}.png,{1 + k % 5},0.1")
            arr = rng.integers(0, 255, (20 + 4 * k, 24, 3), dtype=np.uint8)
            Image.fromarray(arr, "RGB").save(root / "images" / name)
    lines.append("I03_09_09.png,I03.png,3.0,0.1")  # image missing
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")
    return root


def test_run_benchmark_with_real_scorer_and_parquet(tiny_model_dir, tmp_path):
    from tatar_core.scoring.scorer import Scorer

    root = _kadid(tmp_path / "kadid")
    name, task, samples, skipped = load_benchmark(DatasetSource(name="kadid", root=str(root)), progress=False)
    assert (name, task) == ("kadid", "iqa") and len(samples) == 8 and {s.split for s in samples} == {"test"}
    assert len(skipped) == 1
    Path(samples[0].image_path).write_bytes(b"broken after load")  # fails only when decoded for scoring
    scorer = Scorer(tiny_model_dir, batch_size=4, max_new_tokens=6)
    out = run_benchmark(name, task, samples, scorer, skipped=skipped, bootstrap=50, seed=0, progress=False)
    assert len(out.predictions) == 7 and len(out.skipped) == 2
    assert any("corrupt" in s.reason or "recognised" in s.reason for s in out.skipped)
    assert out.metrics.n == 7 and out.metrics.n_skipped == 2 and out.metrics.benchmark == "kadid"
    by_id = {s.sample_id: s for s in samples}
    for p in out.predictions:
        assert p.gt == by_id[p.sample_id].score and p.task == "iqa" and p.benchmark == "kadid"
        assert (p.pred is None) == (p.parse == "failed")
    # real Parquet round trip of what the flow writes
    write_records(out.predictions, tmp_path / "predictions.parquet", PredictionRecord)
    write_records([out.metrics], tmp_path / "metrics.parquet", MetricRecord)
    write_records(out.skipped, tmp_path / "skipped.parquet", SkippedRecord)
    assert len(read_records(tmp_path / "predictions.parquet", PredictionRecord)) == 7
    # max_items: a fixed subset; a wrong task is an error
    sub = score_benchmark(name, task, samples[1:], scorer, max_items=3, progress=False)
    assert len(sub) == 3
    with pytest.raises(ValueError, match="not 'iaa'"):
        score_benchmark(name, "iaa", samples[1:], scorer, progress=False)


def _preds(benchmark: str, task: str, n: int, noise: float, seed: int, fail_every: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gt = float(rng.uniform(0, 100))
        failed = fail_every and i % fail_every == 0
        out.append(
            PredictionRecord(
                benchmark=benchmark,
                sample_id=f"{benchmark}:{i}",
                image_path=f"/img/{i}.png",
                task=task,
                gt=gt,
                pred=None if failed else float(np.clip(gt + rng.normal(0, noise), 0, 100)),
                parse="failed" if failed else ("lenient" if i % 9 == 1 else "strict"),
                completion="<think>x</think><answer>1</answer>",
                n_words=5 + i % 4,
            )
        )
    return out


def test_report_table_paper_column_means_and_scatter(tmp_path):
    preds = (
        _preds("kadid", "iqa", 60, 10, 0, fail_every=12)
        + _preds("demo-iqa", "iqa", 40, 20, 1)
        + _preds("FLICKR-AES", "iaa", 50, 30, 2)
        + _preds("tiny", "iaa", 2, 5, 3)
    )
    metrics = []
    for b, t in (("kadid", "iqa"), ("demo-iqa", "iqa"), ("FLICKR-AES", "iaa"), ("tiny", "iaa")):
        metrics.append(compute_metrics(b, t, [p for p in preds if p.benchmark == b], n_skipped=1, bootstrap=100))
    report = write_report(metrics, preds, tmp_path / "rep")
    text = report.read_text()
    assert report.name == "report.md"
    results = text.split("## Results")[1].split("##")[0]
    answers = text.split("## Answers")[1].split("##")[0]
    kadid_line = next(line for line in results.splitlines() if line.startswith("| kadid |"))
    m = metrics[0]
    assert f"{m.srcc:.3f} [{m.srcc_lo:.3f}, {m.srcc_hi:.3f}]" in kadid_line
    assert "0.731" in kadid_line and "0.727" in kadid_line
    assert f"{m.n_valid}/{m.n}" in kadid_line
    kadid_answers = next(line for line in answers.splitlines() if line.startswith("| kadid |"))
    assert f"{m.plcc_logistic:.3f}" in kadid_answers and f"| {m.n} | {m.n_skipped} |" in kadid_answers
    demo_line = next(line for line in results.splitlines() if line.startswith("| demo-iqa |"))
    assert demo_line.rstrip().endswith("|  |  |")  # no paper numbers for the demo set
    assert max(line.count("|") for line in text.splitlines()) <= 9  # narrow tables: at most 8 columns
    flickr_line = next(line for line in results.splitlines() if line.startswith("| FLICKR-AES |"))
    assert "0.604" in flickr_line and "0.633" in flickr_line
    assert "## Mean per task" in text and "Table 1" in text
    s = summarize(metrics)
    assert s["iqa"]["n_benchmarks"] == 2 and s["iqa"]["srcc"] == pytest.approx((metrics[0].srcc + metrics[1].srcc) / 2)
    assert math.isnan(metrics[3].srcc) and s["iaa"]["srcc"] == pytest.approx(metrics[2].srcc)  # NaN ignored
    assert f"{s['iqa']['srcc']:.3f}" in text
    for b in ("kadid", "demo-iqa", "FLICKR-AES", "tiny"):
        png = tmp_path / "rep" / f"scatter_{b}.png"
        assert f"(scatter_{b}.png)" in text
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width > 100
    table = format_table(metrics)
    assert table.splitlines()[0].startswith("benchmark") and "mean IQA" in table and "mean IAA" in table
    assert "0.731" in table and f"{m.srcc:.3f}" in table


def test_paper_table_is_the_one_place():
    assert paper_row("KonIQ-10k") == DATASET_SPECS["koniq"].paper and paper_row("koniq").srcc == 0.941
    assert paper_row("flickr-aes") is DATASET_SPECS["flickr_aes"].paper and paper_row("artimuse").plcc == 0.595
    assert paper_row("demo-iqa") is None
    means = paper_means()
    assert means["iqa"]["srcc"] == pytest.approx(0.7675) and means["iaa"]["plcc"] == pytest.approx(0.52525)


def test_benchmarks_from_samples_groups_test_split_by_source(tmp_path):
    from data_contracts.records import SampleRecord
    from tatar_core.benchmark.run import benchmarks_from_samples

    rows = [
        SampleRecord(
            sample_id=f"{src}/{i}",
            image_path=f"/x/{src}{i}.png",
            task=task,
            score=10.0 * i,
            split=split,
            source=src,
            ref_id=f"r{i}",
        )
        for i, (src, task, split) in enumerate(
            [
                ("demo-iqa", "iqa", "test"),
                ("demo-iqa", "iqa", "train"),
                ("demo-iaa", "iaa", "test"),
                ("demo-iqa", "iqa", "test"),
            ]
        )
    ]
    groups = benchmarks_from_samples(rows)
    assert [(n, t, [s.sample_id for s in ss]) for n, t, ss in groups] == [
        ("demo-iaa", "iaa", ["demo-iaa/2"]),
        ("demo-iqa", "iqa", ["demo-iqa/0", "demo-iqa/3"]),
    ]
    photo = dict(image_path="/x/p.png", task="iqa", score=50.0, split="train", source="demo-iqa")
    rows += [
        SampleRecord(sample_id="photo", ref_id="china", meta='{"type": "gblur"}', **photo),
        SampleRecord(sample_id="gen", ref_id="gen-deadleaves-000", meta='{"generated": "deadleaves"}', **photo),
    ]
    in_sample = benchmarks_from_samples(rows, "train_photos")  # the train photos' own rows, generated refs left out
    assert [(n, [s.sample_id for s in ss]) for n, _, ss in in_sample] == [
        ("demo-iqa-train-photos", ["demo-iqa/1", "photo"])
    ]
    root = _kadid(tmp_path / "k")
    name, task, samples, _ = load_benchmark(
        DatasetSource(name="kadid", root=str(root), split="train", alias="kd"), progress=False
    )
    assert name == "kd" and samples == []  # refs 3 and 12 are both TATAR test refs: an explicit split is kept


def test_report_says_in_sample_for_the_train_photos(tmp_path):
    from tatar_core.benchmark.report import format_table, write_report

    def metrics(bench):
        return [
            MetricRecord(benchmark=bench, task="iqa", n=4, n_valid=4, n_skipped=0, srcc=0.5, plcc=0.5, model=m)
            for m in ("grpo", "sft")
        ]

    assert "Held-out, every model" in format_table(metrics("demo-iqa"))
    assert "In-sample, every model" in format_table(metrics("demo-iqa-train-photos"))
    text = write_report(metrics("demo-iqa-train-photos"), [], tmp_path).read_text()
    assert "## Does it learn? In-sample images" in text and "Held-out" not in text


def test_report_puts_the_papers_table_beside_ours(tmp_path):
    from tatar_core.benchmark.report import write_report

    m = MetricRecord(benchmark="KonIQ-10k", task="iqa", n=10, n_valid=10, n_skipped=0, srcc=0.5, plcc=0.25)
    text = write_report([m], [], tmp_path).read_text()
    section = text.split("## The paper's Table 1 beside ours")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "benchmark" not in line]
    assert len(rows) == sum(s.paper is not None for s in DATASET_SPECS.values()) == 8
    koniq = next(r for r in rows if r.startswith("| koniq "))
    assert "0.941" in koniq and "0.942" in koniq and "0.500" in koniq and "0.250" in koniq
    assert all("not run" in r for r in rows if not r.startswith("| koniq "))


def test_report_html_is_one_page_with_every_picture_embedded(tmp_path):
    import base64
    import re

    from tatar_core.training.curves import sft_curves

    history = [{"step": s, "loss": 3.0 / s, "mean_token_accuracy": 0.5 + 0.04 * s} for s in range(1, 11)]
    curves = sft_curves(history, tmp_path / "sft" / "k1")  # another stage's folder, as in a run
    assert [p.name for p in curves] == ["loss.png", "token_accuracy.png"]
    preds = _preds("kadid", "iqa", 30, 10, 0)
    metrics = [compute_metrics("kadid", "iqa", preds, bootstrap=20)]
    out = tmp_path / "benchmark" / "k2"
    md = write_report(metrics, preds, out, curves=[("SFT (sft/k1)", curves)]).read_text()
    assert "(../../sft/k1/curves/loss.png)" in md and "### SFT (sft/k1)" in md
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "file://" not in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert embedded == [(out / "scatter_kadid.png").read_bytes(), curves[0].read_bytes(), curves[1].read_bytes()]
    assert page.count("<table>") == 4 and "Table 1 beside ours" in page
    row = re.search(r"<tr>\s*<td>kadid</td>.*?</tr>", page, re.S).group(0)
    assert "0.731" in row and f"{metrics[0].srcc:.3f}" in row  # the paper's number beside ours


def test_report_has_a_per_size_table_for_a_family_of_sized_sets(tmp_path):
    """Benchmarks `<base>` and `<base>-WxH` form one table, ordered by pixel count, labelled with each set's size
    and orientation, with every model and baseline and the final model's gap to the forest."""
    from tatar_core.benchmark.report import size_section

    sizes = {"set": (128, 128), "set-512x384": (512, 384), "set-96x128": (96, 128), "other": (64, 64)}
    metrics, preds = [], []
    for bench, (w, h) in sizes.items():
        path = tmp_path / f"{bench}.png"
        Image.new("RGB", (w, h)).save(path)
        preds.append(
            PredictionRecord(
                benchmark=bench,
                sample_id=f"{bench}/0",
                image_path=str(path),
                task="iqa",
                gt=50.0,
                pred=50.0,
                parse="strict",
                completion="",
                n_words=0,
                model="grpo",
            )
        )
        for model, srcc in (("grpo", 0.8), ("random_forest", 0.75), ("laplacian", 0.2)):
            metrics.append(
                MetricRecord(
                    benchmark=bench, task="iqa", n=4, n_valid=4, n_skipped=0, srcc=srcc, plcc=0.5, model=model
                )
            )
    lines = size_section(metrics, preds)
    text = "\n".join(lines)
    assert "### set" in text and "### other" not in text  # a lone set is no family
    rows = [line for line in lines if line.startswith("| set")]
    assert [r.split(" | ")[1] for r in rows] == ["96x128 portrait", "128x128 square", "512x384 landscape"]
    assert all(r.rstrip(" |").endswith("0.050") for r in rows)
    report = write_report(metrics, preds, tmp_path / "report")
    assert "## Per image size" in report.read_text()
