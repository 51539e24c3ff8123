"""Datasets as users have them: `tatar run` shows a dataset error as one line (exit 2); `tatar plan` runs the loader's
own spec checks (name, label file, image folder under the root) without reading images; an unparsable label row is
reported once, in the split it belongs to, or as "unknown" (counted in no split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import yaml
from PIL import Image

from data_contracts.config import load_config
from data_contracts.config.samples import DatasetSource
from tatar_core.cli.main import main as tatar
from tatar_core.pipeline.plan import missing_paths
from tatar_core.samples.readers import load_dataset
from tatar_core.samples.specs import KADID_TEST_REFS

TEST_REF = sorted(KADID_TEST_REFS)[0]  # e.g. I03


def _kadid(root: Path) -> Path:
    """A KADID-format folder: 2 train + 2 test images, a bad train row, a bad test row, and a row with no names."""
    rows = (
        [f"I01_01_0{i}.png,I01.png,{2 + i},0" for i in (1, 2)]
        + [f"{TEST_REF}_01_0{i}.png,{TEST_REF}.png,{2 + i},0" for i in (1, 2)]
        + ["I01_02_01.png,I01.png,n/a,0", f"{TEST_REF}_02_01.png,{TEST_REF}.png,,0", ",,,"]
    )
    (root / "images").mkdir(parents=True)
    (root / "dmos.csv").write_text("dist_img,ref_img,dmos,var\n" + "\n".join(rows) + "\n")
    for line in rows[:4]:
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(root / "images" / line.split(",")[0])
    return root


def _config(tmp_path: Path, datasets: list[dict]) -> Path:
    cfg = load_config(
        "configs/demo.yaml",
        {"run_dir": str(tmp_path / "run"), "samples.source": "datasets", "samples.datasets": datasets},
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def test_a_bad_label_row_is_reported_once_in_its_own_split(tmp_path):
    root = _kadid(tmp_path / "kadid")
    train = load_dataset(DatasetSource(name="kadid", root=str(root), split="train"), progress=False)
    test = load_dataset(DatasetSource(name="kadid", root=str(root), split="test"), progress=False)
    rows = lambda res: sorted((s.item, s.split) for s in res.skipped)  # noqa: E731
    assert rows(train) == [("dmos.csv:6", "train"), ("dmos.csv:8", "unknown")]
    assert rows(test) == [("dmos.csv:7", "test"), ("dmos.csv:8", "unknown")]
    assert len(train.samples) == 2 and len(test.samples) == 2

    # one samples stage over both splits: each row once, with its split
    cfg = _config(
        tmp_path,
        [
            {"name": "kadid", "root": str(root), "split": "train"},
            {"name": "kadid", "root": str(root), "split": "test"},
        ],
    )
    assert tatar(["run", str(cfg), "--stage", "samples"]) == 0
    (skipped,) = Path(tmp_path / "run" / "samples").glob("*/skipped.parquet")
    got = pl.read_parquet(skipped).sort("item")
    assert got["item"].to_list() == ["dmos.csv:6", "dmos.csv:7", "dmos.csv:8"]
    assert got["split"].to_list() == ["train", "test", "unknown"]


def test_tatar_run_prints_a_dataset_error_as_one_line_and_exits_2(tmp_path, capsys):
    root = _kadid(tmp_path / "kadid")
    (root / "dmos.csv").unlink()
    cfg = _config(tmp_path, [{"name": "kadid", "root": str(root)}])
    assert tatar(["run", str(cfg), "--stage", "samples"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: kadid: label file not found") and "dmos.csv" in err and "\n" not in err


def test_plan_runs_the_loaders_spec_checks(tmp_path, capsys):
    root = _kadid(tmp_path / "data" / "kadid10k")
    good = {"name": "kadid", "root": str(root)}
    cfg = load_config(_config(tmp_path, [good]))
    assert missing_paths(cfg) == []
    for ds, says in (
        ({**good, "name": "konik"}, "unknown dataset 'konik'"),
        ({**good, "root": str(root.parent)}, "label file not found"),  # one folder too high
        ({**good, "root": str(root / "images")}, "label file not found"),
    ):  # one folder too low
        cfg = _config(tmp_path, [ds])
        problems = missing_paths(load_config(cfg))
        assert len(problems) == 1 and problems[0].startswith("samples.datasets[0]") and says in problems[0], problems
        assert tatar(["plan", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert says in out and "All paths the config names exist" not in out
    (root / "images").rename(root / "pictures")
    problems = missing_paths(load_config(_config(tmp_path, [good])))
    assert len(problems) == 1 and "image folder not found" in problems[0]
