"""Paths inside the run folder are stored relative to it (data_contracts.paths), so a run folder moved, or mounted at
another path on another node, still works; paths outside it (user datasets) stay absolute."""

from __future__ import annotations

import os

from data_contracts import read_records, write_records
from data_contracts.config import load_config
from data_contracts.config.model import ModelConfig
from data_contracts.config.training import SftConfig
from data_contracts.paths import local_path, stored_path
from data_contracts.records import KeptRecord, SampleRecord
from tatar_core.pipeline.runner import Pipeline
from tatar_core.samples.stage import read_samples
from tatar_core.training.launch import read_spec, spec_path, write_spec


def _sample(path) -> SampleRecord:
    return SampleRecord(
        sample_id="s", image_path=str(path), task="iqa", score=50.0, split="train", source="x", ref_id="r"
    )


def test_stored_and_local_paths(tmp_path, monkeypatch):
    root = tmp_path / "run"
    assert stored_path(root / "samples" / "k" / "images" / "a.png", root) == "samples/k/images/a.png"
    assert stored_path("/data/koniq/1.jpg", root) == "/data/koniq/1.jpg"  # a user dataset: as configured
    assert stored_path(tmp_path / "runs2" / "a.png", root) == str(tmp_path / "runs2" / "a.png")  # a sibling is outside
    monkeypatch.chdir(tmp_path)
    assert stored_path("data/x.png", root) == str(tmp_path / "data" / "x.png")  # relative to cwd -> absolute
    assert stored_path("run/samples/a.png", "run") == "samples/a.png"
    os.symlink(root.parent, tmp_path / "link")
    root.mkdir()
    assert stored_path(tmp_path / "link" / "run" / "a.png", root) == "a.png"  # same file through a symlink
    moved = tmp_path / "moved"
    assert local_path("samples/k/a.png", moved) == str(moved / "samples" / "k" / "a.png")
    assert local_path("/data/koniq/1.jpg", moved) == "/data/koniq/1.jpg"


def test_records_store_run_relative_paths(tmp_path):
    root = tmp_path / "run"
    rows = [_sample(root / "samples" / "k" / "a.png"), _sample("/data/koniq/1.jpg")]
    path = write_records(rows, root / "samples" / "k" / "samples.parquet", SampleRecord, run_root=root)
    assert [r.image_path for r in read_records(path, SampleRecord)] == ["samples/k/a.png", "/data/koniq/1.jpg"]
    (tmp_path / "run").rename(tmp_path / "elsewhere")
    back = read_records(
        tmp_path / "elsewhere" / "samples" / "k" / "samples.parquet", SampleRecord, run_root=tmp_path / "elsewhere"
    )
    assert [r.image_path for r in back] == [
        str(tmp_path / "elsewhere" / "samples" / "k" / "a.png"),
        "/data/koniq/1.jpg",
    ]


def test_a_moved_run_folder_still_works(tmp_path):
    """samples + rationales in one place; the run folder moved; filtered (which checks that every image exists) and
    a launch spec written there and moved again still find every image."""
    small = {
        "samples.demo.max_refs": 3,
        "samples.demo.test_refs": 1,
        "samples.demo.validation_refs": 1,
        "samples.demo.iqa_levels": [3],
        "samples.demo.iqa_types": ["gblur", "awgn"],
    }
    first = Pipeline(load_config("configs/demo.yaml", {**small, "run_dir": str(tmp_path / "a")}), log=lambda _: None)
    first.run_all(["samples", "rationales"])
    (tmp_path / "a").rename(tmp_path / "b")
    pipe = Pipeline(load_config("configs/demo.yaml", {**small, "run_dir": str(tmp_path / "b")}), log=lambda _: None)
    filtered = pipe.run("filtered")
    assert not filtered.cached and filtered.manifest.row_counts["kept"] > 0
    samples = read_samples(pipe.result("samples"))
    assert samples and all(
        s.image_path.startswith(str(tmp_path / "b")) and os.path.isfile(s.image_path) for s in samples
    )

    kept = filtered.records("kept", KeptRecord)
    assert all(os.path.isfile(k.image_path) for k in kept)
    write_spec("sft", pipe.dir("sft"), kept, KeptRecord, pipe.root / "models" / "m", SftConfig(), ModelConfig())
    (tmp_path / "b").rename(tmp_path / "c")
    c = tmp_path / "c"
    spec = read_spec(spec_path(c / pipe.dir("sft").relative_to(tmp_path / "b")))
    assert spec["out_dir"] == c / "sft" / pipe.keys["sft"][:16] and spec["model_path"] == c / "models" / "m"
    assert [r.sample_id for r in spec["records"]] == [k.sample_id for k in kept]
    assert all(r.image_path.startswith(str(c)) and os.path.isfile(r.image_path) for r in spec["records"])
