"""`tatar inspect`: summaries of the pipeline's Parquet files."""

from __future__ import annotations

import re

import pytest

from data_contracts.parquet_io import write_records
from data_contracts.records import (
    FailedRecord,
    PredictionRecord,
    RationaleRecord,
    RejectedRecord,
    SampleRecord,
)
from tatar_core.cli.inspect_parquet import inspect_parquet, main
from tatar_core.method.prompts import make_target


def _rat(i: int, task: str, n_words: int) -> dict:
    text = " ".join(f"w{j}" for j in range(n_words))
    return dict(
        sample_id=f"{task}-{i}",
        image_path=f"/img/{i}.png",
        task=task,
        score=float(i),
        rationale=text,
        target=make_target(text, float(i)),
        teacher="t",
        n_words=n_words,
    )


def test_rationales_words_and_rows(tmp_path):
    rows = [_rat(i, "iqa", w) for i, w in enumerate([30, 40, 50])] + [
        _rat(i, "iaa", w) for i, w in enumerate([90, 100, 110, 120, 300])
    ]
    p = write_records(rows, tmp_path / "rationales.parquet", RationaleRecord)
    text = inspect_parquet(p, n_rows=2)
    assert "8 rows" in text and "rationale: String" in text
    assert "task=iaa: 5" in text and "task=iqa: 3" in text
    assert re.search(r"iqa: 30 / 35 / 40 / 45 / 50, mean 40\.0 \(n=3\)", text)
    assert re.search(r"iaa: 90 / 100 / 110 / 120 / 300", text)
    assert text.count("  [") == 2 and "…" in text  # two sample rows, long rationale truncated


def test_rejected_reasons_failed_errors_and_other_files(tmp_path):
    rej = [
        dict(_rat(0, "iqa", 5), reasons=["words: iqa 5 < 20", "judge: decision=reject"]),
        dict(_rat(1, "iqa", 5), reasons=["words: iqa 5 < 20"]),
        dict(_rat(2, "iaa", 10), reasons=["aspects: 2/8 < 5", "aspects: 2/8 < 5"]),
    ]
    text = inspect_parquet(write_records(rej, tmp_path / "rejected.parquet", RejectedRecord))
    assert "iqa, words: 2" in text and "iqa, judge: decision: 1" in text and "iaa, aspects: 1" in text

    failed = [
        FailedRecord(sample_id=f"s{i}", task="iqa", teacher="t", error="HTTP 500 boom", attempts=6) for i in range(3)
    ]
    text = inspect_parquet(write_records(failed, tmp_path / "failed.parquet", FailedRecord))
    assert "3 × HTTP 500 boom" in text and "words per rationale" not in text

    preds = [
        PredictionRecord(
            benchmark="koniq",
            sample_id="a",
            image_path="/a",
            task="iqa",
            gt=50,
            pred=None,
            parse="failed",
            completion="<think>a b c</think><answer>1</answer>",
            n_words=4,
        )
    ]
    text = inspect_parquet(write_records(preds, tmp_path / "p.parquet", PredictionRecord))
    assert "benchmark=koniq, task=iqa: 1" in text and "parse=failed: 1" in text

    empty = inspect_parquet(write_records([], tmp_path / "s.parquet", SampleRecord))
    assert "0 rows" in empty


def test_cli(tmp_path, capsys):
    p = write_records([_rat(0, "iqa", 3)], tmp_path / "r.parquet", RationaleRecord)
    assert main([str(p), "-n", "0"]) == 0
    out = capsys.readouterr().out
    assert "1 rows" in out and "first" not in out
    assert main([str(tmp_path / "missing.parquet")]) == 1
    assert "file not found" in capsys.readouterr().err
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert main([str(tmp_path / "bad.parquet")]) == 1
    with pytest.raises(FileNotFoundError):
        inspect_parquet(tmp_path / "nope.parquet")
