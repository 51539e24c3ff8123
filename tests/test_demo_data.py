"""Demo set generator: determinism, split by photo, labels, subsets."""

import json
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from data_contracts.config.samples import DemoDataConfig
from data_contracts.parquet_io import read_records, write_records
from data_contracts.records import SampleRecord
from tatar_core.demo.data import IAA_MANIPULATIONS, IQA_DISTORTIONS, IQA_MOS_1_5, PHOTOS, build_demo_samples, iqa_score

SMALL = dict(
    image_size=48,
    max_refs=3,
    test_refs=1,
    validation_refs=0,
    generated_refs=0,
    iqa_types=["gblur", "awgn", "jpeg", "jp2k"],
    iqa_levels=[1, 3, 5],
    iaa_manipulations=["original", "blotch", "tilt"],
)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "images").rglob("*.png"))}


def test_same_config_gives_identical_bytes_and_records(tmp_path):
    cfg = DemoDataConfig(**SMALL)
    a = build_demo_samples(cfg, tmp_path / "a")
    b = build_demo_samples(cfg, tmp_path / "b")
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa and fa == fb
    strip = lambda recs, root: [r.model_copy(update={"image_path": r.image_path.replace(str(root), "")}) for r in recs]
    assert strip(a, (tmp_path / "a").resolve()) == strip(b, (tmp_path / "b").resolve())
    # rebuilding in place leaves the same bytes and the same records
    again = build_demo_samples(cfg, tmp_path / "a")
    assert again == a and _files(tmp_path / "a") == fa
    # a different seed changes the noisy images only
    c = build_demo_samples(cfg.model_copy(update={"seed": 1}), tmp_path / "c")
    fc = _files(tmp_path / "c")
    diff = {k for k in fa if fa[k] != fc[k]}
    assert diff and all("/awgn_" in k or "/blotch" in k or "/gen-" in k for k in diff)
    assert [r.score for r in c] == [r.score for r in a]


def test_records_are_valid_absolute_and_round_trip_parquet(tmp_path):
    recs = build_demo_samples(DemoDataConfig(**SMALL), tmp_path / "out")
    ids = [r.sample_id for r in recs]
    assert len(ids) == len(set(ids))
    for r in recs:
        assert r.image_path.startswith(str(tmp_path.resolve()))
        with Image.open(r.image_path) as im:
            assert im.mode == "RGB" and im.size == (48, 48)
        meta = json.loads(r.meta)
        assert meta["kind"] == r.task and meta["ref"] == r.ref_id
        assert r.source == f"demo-{r.task}"
        assert r.sample_id.startswith(f"demo-{r.task}/{r.ref_id}/")
    path = write_records(recs, tmp_path / "samples.parquet", SampleRecord)
    assert read_records(path, SampleRecord) == recs


def test_split_by_photo_never_shares_a_reference(tmp_path):
    recs = build_demo_samples(
        DemoDataConfig(
            image_size=32, iqa_levels=[2], iaa_manipulations=["original"], iqa_types=["gblur"], generated_refs=6
        ),
        tmp_path,
    )
    refs = defaultdict(set)
    for r in recs:
        refs[r.split].add(r.ref_id)
    assert not (refs["train"] & refs["test"]) and not (refs["train"] & refs["validation"])
    assert not (refs["validation"] & refs["test"])
    # the documented rule: the last 3 photos are test, the 3 before them validation, the rest train
    assert refs["test"] == {p.name for p in PHOTOS[-3:]} and refs["validation"] == {p.name for p in PHOTOS[-6:-3]}
    photos = {p.name for p in PHOTOS}
    assert refs["train"] & photos == {p.name for p in PHOTOS[:-6]} == {"astronaut", "coffee", "rocket", "china"}
    generated = refs["train"] - photos
    assert len(generated) == 6 and all(g.startswith("gen-") for g in generated)  # train only, never held out
    assert {g.split("-")[1] for g in generated} == {"deadleaves", "pinknoise", "photocrop"}
    assert all(r.task == "iqa" for r in recs if r.ref_id in generated)


