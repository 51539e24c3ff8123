"""tatar_core.demo.measure: each measurement moves the right way under the distortion it should detect."""

import math
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from data_contracts.config.samples import DemoDataConfig
from tatar_core.demo.data import build_demo_samples
from tatar_core.demo.measure import Measurements, measure_image

# (distortion, field, direction): the field must move strictly monotonically from pristine through levels 1..5
MONOTONE = [
    ("gblur", "sharpness", -1),
    ("jp2k", "sharpness", -1),
    ("awgn", "noise_sigma", +1),
    ("impulse", "impulse_fraction", +1),
    ("jpeg", "blockiness", +1),
    ("pixelate", "flat_fraction", +1),
    ("darken", "brightness", -1),
    ("contrast", "contrast", -1),
    ("desat", "colourfulness", -1),
    ("desat", "saturation", -1),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg = DemoDataConfig(max_refs=3, test_refs=1, validation_refs=1, generated_refs=0)
    recs = build_demo_samples(cfg, tmp_path_factory.mktemp("demo"))
    return {r.sample_id: measure_image(r.image_path) for r in recs}, sorted({r.ref_id for r in recs})


def test_all_fields_finite(demo):
    ms, _ = demo
    for sid, m in ms.items():
        for f in fields(Measurements):
            assert math.isfinite(getattr(m, f.name)), (sid, f.name)


@pytest.mark.parametrize("dist,field,sign", MONOTONE)
def test_measurement_moves_with_level(demo, dist, field, sign):
    ms, refs = demo
    for ref in refs:
        seq = [getattr(ms[f"demo-iqa/{ref}/pristine/0"], field)]
        seq += [getattr(ms[f"demo-iqa/{ref}/{dist}/{lv}"], field) for lv in range(1, 6)]
        assert all(sign * (b - a) > 0 for a, b in zip(seq, seq[1:])), (ref, dist, field, seq)


def test_specific_cues(demo):
    ms, refs = demo
    for ref in refs:
        p = ms[f"demo-iqa/{ref}/pristine/0"]
        assert ms[f"demo-iqa/{ref}/motion/5"].directional_blur > p.directional_blur + 0.2
        assert ms[f"demo-iqa/{ref}/motion/5"].sharpness < p.sharpness
        assert ms[f"demo-iqa/{ref}/desat/5"].colourfulness < 1.0
        assert ms[f"demo-iqa/{ref}/impulse/5"].impulse_fraction == pytest.approx(0.08, abs=0.04)
        assert p.blockiness < 1.2 and ms[f"demo-iqa/{ref}/jpeg/4"].blockiness > 1.5
        o = ms[f"demo-iaa/{ref}/original"]
        assert o.bar_fraction == 0 and ms[f"demo-iaa/{ref}/squash_pad"].bar_fraction == pytest.approx(0.4, abs=0.02)
        assert o.flat_colour_patch < 0.01 < 0.1 < ms[f"demo-iaa/{ref}/blotch"].flat_colour_patch
        assert ms[f"demo-iaa/{ref}/vignette"].vignetting < o.vignetting
        assert ms[f"demo-iaa/{ref}/underexposed"].brightness < o.brightness
        w = ms[f"demo-iaa/{ref}/washed"]
        assert w.contrast < o.contrast and w.colourfulness < o.colourfulness


def _stripes(angle_deg: float, size: int = 160) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    t = np.radians(angle_deg)
    v = np.sin((yy * np.cos(t) - xx * np.sin(t)) / 3.0)  # smooth (anti-aliased) stripes
    a = np.round(128 + 100 * v).astype(np.uint8)
    return Image.fromarray(np.stack([a] * 3, -1))


@pytest.mark.parametrize("angle", [0.0, 6.0, -9.0])
def test_tilt_estimate_follows_line_angle(angle):
    m = measure_image(_stripes(angle))
    assert m.tilt_strength > 0.3
    assert abs(abs(m.tilt_deg) - abs(angle)) <= 1.5


def test_composition_cues_on_synthetic_images():
    rng = np.random.default_rng(0)
    a = np.full((120, 120, 3), 128, np.uint8)
    a[10:40, 10:40] = rng.integers(0, 255, (30, 30, 3))  # texture in the top-left corner
    m = measure_image(Image.fromarray(a))
    assert m.centroid_x < 0.35 and m.centroid_y < 0.35 and m.centroid_offset > 0.5
    half = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)
    sym = measure_image(Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1)))
    assert sym.symmetry > 0.99
    flat = measure_image(Image.new("RGB", (40, 40), (90, 90, 90)))
    assert flat.contrast < 1e-6 and flat.colourfulness < 1e-6 and flat.edge_density == 0 and flat.noise_sigma == 0


def test_accepts_paths(tmp_path):
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    m = measure_image(tmp_path / "n.png")
    assert (m.width, m.height) == (70, 50) and m.noise_sigma > 30
