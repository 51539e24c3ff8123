"""Configs fail early naming the key; Parquet files are validated naming file, column and row."""

import polars as pl
import pytest

from data_contracts import ConfigError, SchemaError, StageManifest, read_records, write_records
from data_contracts.config import PipelineConfig, load_config
from data_contracts.records import RejectedRecord, SampleRecord

ROW = dict(sample_id="a", image_path="/x.png", task="iqa", score=55.0, split="train", source="demo", ref_id="r1")


def test_shipped_configs_are_valid():
    for name in ("configs/demo.yaml", "configs/paper.yaml"):
        assert isinstance(load_config(name), PipelineConfig)


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("sft:\n  learnin_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sft\.learnin_rate'") as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_wrong_type_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("grpo:\n  num_generations: lots\n")
    with pytest.raises(ConfigError, match=r"key 'grpo\.num_generations'"):
        load_config(p)


def test_unknown_top_level_section(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("trainer: {}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trainer'"):
        load_config(p)


def test_overrides_use_dotted_keys_and_are_validated():
    cfg = load_config("configs/demo.yaml", {"sft.learning_rate": 0.5})
    assert cfg.sft.learning_rate == 0.5
    with pytest.raises(ConfigError, match=r"unknown key 'sft\.nope'"):
        load_config("configs/demo.yaml", {"sft.nope": 1})


def test_the_run_seed_is_every_seeded_sections_default():
    seeds = lambda c: (c.model.seed, c.samples.demo.seed, c.sft.seed, c.grpo.seed, c.benchmark.seed)  # noqa: E731
    assert seeds(load_config("configs/demo.yaml", {"seed": 2})) == (2, 2, 2, 2, 2)
    assert seeds(load_config("configs/demo.yaml", {"seed": 2, "sft.seed": 5})) == (2, 2, 5, 2, 2)
    assert (
        PipelineConfig().sft.seed == PipelineConfig(sft={}).sft.seed
    )  # no top-level seed: the sections' own defaults


def test_grpo_iaa_images_per_step_validated():
    with pytest.raises(ConfigError, match="min_iaa_images_per_step"):
        load_config("configs/demo.yaml", {"grpo.min_iaa_images_per_step": 1})


def test_parquet_roundtrip_and_list_columns(tmp_path):
    path = write_records([SampleRecord(**ROW)], tmp_path / "s.parquet", SampleRecord)
    assert read_records(path, SampleRecord)[0].score == 55.0
    rej = dict(ROW, rationale="r", target="t", teacher="x", n_words=1, reasons=["words: 3 < 20", "aspects: 1/8 < 5"])
    for k in ("split", "source", "ref_id"):
        rej.pop(k)
    path = write_records([rej], tmp_path / "r.parquet", RejectedRecord)
    assert read_records(path, RejectedRecord)[0].reasons == ["words: 3 < 20", "aspects: 1/8 < 5"]


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "samples.parquet"
    pl.DataFrame([{k: v for k, v in ROW.items() if k != "score"}]).write_parquet(path)
    with pytest.raises(SchemaError) as e:
        read_records(path, SampleRecord)
    assert str(path) in str(e.value) and "'score'" in str(e.value)


def test_bad_value_names_row_and_column(tmp_path):
    path = tmp_path / "samples.parquet"
    pl.DataFrame([ROW, dict(ROW, sample_id="b", score=140.0)]).write_parquet(path)
    with pytest.raises(SchemaError, match=r"row 1: column 'score'"):
        read_records(path, SampleRecord)


def test_write_validates(tmp_path):
    with pytest.raises(SchemaError, match=r"row 0: column 'task'"):
        write_records([dict(ROW, task="vqa")], tmp_path / "s.parquet", SampleRecord)
    assert not (tmp_path / "s.parquet").exists()


def test_manifest_roundtrip(tmp_path):
    assert StageManifest.read(tmp_path) is None
    m = StageManifest(stage="sft", key="k" * 64, code_version="c", outputs={"model": "model"}, row_counts={"n": 3})
    m.write(tmp_path)
    back = StageManifest.read(tmp_path)
    assert back.key == m.key and back.output_path(tmp_path, "model") == tmp_path / "model"
