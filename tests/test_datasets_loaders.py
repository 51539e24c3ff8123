"""Dataset loaders on fixture files written here in each native format (csv, xlsx, AVA.txt votes, per-ref txt,
json list, whitespace txt, table CSV/Parquet), with tiny images written by PIL, including bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_contracts.config.samples import DatasetSource
from tatar_core.samples.readers import load_dataset, read_split_file, select_subset
from tatar_core.samples.specs import DATASET_SPECS, KADID_TEST_REFS, SCALE_PIPAL_ELO, DatasetError, declared_scale


def img(path: Path, kind: str = "png", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").save(path, format="JPEG" if kind == "jpg" else kind.upper())
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all" * 10)
    return path


def by_name(samples):
    return {Path(s.image_path).name: s for s in samples}


# --------------------------------------------------------------------------------------------- spec table


def test_spec_table_covers_every_format_and_declares_scales():
    expected = {"koniq", "spaq", "kadid", "pipal", "artimuse10k", "ava", "tad66k", "flickr_aes", "list", "table"}
    assert expected <= set(DATASET_SPECS)
    for name, spec in DATASET_SPECS.items():
        assert spec.test_split and spec.scale_note and spec.format
        if name in ("list", "table"):
            assert spec.scale is None and spec.task is None  # declared by the source
        else:
            assert spec.scale is not None and spec.task in ("iqa", "iaa")
    assert len(KADID_TEST_REFS) == 16
    assert DATASET_SPECS["kadid"].scale.low == 1 and DATASET_SPECS["kadid"].scale.high == 5
    assert DATASET_SPECS["ava"].scale.low == 1 and DATASET_SPECS["ava"].scale.high == 10


def test_declared_scale_is_required_for_list_and_table(tmp_path):
    with pytest.raises(DatasetError, match="scale"):
        declared_scale(DatasetSource(name="list", root=str(tmp_path), task="iqa"))
    s = declared_scale(DatasetSource(name="list", root=str(tmp_path), task="iaa", scale=(0.2, 1.0)))
    assert (s.low, s.high) == (0.2, 1.0)


# --------------------------------------------------------------------------------------------- KADID (csv, 1–5)


def test_kadid_label_1_maps_to_0_and_split_by_reference(tmp_path):
    root = tmp_path / "kadid10k"
    rows = [
        ("I01_01_01.png", "I01.png", "1.0"),
        ("I01_01_02.png", "I01.png", "5.0"),
        ("I01_01_03.png", "I01.png", "3"),
        ("I03_01_01.png", "I03.png", "4.2"),
        ("I03_02_01.png", "I03.png", "1.0"),
        ("I02_01_01.png", "I02.png", "not-a-number"),  # unparsable row
        ("I02_01_02.png", "I02.png", "2.0"),
    ]  # image missing on disk
    (root).mkdir()
    (root / "dmos.csv").write_text("dist_img,ref_img,dmos,var\n" + "\n".join(f"{a},{b},{c},0.1" for a, b, c in rows))
    for a, _, _ in rows[:5]:
        img(root / "images" / a)
    train = load_dataset(DatasetSource(name="kadid", root=str(root), split="train"), progress=False)
    got = by_name(train.samples)
    assert set(got) == {"I01_01_01.png", "I01_01_02.png", "I01_01_03.png"}
    assert got["I01_01_01.png"].score == 0.0  # 1.0 on 1–5 -> 0, not 100
    assert got["I01_01_02.png"].score == 100.0
    assert got["I01_01_03.png"].score == pytest.approx(50.0)
    assert got["I01_01_01.png"].ref_id.endswith("I01") and got["I01_01_01.png"].task == "iqa"
    reasons = {s.item: s.reason for s in train.skipped}
    assert any("dmos.csv:7" in k and "unparsable" in v for k, v in reasons.items())
    assert any(k.endswith("I02_01_02.png") and "not found" in v for k, v in reasons.items())
    test = load_dataset(DatasetSource(name="kadid", root=str(root), split="test"), progress=False)
    assert {s.split for s in test.samples} == {"test"}
    assert set(by_name(test.samples)) == {"I03_01_01.png", "I03_02_01.png"}  # I03 is a TATAR test ref
    assert by_name(test.samples)["I03_02_01.png"].score == 0.0
    both = load_dataset(DatasetSource(name="kadid", root=str(root), split="all"), progress=False)
    assert len(both.samples) == 5
    assert {s.ref_id for s in both.samples if s.split == "test"}.isdisjoint(
        {s.ref_id for s in both.samples if s.split == "train"}
    )
    meta = json.loads(got["I01_01_03.png"].meta)
    assert meta["native"] == 3.0 and meta["scale"][:2] == [1.0, 5.0]


def test_missing_folder_and_label_file_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset folder .*nope not found.*dmos\.csv"):
        load_dataset(DatasetSource(name="kadid", root=str(tmp_path / "nope")))
    (tmp_path / "k").mkdir()
    with pytest.raises(DatasetError, match=r"label file not found.*dmos\.csv"):
        load_dataset(DatasetSource(name="kadid", root=str(tmp_path / "k")))
    (tmp_path / "k" / "dmos.csv").write_text("dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,3,0\n")
    with pytest.raises(DatasetError, match=r"image folder not found.*images"):
        load_dataset(DatasetSource(name="kadid", root=str(tmp_path / "k")))
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset(DatasetSource(name="kadid-x", root=str(tmp_path)))
    with pytest.raises(DatasetError, match="is an iqa dataset"):
        load_dataset(DatasetSource(name="kadid", root=str(tmp_path / "k"), task="iaa"))


def test_corrupt_image_is_skipped_with_reason(tmp_path):
    root = tmp_path / "kadid"
    (root / "images").mkdir(parents=True)
    (root / "dmos.csv").write_text("dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,3,0\nI01_01_02.png,I01.png,2,0\n")
    img(root / "images" / "I01_01_01.png")
    corrupt(root / "images" / "I01_01_02.png")
    res = load_dataset(DatasetSource(name="kadid", root=str(root), split="all"), progress=False)
    assert [Path(s.image_path).name for s in res.samples] == ["I01_01_01.png"]
    assert len(res.skipped) == 1 and "corrupt" in res.skipped[0].reason
    assert res.skipped[0].item.endswith("I01_01_02.png") and res.skipped[0].benchmark == "kadid"


# --------------------------------------------------------------------------------------------- KonIQ (csv)


def test_koniq_official_set_column_and_mos_zscore(tmp_path):
    root = tmp_path / "koniq"
    hdr = "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore,set"
    lines = [
        hdr,
        "a.jpg,0,0,1,2,0,3,3.48,0.5,68.73,training",
        "b.jpg,0,0,1,2,0,3,2.0,0.5,20.5,test",
        "c.jpg,0,0,1,2,0,3,1.0,0.5,4.0,validation",
        "d.jpg,0,0,0,0,0,0,,,,test",
    ]
    root.mkdir()
    (root / "koniq10k_distributions_sets.csv").write_text("\n".join(lines) + "\n")
    for n in "abc":
        img(root / "1024x768" / f"{n}.jpg", "jpg")
    train = load_dataset(DatasetSource(name="koniq", root=str(root)), progress=False)
    assert [(Path(s.image_path).name, s.score) for s in train.samples] == [("a.jpg", 68.73)]
    test = load_dataset(DatasetSource(name="koniq", root=str(root), split="test"), progress=False)
    assert [(Path(s.image_path).name, s.score) for s in test.samples] == [("b.jpg", 20.5)]
    assert any("unparsable" in s.reason for s in test.skipped)
    allr = load_dataset(DatasetSource(name="koniq", root=str(root), split="all"), progress=False)
    assert len(allr.samples) == 3  # validation kept under "all", labelled train
    raw = load_dataset(DatasetSource(name="koniq", root=str(root), split="all", score_column="MOS"), progress=False)
    assert by_name(raw.samples)["c.jpg"].score == 0.0 and by_name(raw.samples)["a.jpg"].score == pytest.approx(62.0)
    with pytest.raises(DatasetError, match="no declared scale"):
        load_dataset(DatasetSource(name="koniq", root=str(root), score_column="SD"))


def test_koniq_without_set_column_needs_split_file(tmp_path):
    root = tmp_path / "koniq"
    root.mkdir()
    (root / "koniq10k_scores_and_distributions.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\na.jpg,0,0,1,2,0,3,3.4,0.5,60\nb.jpg,0,0,1,2,0,3,2,0.5,30\n"
    )
    for n in "ab":
        img(root / "1024x768" / f"{n}.jpg", "jpg")
    with pytest.raises(DatasetError, match="split_file"):
        load_dataset(DatasetSource(name="koniq", root=str(root), split="test"))
    (root / "koniq_test.json").write_text(json.dumps([{"image": "b.jpg", "gt_score": 30.0}]))
    test = load_dataset(
        DatasetSource(name="koniq", root=str(root), split="test", split_file="koniq_test.json"), progress=False
    )
    assert [Path(s.image_path).name for s in test.samples] == ["b.jpg"]
    train = load_dataset(
        DatasetSource(name="koniq", root=str(root), split="train", split_file="koniq_test.json"), progress=False
    )
    assert [Path(s.image_path).name for s in train.samples] == ["a.jpg"]


# --------------------------------------------------------------------------------------------- SPAQ (xlsx)


def test_spaq_xlsx(tmp_path):
    import openpyxl

    root = tmp_path / "spaq"
    (root / "Annotations").mkdir(parents=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"])
    names = [f"{i:05d}.jpg" for i in range(1, 31)]
    for i, n in enumerate(names):
        ws.append([n, 3.0 * i + 2.0, 50, 50, 50, 50, 50])
    ws.append(["00099.jpg", "n/a", 1, 1, 1, 1, 1])
    wb.save(root / "Annotations" / "MOS and Image attribute scores.xlsx")
    for i, n in enumerate(names):
        img(root / "TestImage" / n, "jpg", seed=i)
    train = load_dataset(DatasetSource(name="spaq", root=str(root), split="train"), progress=False)
    test = load_dataset(DatasetSource(name="spaq", root=str(root), split="test"), progress=False)
    assert len(train.samples) + len(test.samples) == 30 and test.samples and train.samples
    assert {s.sample_id for s in train.samples}.isdisjoint({s.sample_id for s in test.samples})
    assert by_name(train.samples + test.samples)["00002.jpg"].score == pytest.approx(5.0)  # 0–100 as is
    assert any("xlsx:32" in s.item and "unparsable" in s.reason for s in train.skipped)
    # deterministic: the same split on a reload
    again = load_dataset(DatasetSource(name="spaq", root=str(root), split="test"), progress=False)
    assert [s.sample_id for s in again.samples] == [s.sample_id for s in test.samples]


# --------------------------------------------------------------------------------------------- PIPAL (per-ref txt)


def test_pipal_per_reference_txt(tmp_path):
    root = tmp_path / "pipal"
    (root / "Train_Label").mkdir(parents=True)
    lo, hi = SCALE_PIPAL_ELO.low, SCALE_PIPAL_ELO.high
    (root / "Train_Label" / "A0001.txt").write_text(f"A0001_00_00.bmp,{lo}\nA0001_00_01.bmp,{hi}\n")
    (root / "Train_Label" / "A0002.txt").write_text(f"A0002_00_00.bmp,{(lo + hi) / 2}\nA0002_00_01.bmp\n")
    img(root / "Distortion_1" / "A0001_00_00.bmp", "bmp")
    img(root / "Distortion_3" / "A0001_00_01.bmp", "bmp")
    img(root / "Distortion_2" / "A0002_00_00.bmp", "bmp")
    res = load_dataset(DatasetSource(name="pipal", root=str(root), split="all"), progress=False)
    got = by_name(res.samples)
    assert got["A0001_00_00.bmp"].score == 0.0 and got["A0001_00_01.bmp"].score == 100.0
    assert got["A0002_00_00.bmp"].score == pytest.approx(50.0)
    assert "Distortion_3" in got["A0001_00_01.bmp"].image_path  # found across the Distortion_* folders
    assert got["A0001_00_00.bmp"].ref_id == "pipal:A0001"
    assert len({s.split for s in res.samples if s.ref_id == "pipal:A0001"}) == 1  # split by reference
    assert any("A0002.txt:2" in s.item for s in res.skipped)
    (root / "test.txt").write_text("A0002_00_00.bmp\n")
    test = load_dataset(
        DatasetSource(name="pipal", root=str(root), split="test", split_file="test.txt"), progress=False
    )
    assert list(by_name(test.samples)) == ["A0002_00_00.bmp"]


# --------------------------------------------------------------------------------------------- ArtiMuse (json list)


def test_artimuse_json_files_are_the_split(tmp_path):
    root = tmp_path / "artimuse"
    (root / "score").mkdir(parents=True)
    (root / "score" / "train.json").write_text(
        json.dumps(
            [
                {
                    "image": "people_1.jpg",
                    "gt_score": 7.5,
                    "aesthetic_attributes": {"composition_structure": "balanced"},
                },
                {"image": "people_2.jpg", "gt_score": "oops"},
            ]
        )
    )
    (root / "score" / "test.json").write_text(json.dumps([{"image": "art_9.jpg", "gt_score": 10.0}]))
    for n in ("people_1.jpg", "people_2.jpg", "art_9.jpg"):
        img(root / "images" / n, "jpg")
    train = load_dataset(DatasetSource(name="artimuse10k", root=str(root)), progress=False)
    assert [(Path(s.image_path).name, s.score, s.task) for s in train.samples] == [("people_1.jpg", 75.0, "iaa")]
    assert json.loads(train.samples[0].attributes) == {"composition_structure": "balanced"}
    assert any("train.json:[1]" in s.item for s in train.skipped)
    test = load_dataset(DatasetSource(name="artimuse10k", root=str(root), split="test"), progress=False)
    assert [(Path(s.image_path).name, s.score, s.split) for s in test.samples] == [("art_9.jpg", 100.0, "test")]
    assert (
        len(load_dataset(DatasetSource(name="artimuse10k", root=str(root), split="all"), progress=False).samples) == 2
    )


# --------------------------------------------------------------------------------------------- AVA (vote counts)


def test_ava_votes_mean_and_generic_test_list(tmp_path):
    root = tmp_path / "ava"
    root.mkdir()
    # index image_id n1..n10 tag1 tag2 challenge
    votes = {"100": [0] * 9 + [4], "200": [4] + [0] * 9, "300": [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]}
    lines = [f"{i + 1} {k} {' '.join(map(str, v))} 0 0 1" for i, (k, v) in enumerate(votes.items())]
    lines.append("4 400 0 0 0 0 0 0 0 0 0 0 0 0 1")  # no votes: unparsable
    lines.append("5 500 1 2 x")
    (root / "AVA.txt").write_text("\n".join(lines) + "\n")
    for k in ("100", "200", "300"):
        img(root / "images" / f"{k}.jpg", "jpg")
    with pytest.raises(DatasetError, match="generic_test.jpgl"):
        load_dataset(DatasetSource(name="ava", root=str(root), split="test"))
    (root / "aesthetics_image_lists").mkdir()
    (root / "aesthetics_image_lists" / "generic_test.jpgl").write_text("300\n")
    train = load_dataset(DatasetSource(name="ava", root=str(root)), progress=False)
    got = by_name(train.samples)
    assert got["100.jpg"].score == 100.0 and got["200.jpg"].score == 0.0  # mean 10 and mean 1 on 1–10
    test = load_dataset(DatasetSource(name="ava", root=str(root), split="test"), progress=False)
    assert by_name(test.samples)["300.jpg"].score == pytest.approx(100 * (5.5 - 1) / 9)
    assert sum("unparsable" in s.reason for s in train.skipped) == 2


# --------------------------------------------------------------------------------------------- TAD66K (csv)


def test_tad66k_csv(tmp_path):
    root = tmp_path / "tad"
    (root / "labels" / "merge").mkdir(parents=True)
    (root / "labels" / "merge" / "train.csv").write_text("image,score\n1.jpg,5.0\n2.jpg,\n")
    (root / "labels" / "merge" / "test.csv").write_text("image,score\n3.jpg,9.28\n")
    for n in "123":
        img(root / "TAD66K" / f"{n}.jpg", "jpg")
    tr = load_dataset(DatasetSource(name="tad66k", root=str(root)), progress=False)
    assert [(Path(s.image_path).name, s.score) for s in tr.samples] == [("1.jpg", 50.0)]
    assert len(tr.skipped) == 1
    te = load_dataset(DatasetSource(name="tad66k", root=str(root), split="test"), progress=False)
    assert te.samples[0].score == pytest.approx(92.8)


# --------------------------------------------------------------------------------------------- Flickr-AES


def test_flickr_aes_txt_and_declared_0_2_to_1_list(tmp_path):
    root = tmp_path / "flickr"
    root.mkdir()
    (root / "FLICKR-AES_image_score.txt").write_text(
        " farm1_a.jpg 1.0\nfarm1_b.jpg   5.0\nfarm1_c.jpg 3.0\nbroken-line\n"
    )
    for n in ("farm1_a.jpg", "farm1_b.jpg", "farm1_c.jpg"):
        img(root / "40K" / n, "jpg")
    with pytest.raises(DatasetError, match="split_file"):
        load_dataset(DatasetSource(name="flickr_aes", root=str(root), split="test"))
    allr = load_dataset(DatasetSource(name="flickr_aes", root=str(root), split="all"), progress=False)
    got = by_name(allr.samples)
    assert got["farm1_a.jpg"].score == 0.0 and got["farm1_b.jpg"].score == 100.0 and got["farm1_c.jpg"].score == 50.0
    assert any("unparsable" in s.reason for s in allr.skipped)
    # TATAR's list stores score/5 (0.2–1.0): declared as such, NOT read as 0–10 (which would give 2..10)
    (root / "FLICKR-AES.json").write_text(
        json.dumps(
            [
                {"image": "farm1_a.jpg", "gt_score": 0.2},
                {"image": "farm1_b.jpg", "gt_score": 1.0},
                {"image": "farm1_c.jpg", "gt_score": 0.6},
            ]
        )
    )
    lst = load_dataset(
        DatasetSource(
            name="list",
            alias="flickr_aes",
            root=str(root),
            label_file="FLICKR-AES.json",
            image_dir="40K",
            task="iaa",
            scale=(0.2, 1.0),
            split="test",
        ),
        progress=False,
    )
    got = by_name(lst.samples)
    assert got["farm1_a.jpg"].score == 0.0 and got["farm1_b.jpg"].score == 100.0
    assert got["farm1_c.jpg"].score == pytest.approx(50.0)
    assert {s.source for s in lst.samples} == {"flickr_aes"} and {s.split for s in lst.samples} == {"test"}
    # the same list used as the split file of the native labels
    test = load_dataset(
        DatasetSource(name="flickr_aes", root=str(root), split="test", split_file="FLICKR-AES.json"), progress=False
    )
    assert len(test.samples) == 3


# --------------------------------------------------------------------------------------------- list / table


def test_list_iqa_label_1_is_bottom_and_string_scores(tmp_path):
    root = tmp_path / "bench"
    for n in ("x.png", "y.png", "z.png"):
        img(root / "imgs" / n)
    (root / "PIPAL.json").write_text(
        json.dumps(
            [
                {"image": "x.png", "gt_score": 1.0},
                {"img_path": "y.png", "gt_score": "4.675"},
                {"image": "z.png"},
                {"image": "missing.png", "gt_score": 2.0},
            ]
        )
    )
    res = load_dataset(
        DatasetSource(
            name="list", root=str(root), label_file="PIPAL.json", image_dir="imgs", task="iqa", scale=(1.0, 5.0)
        ),
        progress=False,
    )
    got = by_name(res.samples)
    assert got["x.png"].score == 0.0  # the reference's gt_to_100 would give 100
    assert got["y.png"].score == pytest.approx(91.875)
    reasons = sorted(s.reason for s in res.skipped)
    assert len(reasons) == 2 and any("unparsable" in r for r in reasons) and any("not found" in r for r in reasons)
    with pytest.raises(DatasetError, match="task"):
        load_dataset(DatasetSource(name="list", root=str(root), label_file="PIPAL.json", scale=(1.0, 5.0)))
    with pytest.raises(DatasetError, match="label file .*nope.json not found"):
        load_dataset(DatasetSource(name="list", root=str(root), label_file="nope.json", task="iqa", scale=(1, 5)))


def test_table_csv_and_parquet_with_split_column_and_direction(tmp_path):
    import polars as pl

    root = tmp_path / "mine"
    for n in ("a.png", "b.png", "c.png"):
        img(root / n)
    (root / "labels.csv").write_text(
        "file,quality,split\na.png,0,train\nb.png,10,test\nc.png,2.5,test\nd.png,x,train\n"
    )
    src = dict(
        name="table",
        root=str(root),
        label_file="labels.csv",
        task="iqa",
        image_column="file",
        score_column="quality",
        scale=(0.0, 10.0),
        higher_is_better=False,
    )
    test = load_dataset(DatasetSource(**src, split="test"), progress=False)
    got = by_name(test.samples)
    assert got["b.png"].score == 0.0 and got["c.png"].score == 75.0  # lower is better: declared direction
    assert set(got) == {"b.png", "c.png"}
    pl.DataFrame({"image": [str(root / "a.png"), "b.png"], "score": [1.0, 3.0]}).write_parquet(root / "t.parquet")
    res = load_dataset(
        DatasetSource(name="table", root=str(root), label_file="t.parquet", task="iaa", scale=(1.0, 3.0)),
        progress=False,
    )
    assert [s.score for s in res.samples] == [0.0, 100.0] and {s.split for s in res.samples} == {"train"}
    with pytest.raises(DatasetError, match="missing column"):
        load_dataset(DatasetSource(name="table", root=str(root), label_file="labels.csv", task="iqa", scale=(0, 10)))


def test_table_type_and_ref_columns_give_groups_and_references(tmp_path):
    """A table's optional 'type' column is each row's group (the report's per-type metrics) and 'ref' its reference
    photo; without them the group is empty and the reference is the image's file stem."""
    from tatar_core.benchmark.run import sample_group

    root = tmp_path / "mine"
    for n in ("a/gblur_1.png", "a/pristine_0.png", "b/gblur_1.png"):
        img(root / n)
    (root / "labels.csv").write_text(
        "image,score,type,ref\na/gblur_1.png,90.25,gblur,a\na/pristine_0.png,95,pristine,a\n"
        "b/gblur_1.png,90.25,gblur,b\n"
    )
    res = load_dataset(
        DatasetSource(name="table", root=str(root), label_file="labels.csv", task="iqa", split="all", scale=(0, 100)),
        progress=False,
    )
    got = {(Path(s.image_path).parent.name, Path(s.image_path).name): s for s in res.samples}
    assert [sample_group(got[k]) for k in sorted(got)] == ["gblur", "pristine", "gblur"]
    assert [got[k].ref_id for k in sorted(got)] == ["table:a", "table:a", "table:b"]
    (root / "plain.csv").write_text("image,score\na/gblur_1.png,90.25\n")
    plain = load_dataset(
        DatasetSource(name="table", root=str(root), label_file="plain.csv", task="iqa", split="all", scale=(0, 100)),
        progress=False,
    ).samples[0]
    assert sample_group(plain) == "" and plain.ref_id == "table:gblur_1"


def test_photo_iqa_set_script_writes_a_table_the_loader_reads(tmp_path):
    """scripts/photo_iqa_set.py: every photo gives the pristine image + 10 types x 5 levels with the demo's labels,
    and the labels.csv it writes loads as a `table` benchmark with one group per type."""
    import importlib.util

    import skimage.data

    from tatar_core.benchmark.run import sample_group
    from tatar_core.demo.data import IQA_DISTORTIONS, LEVELS, iqa_score

    spec = importlib.util.spec_from_file_location(
        "photo_iqa_set", Path(__file__).resolve().parents[1] / "scripts" / "photo_iqa_set.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.coffee()).save(photos / "coffee.png")
    Image.fromarray(skimage.data.rocket()).save(photos / "rocket.jpg")
    assert mod.main([str(photos), "--out", str(tmp_path / "set"), "--sizes", "64x64", "96x48"]) == 0
    per_size = {}
    for tag, size in (("64x64", (64, 64)), ("96x48", (96, 48))):
        res = load_dataset(
            DatasetSource(
                name="table",
                root=str(tmp_path / "set"),
                label_file=f"labels-{tag}.csv",
                task="iqa",
                split="all",
                scale=(0, 100),
            ),
            progress=False,
        )
        assert not res.skipped and len(res.samples) == 2 * (1 + len(IQA_DISTORTIONS) * len(LEVELS))
        assert {sample_group(s) for s in res.samples} == set(IQA_DISTORTIONS) | {"pristine"}
        for s in res.samples:
            t, lv = Path(s.image_path).stem.rsplit("_", 1)
            assert s.score == pytest.approx(iqa_score(t, int(lv)))
            assert s.ref_id == f"table:{Path(s.image_path).parent.name}"
            with Image.open(s.image_path) as im:
                assert im.size == size  # distorted at this size, not resized afterwards
        per_size[tag] = res.samples
    everything = load_dataset(
        DatasetSource(
            name="table", root=str(tmp_path / "set"), label_file="labels.csv", task="iqa", split="all", scale=(0, 100)
        ),
        progress=False,
    )
    assert len(everything.samples) == sum(len(v) for v in per_size.values())
    with pytest.raises(SystemExit):  # a malformed size is a usage error
        mod.main([str(photos), "--out", str(tmp_path / "y"), "--sizes", "64"])
    (tmp_path / "empty").mkdir()
    for bad in ("empty", "missing"):  # a usage error naming the folder, nothing written
        with pytest.raises(SystemExit):
            mod.main([str(tmp_path / bad), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_max_items_is_a_fixed_subset(tmp_path):
    root = tmp_path / "kadid"
    (root / "images").mkdir(parents=True)
    rows = [f"I{r:02d}_01_{k:02d}.png,I{r:02d}.png,{1 + k % 5},0" for r in (1, 2) for k in range(1, 11)]
    (root / "dmos.csv").write_text("dist_img,ref_img,dmos,var\n" + "\n".join(rows) + "\n")
    for line in rows:
        img(root / "images" / line.split(",")[0])
    a = load_dataset(DatasetSource(name="kadid", root=str(root), max_items=5), progress=False)
    b = load_dataset(DatasetSource(name="kadid", root=str(root), max_items=5), progress=False)
    assert len(a.samples) == 5 and [s.sample_id for s in a.samples] == [s.sample_id for s in b.samples]
    assert len({s.ref_id for s in a.samples}) == 2  # spread, not the first five rows
    assert select_subset(["a", "b"], None) == [0, 1]


def test_read_split_file_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"image": "dir/x.jpg"}, "y.jpg"]))
    (tmp_path / "b.txt").write_text("x.jpg 3.2\n\ny.jpg,1\n")
    assert read_split_file(tmp_path / "a.json") == {"x.jpg", "y.jpg"}
    assert read_split_file(tmp_path / "b.txt") == {"x.jpg", "y.jpg"}
    with pytest.raises(DatasetError, match="not found"):
        read_split_file(tmp_path / "none.txt")