def test_generated_kinds_are_cycled_in_the_configured_order(tmp_path):
    cfg = DemoDataConfig(
        image_size=32,
        iqa_levels=[2],
        iaa_manipulations=[],
        iqa_types=["gblur"],
        generated_refs=5,
        generated_kinds=["pink_noise", "photo_crop"],
    )
    refs = sorted(
        {r.ref_id for r in build_demo_samples(cfg, tmp_path) if r.ref_id.startswith("gen-")}, key=lambda r: r[-3:]
    )
    assert refs == [
        "gen-pinknoise-000",
        "gen-photocrop-001",
        "gen-pinknoise-002",
        "gen-photocrop-003",
        "gen-pinknoise-004",
    ]
    with pytest.raises(ValueError, match="generated_kinds"):
        DemoDataConfig(generated_kinds=["fractal"])
    with pytest.raises(ValueError, match="generated_kinds"):
        DemoDataConfig(generated_kinds=[])


def test_iqa_labels_monotonic_in_level_and_below_pristine():
    for t, mos in IQA_MOS_1_5.items():
        scores = [iqa_score(t, lv) for lv in range(0, 6)]
        assert all(a > b for a, b in zip(scores, scores[1:])), (t, scores)
        assert all(0 <= s <= 100 for s in scores)
    assert iqa_score("gblur", 0) == pytest.approx(95.0)
    assert iqa_score("gblur", 5) == pytest.approx(100 * (1.30 - 1) / 4)
    assert set(IQA_MOS_1_5) == set(IQA_DISTORTIONS)


def test_labels_in_records_follow_levels_and_manipulations(tmp_path):
    recs = build_demo_samples(DemoDataConfig(**SMALL), tmp_path)
    by = defaultdict(dict)
    for r in recs:
        m = json.loads(r.meta)
        if r.task == "iqa":
            by[(r.ref_id, m["type"])][m["level"]] = r.score
    for (ref, t), lv in by.items():
        if t == "pristine":
            continue
        levels = sorted(lv)
        assert [lv[k] for k in levels] == sorted(lv.values(), reverse=True)
    iaa = {(r.ref_id, json.loads(r.meta)["manipulation"]): r.score for r in recs if r.task == "iaa"}
    for (ref, m), s in iaa.items():
        assert s == IAA_MANIPULATIONS[m].score
        if m != "original":
            assert s < iaa[(ref, "original")]


def test_subset_selection_and_counts(tmp_path):
    cfg = DemoDataConfig(**SMALL)
    recs = build_demo_samples(cfg, tmp_path)
    photos = {r.ref_id for r in recs}
    assert photos == {p.name for p in PHOTOS[:3]}
    iqa = [json.loads(r.meta) for r in recs if r.task == "iqa"]
    assert {m["type"] for m in iqa} == set(SMALL["iqa_types"]) | {"pristine"}
    assert {m["level"] for m in iqa} == {0, 1, 3, 5}
    assert {json.loads(r.meta)["manipulation"] for r in recs if r.task == "iaa"} == set(SMALL["iaa_manipulations"])
    per_photo = 1 + len(SMALL["iqa_types"]) * len(SMALL["iqa_levels"]) + len(SMALL["iaa_manipulations"])
    assert len(recs) == 3 * per_photo
    assert sum(r.split == "test" for r in recs) == per_photo
    no_ref = build_demo_samples(
        cfg.model_copy(update={"iqa_reference": False, "iaa_manipulations": []}), tmp_path / "b"
    )
    assert all(r.task == "iqa" and json.loads(r.meta)["level"] > 0 for r in no_ref)


