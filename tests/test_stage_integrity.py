"""Corrupt or missing stage outputs: the manifest records each output file's size and sha256; a finished stage whose
files do not match (sizes when read, hashes with `tatar verify`) or whose manifest does not parse is unfinished, with a
message naming the file; the rerun moves the old parts aside (never deletes them) and rebuilds the same rows."""

from __future__ import annotations

import json

import polars as pl
import pytest
from e2e_support import TINY_SAMPLES  # tests/ is on the path

from data_contracts.config import load_config
from data_contracts.manifest import StageManifest, check_finished, output_files
from tatar_core.cli.main import main as tatar
from tatar_core.pipeline.runner import Pipeline, StageNotReady


@pytest.fixture
def run(tmp_path):
    import yaml

    cfg = load_config("configs/demo.yaml", {**TINY_SAMPLES, "run_dir": str(tmp_path / "run")})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    pipe = Pipeline(cfg, log=lambda _: None)
    first = pipe.run("samples")
    return pipe, path, first, pl.read_parquet(first.path("samples"))


def _stale(pipe):
    return sorted(p for p in (pipe.root / "samples").iterdir() if ".stale-" in p.name)


def test_manifest_records_sizes_and_hashes_of_every_output_file(run, tmp_path):
    pipe, _, first, _ = run
    m = first.manifest
    assert set(m.files) == {"samples.parquet", "skipped.parquet"}
    assert m.files["samples.parquet"].size == first.path("samples").stat().st_size
    # a folder output (e.g. model/) records every file inside it
    (tmp_path / "st" / "model" / "sub").mkdir(parents=True)
    (tmp_path / "st" / "model" / "a.bin").write_bytes(b"abc")
    (tmp_path / "st" / "model" / "sub" / "b.json").write_text("{}")
    files = output_files(tmp_path / "st", {"model": "model"})
    assert set(files) == {"model/a.bin", "model/sub/b.json"} and files["model/a.bin"].size == 3


@pytest.mark.parametrize("fault", ["truncated", "deleted", "manifest"])
def test_a_broken_finished_stage_is_unfinished_and_the_rerun_rebuilds_it(run, fault):
    pipe, _, first, rows = run
    target = first.path("samples") if fault != "manifest" else first.dir / "manifest.json"
    original = target.read_bytes()
    if fault == "deleted":
        target.unlink()
    else:
        target.write_bytes(original[: len(original) // 2])
    m, problem = pipe.check("samples")
    assert m is None and str(target) in problem
    assert {"truncated": "bytes, the manifest recorded", "deleted": "missing", "manifest": "corrupt manifest"}[
        fault
    ] in problem
    assert pipe.status()["samples"].startswith("needs a rerun:")
    with pytest.raises(StageNotReady, match="not finished"):
        pipe.result("samples")

    again = pipe.run("samples")
    assert not again.cached
    assert pl.read_parquet(again.path("samples")).equals(rows)  # the same rows, none lost or doubled
    (stale,) = _stale(pipe)  # the old parts are kept, not deleted
    assert (stale / "manifest.json").exists()
    if fault == "truncated":
        assert (stale / "samples.parquet").read_bytes() == original[: len(original) // 2]
    assert pipe.run("samples").cached


def test_verify_checks_hashes_and_moves_a_mismatch_aside(run, capsys):
    pipe, cfg_path, first, rows = run
    assert tatar(["verify", str(cfg_path)]) == 0
    out = capsys.readouterr().out
    assert "samples     ok: 2 files" in out and "rationales  not finished" in out

    p = first.path("samples")
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content: only the hash sees it
    p.write_bytes(bytes(data))
    assert pipe.check("samples")[0] is not None  # the cheap size check passes
    assert tatar(["verify", str(cfg_path)]) == 1
    out = capsys.readouterr().out
    assert f"samples     mismatch: {p}: content differs from the manifest" in out
    assert pipe.check("samples")[0] is None  # now unfinished
    (stale,) = _stale(pipe)
    assert (stale / "samples.parquet").read_bytes() == bytes(data)
    assert pl.read_parquet(pipe.run("samples").path("samples")).equals(rows)


def test_a_stage_whose_input_was_rebuilt_differently_is_unfinished(run):
    pipe, _, first, _ = run
    d = pipe.dir("rationales")
    d.mkdir(parents=True)
    (d / "rationales.parquet").write_bytes(b"x")
    m = StageManifest(
        stage="rationales",
        key=pipe.keys["rationales"],
        code_version="v",
        outputs={"rationales": "rationales.parquet"},
        files=output_files(d, {"r": "rationales.parquet"}),
        input_digests={"samples": first.manifest.digest()},
    )
    m.write(d)
    assert pipe.check("rationales")[0] is not None  # its input is the one it read
    m.model_copy(update={"input_digests": {"samples": "0" * 64}}).write(d)
    got, problem = pipe.check("rationales")
    assert got is None and "input stage 'samples' was rebuilt" in problem


def test_check_finished_without_manifest_is_just_not_finished(tmp_path):
    assert check_finished(tmp_path) == (None, None)
    (tmp_path / "manifest.json").write_text(json.dumps({"stage": "x"}))
    m, problem = check_finished(tmp_path)
    assert m is None and "corrupt manifest" in problem and "manifest.json" in problem
