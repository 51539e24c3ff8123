"""The embedded model's quality view (tatar_core.demo.view): native-resolution fragments beside a global view, and
the hand-set tower keeping the two apart."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tatar_core.demo import tower as at
from tatar_core.demo.view import PATCH, QualityViewImageProcessor, canvas, fragment_origins, global_size

CLIP_MEAN, CLIP_STD = np.array(at.CLIP_MEAN), np.array(at.CLIP_STD)
KW = dict(patch_size=14, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 784, "longest_edge": 12544})


def _noisy(width=512, height=384, sigma=10.0, seed=0) -> Image.Image:
    """A smooth luminance ramp plus Gaussian noise of `sigma` (0–255 units)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 60 + 120 * (xx / width) + 40 * np.sin(yy / 40.0)
    img = base[..., None] + rng.normal(0, sigma, (height, width, 3))
    return Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8))


def _patches_0_255(pixel_values: np.ndarray) -> np.ndarray:
    """(n, 3, 14, 14) patches on 0..255 from the processor's rows (first temporal copy)."""
    x = np.asarray(pixel_values).reshape(-1, 3, 2, PATCH, PATCH)[:, :, 0]
    return (x * CLIP_STD[None, :, None, None] + CLIP_MEAN[None, :, None, None]) * 255.0


def _noise_sigma(patches: np.ndarray) -> float:
    """Noise level from horizontal neighbour differences inside patches: std(dY) / sqrt(2), robust (MAD)."""
    y = np.einsum("nchw,c->nhw", patches, np.array([0.299, 0.587, 0.114]))
    d = np.diff(y, axis=-1).ravel()
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def test_quality_view_keeps_native_noise_and_downscaling_loses_it():
    img = _noisy(sigma=10.0)
    luma_sigma = 10.0 * np.sqrt(0.299**2 + 0.587**2 + 0.114**2)  # independent noise per channel
    view = QualityViewImageProcessor(**KW)(images=[img], return_tensors="np")
    grid = view["image_grid_thw"][0]
    n_quality = 64  # 112 x 112 px = 8 x 8 patches
    assert grid.prod() == 2 * n_quality
    rows = view["pixel_values"]
    # the quality view's rows: patches whose marker is 0 (first and second temporal copies equal)
    x = np.asarray(rows).reshape(-1, 3, 2, PATCH * PATCH)
    is_quality = np.isclose(x[:, :, 0], x[:, :, 1]).all(axis=(1, 2))
    assert is_quality.sum() == n_quality
    quality = _patches_0_255(rows[is_quality])
    assert abs(_noise_sigma(quality) - luma_sigma) < 0.15 * luma_sigma
    # a downscale-only view (Qwen's own processor at the same pixel budget) averages the noise away
    down = Qwen2VLImageProcessorPil(**KW)(images=[img], return_tensors="np")
    assert _noise_sigma(_patches_0_255(down["pixel_values"])) < 0.35 * luma_sigma


def test_fragments_sit_on_the_8_px_grid_inside_the_image():
    for length in (14, 20, 96, 128, 384, 511, 4000):
        xs = fragment_origins(length, 8)
        assert all(x % 8 == 0 and 0 <= x <= length - PATCH for x in xs), (length, xs)
        assert xs == sorted(xs)
    assert fragment_origins(512, 8) == [24, 88, 152, 216, 280, 344, 408, 472]


@pytest.mark.parametrize("size", [(512, 384), (384, 512), (128, 128), (1920, 1080), (5, 300)])
def test_canvas_layout(size):
    """Every shape gives the same canvas: the quality view on top, the global view centred below."""
    w, h = size
    shape = (224, 112)
    out, is_global = canvas(np.zeros((h, w, 3), np.uint8), 112)
    assert out.shape[:2] == shape and is_global[8:].all() and not is_global[:8].any()
    assert is_global.shape == (shape[0] // PATCH, shape[1] // PATCH)
    assert (~is_global).sum() == 64
    proc = QualityViewImageProcessor(**KW)
    assert proc.get_number_of_image_patches(h, w) == out.shape[0] * out.shape[1] // PATCH**2
    gh, gw = global_size(max(h, PATCH), max(w, PATCH), 112)
    assert gh % 28 == 0 and gw % 28 == 0 and max(gh, gw) == 112


@pytest.fixture(scope="module")
def tower():
    from types import SimpleNamespace

    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from tatar_core.demo.tiny import TEXT_CONFIG, VISION_CONFIG

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
    at.install_analytic_tower(model, seed=0)
    return model, SimpleNamespace(image_processor=QualityViewImageProcessor(**KW))


def test_tower_marks_the_views_and_its_image_means_ignore_the_global_view(tower):
    """The view feature is 1 on global tokens and 0 on quality tokens; the "G." features are means over the quality
    view only: a canvas whose global view shows another image gives the same G. features."""
    model, proc = tower
    img = _noisy(sigma=10.0)
    names = list(at.FEATURE_NAMES)
    z = at.tower_features(model, proc, [img], pool=False)
    view = z[:, names.index("L.view")] * at.ZSTATS["L.view"][1] + at.ZSTATS["L.view"][0]
    assert np.allclose(view, [0] * 16 + [1] * 16, atol=1e-3)

    class SwappedGlobal(QualityViewImageProcessor):
        """Canvas of `img`'s quality view with the global view of a dark, flat image."""

        def _preprocess(self, images, *a, **k):
            out = super()._preprocess(images, *a, **k)
            other = super()._preprocess([np.full_like(images[0], 20)], *a, **k)
            rows = np.asarray(out["pixel_values"]).reshape(-1, 3, 2, PATCH * PATCH)
            glob = ~np.isclose(rows[:, :, 0], rows[:, :, 1]).all(axis=(1, 2))
            out["pixel_values"][glob] = other["pixel_values"][glob]
            return out

    from types import SimpleNamespace

    z2 = at.tower_features(model, SimpleNamespace(image_processor=SwappedGlobal(**KW)), [img], pool=False)
    g = [i for i, n in enumerate(names) if n.startswith("G.")]
    assert np.allclose(z[:, g], z2[:, g], atol=1e-3)
    logy = names.index("L.logY")
    changed = np.abs(z[view > 0.5, logy] - z2[view > 0.5, logy]) > 0.5
    assert changed.sum() == 12  # the global tokens showing the image did change (112 x 84 px: 4 x 3 tokens)
    assert np.allclose(z[view < 0.5], z2[view < 0.5], atol=1e-3)  # the quality tokens did not