def test_bad_selections_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown iqa_types.*'nope'"):
        build_demo_samples(DemoDataConfig(iqa_types=["gblur", "nope"]), tmp_path)
    with pytest.raises(ValueError, match="iaa_manipulations"):
        build_demo_samples(DemoDataConfig(iaa_manipulations=["crop-ish"]), tmp_path)
    with pytest.raises(ValueError, match="iqa_levels"):
        build_demo_samples(DemoDataConfig(iqa_levels=[0, 6]), tmp_path)
    with pytest.raises(ValueError, match="leave no training photo"):
        build_demo_samples(DemoDataConfig(max_refs=3, test_refs=2), tmp_path)


def test_distortions_change_pixels_more_with_level(tmp_path):
    """Every distortion departs further from the pristine photo as the level rises (mean abs difference)."""
    recs = build_demo_samples(
        DemoDataConfig(
            image_size=64, max_refs=2, test_refs=1, validation_refs=0, generated_refs=3, iaa_manipulations=[]
        ),
        tmp_path,
    )
    px = {r.sample_id: np.asarray(Image.open(r.image_path), dtype=np.float64) for r in recs}
    for ref in {r.ref_id for r in recs}:
        base = px[f"demo-iqa/{ref}/pristine/0"]
        for t in IQA_DISTORTIONS:
            d = [np.abs(px[f"demo-iqa/{ref}/{t}/{lv}"] - base).mean() for lv in range(1, 6)]
            assert d[0] > 0 and d[-1] > d[0], (ref, t, d)


SIZED = dict(
    SMALL,
    iqa_types=["gblur", "jpeg"],
    iqa_levels=[2],
    iaa_manipulations=[],
    generated_refs=4,
    train_long_side=(64, 160),
    train_aspects=[(4, 3), (3, 4)],
    train_photo_views=2,
    eval_sizes=[(64, 64), (96, 72), (72, 96)],
)


def test_sizes_train_references_drawn_and_held_out_photos_at_every_eval_size(tmp_path):
    """Train references at drawn sizes (long side in range, one of the aspects, never upscaled), each held-out photo
    at every eval size, distorted at that size, one benchmark source per size."""
    recs = build_demo_samples(DemoDataConfig(**SIZED), tmp_path)
    by_split = defaultdict(list)
    for r in recs:
        by_split[r.split].append(r)
    for r in by_split["train"]:
        with Image.open(r.image_path) as im:
            w, h = im.size
        assert 56 <= max(w, h) <= 160 and w % 8 == 0 and h % 8 == 0
        assert min(abs(w / h - 4 / 3), abs(w / h - 3 / 4)) < 0.1 and json.loads(r.meta)["size"] == f"{w}x{h}"
    assert len({json.loads(r.meta)["size"] for r in by_split["train"]}) > 2
    test = by_split["test"]
    assert {r.source for r in test} == {"demo-iqa", "demo-iqa-96x72", "demo-iqa-72x96"}
    for r in test:
        with Image.open(r.image_path) as im:
            assert im.size == {"demo-iqa": (64, 64), "demo-iqa-96x72": (96, 72), "demo-iqa-72x96": (72, 96)}[r.source]
    assert len({r.sample_id for r in recs}) == len(recs)
    assert {r.ref_id for r in test} == {"rocket"}  # every size of a photo is that photo: split by photo


def test_worker_processes_write_what_one_process_writes(tmp_path, monkeypatch):
    import tatar_core.demo.data as dd

    cfg = DemoDataConfig(**SIZED)
    one = dd.build_demo_samples(cfg, tmp_path / "one")
    monkeypatch.setattr(dd, "PARALLEL_MIN_IMAGES", 1)
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1})  # two cores even where the machine has one
    many = dd.build_demo_samples(cfg, tmp_path / "many")
    assert _files(tmp_path / "one") == _files(tmp_path / "many")
    strip = lambda recs, root: [r.model_copy(update={"image_path": r.image_path.replace(str(root), "")}) for r in recs]
    assert strip(one, (tmp_path / "one").resolve()) == strip(many, (tmp_path / "many").resolve())
