"""No-reference image measurements that ground the offline teacher's words (numpy / scipy only).

All statistics are computed on the image as given (no resizing), from RGB in [0, 1] and the Rec. 601 luminance
Y = 0.299 R + 0.587 G + 0.114 B. Gradients are Sobel / 8 (so a step of 1 gives 1), the Laplacian is the
4-neighbour one. Units and ranges of every field are listed on `Measurements`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from tatar_core.images import ImageLike, as_rgb

_IMM = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)  # Immerkær noise mask, ‖·‖₂ = 6


@dataclass(frozen=True)
class Measurements:
    width: int
    height: int
    # --- technical -------------------------------------------------------------------------------------
    sharpness: float  # std(Laplacian Y) / (mean |∇Y| + 0.002): fine-detail energy relative to edge energy,
    #                         ≈ 2.3–3.6 for sharp photos, < 1 when blurred; ~contrast-invariant; raised by noise
    laplacian_var: float  # var(Laplacian Y) × 1000 (Y in [0, 1]); raw detail energy, ≥ 0
    noise_sigma: float  # Gaussian noise σ on 0–255: median |Immerkær(Y)| / (0.6745 · 6); ~0.5–3 clean
    impulse_fraction: float  # fraction of pixels that are isolated black/white specks (0–1)
    blockiness: float  # mean |Δ| across 8×8 block boundaries / mean |Δ| inside (≈1 none, >1.3 blocky; ≤ 10)
    flat_fraction: float  # fraction of neighbouring pixel pairs with identical RGB (0–1; pixelation, posterising)
    directional_blur: float  # |log2(mean|∂Y/∂y| / mean|∂Y/∂x|)|: 0 isotropic, >1 smeared along one axis
    # --- exposure, contrast, colour -------------------------------------------------------------------------
    brightness: float  # mean Y (0–1)
    dark_clip: float  # fraction of pixels with Y ≤ 4/255
    bright_clip: float  # fraction of pixels with Y ≥ 251/255
    contrast: float  # RMS contrast = std(Y) (0–0.5)
    colourfulness: float  # Hasler–Süsstrunk M on 0–255 RGB (0 grey; ~15 dull, ~45 moderate, >80 vivid)
    saturation: float  # mean HSV saturation (0–1)
    warmth: float  # mean (R − B) (−1..1): >0 warm, <0 cool
    flat_colour_patch: (
        float  # fraction of pixels equal to their 4 neighbours, strongly saturated (HSV S > 0.7, V > 0.3)
    )
    #                           patches (0–1): a flat blob of loud colour painted over the scene
    # --- composition ---------------------------------------------------------------------------------------
    centroid_x: float  # edge-energy centroid, x in [0, 1] (0.5 = centre)
    centroid_y: float  # edge-energy centroid, y in [0, 1]
    centroid_offset: float  # distance of the centroid from the centre / 0.5 (0 centred .. ~1.4 in a corner)
    thirds_distance: float  # distance of the centroid from the nearest rule-of-thirds point / diagonal (0–0.47)
    tilt_deg: float  # dominant line orientation's deviation from horizontal/vertical in degrees (−45..45)
    tilt_strength: float  # share of gradient energy within ±1.5° of that orientation (0–1; low = no clear lines)
    edge_density: float  # fraction of pixels with |∇Y| > 0.1
    symmetry: float  # correlation of Y with its left-right mirror (−1..1)
    vignetting: float  # mean Y of the outer 12.5 % ring / mean Y of the central half (≈1 flat, <0.6 heavy)
    bar_fraction: float  # share of width or height taken by uniform bars at the borders (0–1)

    def as_dict(self) -> dict:
        return asdict(self)


def _hist_tilt(gx: np.ndarray, gy: np.ndarray, mag: np.ndarray) -> tuple[float, float]:
    """Magnitude-weighted histogram of edge orientations folded to [−45°, 45°): peak and its energy share."""
    w = mag.ravel() ** 2
    keep = w > 1e-6
    if keep.sum() < 16:
        return 0.0, 0.0
    ang = np.degrees(np.arctan2(gy.ravel()[keep], gx.ravel()[keep]))
    folded = (ang + 45.0) % 90.0 - 45.0
    idx = (np.round(folded).astype(np.int64) + 45) % 90  # 1° bins centred on −45 … 44 degrees
    hist = np.bincount(idx, weights=w[keep], minlength=90)
    near = np.roll(hist, 1) + np.roll(hist, -1)
    k = int(np.argmax(hist + 0.5 * near))  # peak of a [½, 1, ½]-smoothed circular histogram
    three = np.array([hist[(k - 1) % 90], hist[k], hist[(k + 1) % 90]])
    offset = float((three * np.array([-1.0, 0.0, 1.0])).sum() / max(three.sum(), 1e-12))  # sub-bin refinement
    angle = (k - 45 + offset + 45.0) % 90.0 - 45.0
    return float(angle), float(three.sum() / max(hist.sum(), 1e-12))


def _bar_run(profile_std: np.ndarray, profile_mean: np.ndarray) -> int:
    """Length of the uniform run from the start of a border profile (std < 1/255, constant colour)."""
    n = 0
    for s, m in zip(profile_std, profile_mean):
        if s > 1.0 / 255 or abs(m - profile_mean[0]) > 2.0 / 255:
            break
        n += 1
    return n


def measure_image(img_or_path: ImageLike) -> Measurements:
    """Measure one image (PIL image or path; see `Measurements` for units). ~5–15 ms at 192 px."""
    img = as_rgb(img_or_path)
    u8 = np.asarray(img)
    h, w = u8.shape[:2]
    c0, c1, c2 = (np.ascontiguousarray(u8[..., k]) for k in range(3))
    R, G, B = (c.astype(np.float32) * np.float32(1 / 255) for c in (c0, c1, c2))
    Y = 0.299 * R + 0.587 * G + 0.114 * B

    # gradients and detail
    gx = ndimage.sobel(Y, axis=1, mode="reflect") / 8.0
    gy = ndimage.sobel(Y, axis=0, mode="reflect") / 8.0
    mag = np.hypot(gx, gy)
    lap = ndimage.laplace(Y, mode="reflect")
    inner = (slice(1, -1), slice(1, -1))
    lap_i, mag_i = lap[inner], mag[inner]
    sharpness = float(lap_i.std() / (mag_i.mean() + 0.002))
    lap_var = float(lap_i.var() * 1000.0)

    # noise (Immerkær mask, robust median version) and impulses
    conv = ndimage.convolve(Y, _IMM, mode="reflect")[inner]
    noise_sigma = float(np.median(np.abs(conv)) / 0.6745 / 6.0 * 255.0)
    # an impulse: a black/white pixel that differs by > 0.25 from each of its 4 neighbours
    mx8, mn8 = np.maximum(np.maximum(c0, c1), c2), np.minimum(np.minimum(c0, c1), c2)
    extreme = (mn8 >= 250) | (mx8 <= 5)
    Yp = np.pad(Y, 1, mode="edge")
    iso = np.ones((h, w), bool)
    for dyo, dxo in ((0, 1), (2, 1), (1, 0), (1, 2)):
        iso &= np.abs(Y - Yp[dyo : dyo + h, dxo : dxo + w]) > 0.25
    impulse_fraction = float((extreme & iso).mean())

    # blockiness on the 8×8 grid (columns and rows)
    dx = np.abs(np.diff(Y, axis=1))
    dy = np.abs(np.diff(Y, axis=0))
    bx = (np.arange(w - 1) % 8) == 7
    by = (np.arange(h - 1) % 8) == 7
    num, den = [], []
    if bx.any() and (~bx).any():
        num.append(dx[:, bx].mean())
        den.append(dx[:, ~bx].mean())
    if by.any() and (~by).any():
        num.append(dy[by, :].mean())
        den.append(dy[~by, :].mean())
    blockiness = float(min(10.0, (np.mean(num) + 1e-4) / (np.mean(den) + 1e-4))) if num else 1.0

    same_x = (c0[:, 1:] == c0[:, :-1]) & (c1[:, 1:] == c1[:, :-1]) & (c2[:, 1:] == c2[:, :-1])
    same_y = (c0[1:, :] == c0[:-1, :]) & (c1[1:, :] == c1[:-1, :]) & (c2[1:, :] == c2[:-1, :])
    flat_fraction = float((same_x.sum() + same_y.sum()) / (same_x.size + same_y.size))
    ax, ay = float(np.abs(gx).mean()), float(np.abs(gy).mean())
    directional_blur = float(abs(np.log2((ay + 1e-4) / (ax + 1e-4))))

    # exposure and colour
    brightness = float(Y.mean())
    dark_clip = float((Y <= 4 / 255).mean())
    bright_clip = float((Y >= 251 / 255).mean())
    contrast = float(Y.std())
    rg = (R - G) * 255.0
    yb = (0.5 * (R + G) - B) * 255.0
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    mx, mn = mx8.astype(np.float32) / 255.0, mn8.astype(np.float32) / 255.0
    warmth = float((R - B).mean())
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    saturation = float(sat.mean())
    # a pixel is "uniform" when it equals its 4 neighbours (borders count as equal)
    uniform = np.ones((h, w), bool)
    uniform[:, 1:] &= same_x
    uniform[:, :-1] &= same_x
    uniform[1:, :] &= same_y
    uniform[:-1, :] &= same_y
    flat_colour_patch = float((uniform & (sat > 0.7) & (mx > 0.3)).mean())

    # composition
    wts = mag_i**2
    tot = float(wts.sum())
    if tot > 1e-9:
        yy, xx = np.mgrid[1 : h - 1, 1 : w - 1]
        cx = float((wts * (xx + 0.5)).sum() / tot / w)
        cy = float((wts * (yy + 0.5)).sum() / tot / h)
    else:
        cx = cy = 0.5
    centroid_offset = float(np.hypot(cx - 0.5, cy - 0.5) / 0.5)
    thirds = [(a, b) for a in (1 / 3, 2 / 3) for b in (1 / 3, 2 / 3)]
    thirds_distance = float(min(np.hypot(cx - a, cy - b) for a, b in thirds) / np.sqrt(2.0))
    tilt_deg, tilt_strength = _hist_tilt(gx[inner], gy[inner], mag_i)
    edge_density = float((mag_i > 0.1).mean())
    Yc = Y - Y.mean()
    den_sym = float(np.sqrt((Yc**2).sum() * (Yc[:, ::-1] ** 2).sum()))
    symmetry = float((Yc * Yc[:, ::-1]).sum() / den_sym) if den_sym > 1e-12 else 1.0
    ring = max(1, int(round(min(h, w) * 0.125)))
    border = np.ones((h, w), bool)
    border[ring : h - ring, ring : w - ring] = False
    ch0, ch1, cw0, cw1 = h // 4, h - h // 4, w // 4, w - w // 4
    centre_mean = float(Y[ch0:ch1, cw0:cw1].mean())
    vignetting = float((Y[border].mean() + 0.02) / (centre_mean + 0.02))

    col_std, col_mean = Y.std(axis=0), Y.mean(axis=0)
    row_std, row_mean = Y.std(axis=1), Y.mean(axis=1)
    lr = _bar_run(col_std, col_mean) + _bar_run(col_std[::-1], col_mean[::-1])
    tb = _bar_run(row_std, row_mean) + _bar_run(row_std[::-1], row_mean[::-1])
    bar_fraction = float(min(1.0, max(lr / w, tb / h)))

    return Measurements(
        width=w,
        height=h,
        sharpness=sharpness,
        laplacian_var=lap_var,
        noise_sigma=noise_sigma,
        impulse_fraction=impulse_fraction,
        blockiness=blockiness,
        flat_fraction=flat_fraction,
        directional_blur=directional_blur,
        brightness=brightness,
        dark_clip=dark_clip,
        bright_clip=bright_clip,
        contrast=contrast,
        colourfulness=colourfulness,
        saturation=saturation,
        warmth=warmth,
        flat_colour_patch=flat_colour_patch,
        centroid_x=cx,
        centroid_y=cy,
        centroid_offset=centroid_offset,
        thirds_distance=thirds_distance,
        tilt_deg=tilt_deg,
        tilt_strength=tilt_strength,
        edge_density=edge_density,
        symmetry=symmetry,
        vignetting=vignetting,
        bar_fraction=bar_fraction,
    )
