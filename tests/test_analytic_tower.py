"""Tests of the analytic vision tower: every feature moves the right way as its targeted distortion gets stronger
(skimage astronaut, centre square, 128 px, through the embedded model's quality-view processor), plus structure.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from tatar_core.demo import tower as at

# feature -> [(distortion, direction)]: direction +1 = rises with the level, -1 = falls.
EXPECT = {
    "L.lap": [("gblur", -1), ("awgn", +1), ("impulse", +1)],
    "G.lap": [("gblur", -1), ("awgn", +1), ("impulse", +1)],
    "L.dxi": [("motion", -1), ("gblur", -1)],
    "G.dxi": [("motion", -1), ("gblur", -1)],
    "G.dyi": [("gblur", -1)],
    "G.mdx": [("motion", -1)],
    "L.aniso": [("motion", -1)],
    "G.aniso": [("motion", -1)],
    "G.aniso_mid": [("motion", -1)],
    "L.sharp": [("gblur", -1), ("jp2k", -1), ("awgn", +1)],
    "G.sharp": [("gblur", -1), ("jp2k", -1), ("awgn", +1)],
    "G.fine_mid": [("gblur", -1), ("awgn", +1)],
    "G.blk_h": [("jpeg", +1)],
    "G.blk_v": [("jpeg", +1)],
    "G.dxb": [("gblur", -1)],
    "L.zint": [("pixelate", +1), ("contrast", +1)],
    "G.zint": [("pixelate", +1), ("contrast", +1), ("awgn", -1)],
    "L.lowac": [("contrast", -1)],
    "G.lowac": [("contrast", -1)],
    "G.logvar": [("contrast", -1)],
    "L.weber": [("contrast", -1)],
    "G.weber_var": [("contrast", -1)],
    "L.sat": [("desat", -1)],
    "G.sat": [("desat", -1)],
    "L.chr": [("desat", -1)],
    "G.chr": [("desat", -1)],
    "L.chr_rel": [("desat", -1)],
    "G.chr_rel": [("desat", -1)],
    "L.logY": [("darken", -1)],
    "G.logY": [("darken", -1)],
    "L.R": [("darken", -1)],
    "L.G": [("darken", -1)],
    "L.B": [("darken", -1)],
    "L.d90": [("darken", +1)],
    "L.d50": [("darken", +1)],
    "G.d50": [("darken", +1)],
    "L.d20": [("darken", +1)],
}
# distortions whose effect on the feature is only strongly ordered (L0 vs L5), not monotone over all levels:
# pixelation at 3 / 6 px is not aligned with the 8-px grid; JPEG's blocks appear at q <= 10.
ORDER_ONLY = {
    ("G.blk_h", "jpeg"),
    ("G.blk_v", "jpeg"),
    ("L.zint", "pixelate"),
    ("G.zint", "pixelate"),
    ("G.zint", "contrast"),
    ("L.zint", "contrast"),
    ("G.zint", "awgn"),
}


@pytest.fixture(scope="module")
def tower():
    # the tiny model's architecture from its config constants (no tokenizer needed: the tower only sees pixels)
    from types import SimpleNamespace

    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from tatar_core.demo.tiny import (
        DEFAULT_MAX_PIXELS,
        DEFAULT_MIN_PIXELS,
        MERGE,
        PATCH,
        TEMPORAL,
        TEXT_CONFIG,
        VISION_CONFIG,
    )

    cfg = Qwen2_5_VLConfig(
        text_config=dict(TEXT_CONFIG, vocab_size=3100),
        vision_config=dict(VISION_CONFIG),
        image_token_id=3000,
        video_token_id=3001,
        vision_start_token_id=3002,
        vision_end_token_id=3003,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    from tatar_core.demo.view import QualityViewImageProcessor

    proc = SimpleNamespace(
        image_processor=QualityViewImageProcessor(
            patch_size=PATCH,
            merge_size=MERGE,
            temporal_patch_size=TEMPORAL,
            size={"shortest_edge": DEFAULT_MIN_PIXELS, "longest_edge": DEFAULT_MAX_PIXELS},
        )
    )
    lm_before = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    at.install_analytic_tower(model, seed=0)
    return model, proc, lm_before


@pytest.fixture(scope="module")
def ladder(tower):
    """{type: feature matrix [6 levels (0 = pristine), n_features]} on the astronaut."""
    import skimage.data

    from tatar_core.demo.data import IQA_DISTORTIONS, _rng

    model, proc, _ = tower
    a = skimage.data.astronaut()
    s = min(a.shape[:2])
    base = Image.fromarray(a[:s, :s]).resize((128, 128), Image.Resampling.LANCZOS)
    imgs, keys = [], []
    for t, d in IQA_DISTORTIONS.items():
        imgs.append(base)
        keys.append(t)
        for lv in range(1, 6):
            imgs.append(d.apply(base, d.params[lv - 1], _rng(0, "astronaut", t, lv)))
            keys.append(t)
    f = at.tower_features(model, proc, imgs)
    return {t: f[[i for i, k in enumerate(keys) if k == t]] for t in IQA_DISTORTIONS}


def test_every_feature_documented():
    assert len(at.FEATURES) == len(at.FEATURE_NAMES) == len(set(at.FEATURE_NAMES))
    for f in at.FEATURES:
        assert f["formula"] and f["units"] and f["targets"]
    assert set(at.ZSTATS) == set(at.FEATURE_NAMES)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_feature_moves_with_its_distortion(ladder, name):
    i = at.FEATURE_NAMES.index(name)
    for t, sign in EXPECT[name]:
        v = sign * ladder[t][:, i]
        assert v[5] - v[0] > 0.3, f"{name} vs {t}: L0 {v[0]:.3f} L5 {v[5]:.3f} (z units, sign {sign})"
        if (name, t) not in ORDER_ONLY:
            rho = spearmanr(np.arange(6), v).statistic
            assert rho >= 0.8, f"{name} vs {t}: Spearman over levels {rho:.2f}: {np.round(v, 2)}"


def test_features_are_zscored_scale(ladder):
    f = np.concatenate(list(ladder.values()))
    assert np.abs(f).max() < 12  # bounded logs and z-scores: no raw magnitudes reach the language model


def test_merger_output_is_features_on_orthonormal_directions(tower):
    model, proc, _ = tower
    img = Image.new("RGB", (128, 128), (90, 140, 60))
    px = proc.image_processor(images=[img], return_tensors="pt")
    with torch.no_grad():
        out = model.model.visual(px["pixel_values"], grid_thw=px["image_grid_thw"]).pooler_output
    z = at.tower_features(model, proc, [img], pool=False)
    assert out.shape == (32, 128) and z.shape == (32, len(at.FEATURE_NAMES))  # 16 quality + 16 global tokens
    # |out|^2 = |z|^2 + CONST_OUT^2 because the directions are orthonormal
    np.testing.assert_allclose(out.double().pow(2).sum(-1).numpy(), (z**2).sum(-1) + at.CONST_OUT**2, rtol=1e-3)


def test_deterministic_per_seed_and_language_model_untouched(tower):
    model, _, lm_before = tower
    w0 = {k: v.clone() for k, v in model.model.visual.state_dict().items()}
    at.install_analytic_tower(model, seed=0)
    assert all(torch.equal(w0[k], v) for k, v in model.model.visual.state_dict().items())
    at.install_analytic_tower(model, seed=1)
    assert not torch.equal(w0["patch_embed.proj.weight"], model.model.visual.patch_embed.proj.weight)
    at.install_analytic_tower(model, seed=0)
    assert all(torch.equal(lm_before[k], v) for k, v in model.model.language_model.state_dict().items())
    assert model.config.vision_config.hidden_size == 64 and model.config.vision_config.depth == 2


@pytest.mark.slow
def test_probe_script_reads_quality_from_the_tower_features(tmp_path):
    """scripts/analytic_tower_stats.py --probe: regressors on the tower's token-mean features rank the held-out
    photos' distortions (demo photos, no generated references), and every type gets a row."""
    import importlib.util
    from pathlib import Path

    from data_contracts.config.samples import DemoDataConfig
    from data_contracts.parquet_io import write_records
    from data_contracts.records import SampleRecord
    from tatar_core.demo.data import IQA_DISTORTIONS, build_demo_samples

    spec = importlib.util.spec_from_file_location(
        "tower_stats", Path(__file__).resolve().parents[1] / "scripts" / "analytic_tower_stats.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    run = tmp_path / "run"
    recs = build_demo_samples(DemoDataConfig(generated_refs=0, iaa_manipulations=[]), run / "samples" / "k")
    path = write_records(recs, run / "samples" / "k" / "samples.parquet", SampleRecord, run_root=run)
    res = mod.probe(path, "test")
    assert res["n"] == (sum(r.split == "train" for r in recs), sum(r.split == "test" for r in recs))
    assert set(res["types"]) == set(IQA_DISTORTIONS)
    # measured: forest 0.687, ridge 0.589, MLP 0.313 (0.78-0.85 with the demo's generated references), MLP on numpy
    # features 0.474, the numpy-feature forest 0.797; a random-init tower gives -0.008
    assert res["overall"]["forest on tower features"] > 0.5, res["overall"]
    assert res["overall"]["mlp on tower features"] > 0.15, res["overall"]
    assert res["overall"]["mlp on numpy features"] > 0.15, res["overall"]
    assert all(len(r["best"]) == 2 for r in res["types"].values())
