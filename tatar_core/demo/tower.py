"""A hand-set ("analytic") vision tower for the tiny Qwen2.5-VL model: IQA features computed by fixed weights.

`install_analytic_tower(model, seed)` overwrites the weights of `model.model.visual`
(`Qwen2_5_VisionTransformerPretrainedModel`; transformers 5.x keeps it at `model.model.visual`) of a freshly built
tiny model (vision depth 2, hidden 64, MLP 128, 4 heads, patch 14, temporal patch 2, merge 2, out 128, SiLU), so
that every merged visual token carries the named, z-scored image-quality features of `FEATURES`, written along
random orthonormal directions of the 128-d output (plus one constant direction). The architecture and config are
unchanged; the language model is not touched. Same seed -> identical weights.

What the transformers modules compute, and how each is used (all verified against modeling_qwen2_5_vl.py):

  pixel_values  one row per 14x14 patch, laid out (C, T, P, P) = (3, 2, 14, 14), T = 2 identical copies of the
                frame; rows ordered so that every 4 consecutive rows are a 2x2 merge group (TL, TR, BL, BR).
                Values x_c = (v_c/255 - CLIP_MEAN_c) / CLIP_STD_c, v_c in 0..255 (PIL bicubic resize, uint8).
  patch_embed   Conv3d(3 -> 64, kernel = stride = (2, 14, 14), no bias): 63 linear features of the patch
                (weights split half/half over the two temporal copies), dim 63 left 0.
  block 0       h += attn(norm1 h): qkv and proj weights 0, so the attention adds proj.bias to every token:
                the affine offsets of the linear features and a constant BIG = 1e5 in dim 63. Every later
                RMSNorm then divides by ~BIG/8 whatever the features are; its weights (BIG/8) undo that, so the
                norms are fixed unit scalings and magnitudes survive.
                h += mlp(norm2 h), SiLU-gated MLP: silu(g)*u. Exact identities used:
                  silu(a)*X - silu(-a)*X = a*X                    (squares a^2, products)
                  silu(k x)/k ~ relu(x)                            (ramps, clipped ramps, triangles)
                  (silu(k x) + silu(-k x))/k = x tanh(k x/2) ~ |x| (absolute values)
  block 1       attention with logits q.k / 4 = -GATE * view_k (q a constant on head 0's lowest-frequency rotary
                pair, k the view dim there, so the 2-D rope rotates them by < 0.02 rad): uniform weights over the
                quality-view patches of the image, none on the global view (block 1 is a full-attention block), so
                it adds native-resolution image-level means of chosen per-patch quantities to every token
                ("G." features).
                MLP: 2 units turn the global mean of Y^2 into the variance of patch-mean luminance.
  merger        ln_q (RMSNorm, weight BIG/8) -> Linear(256, 256) -> GELU -> Linear(256, 128). Input = the 4 tokens
                of a 2x2 group concatenated (TL, TR, BL, BR). L1 forms 2x2 means of the per-patch quantities,
                passes linear ones through GELU's linear range (GELU(x + 8) - 8) and builds bounded natural logs as
                piecewise-linear sums of GELU ramps at 9 geometric knots (range fixed in LOG_RANGES). L2 writes
                each feature as z = (f - mean) / std (ZSTATS, measured once on unlabelled generated images)
                along its own random orthonormal direction, plus the constant CONST_OUT on one more direction.

Per-patch quantities (Y = 0.299 R + 0.587 G + 0.114 B on 0..255):
  energies E = mean over m random orthonormal projections w_k of (w_k . r / s)^2, where r is the vector of a
  filter's responses inside the patch (E[E] = mean(r^2)/s^2): lap (4-neighbour Laplacian, s 20), dxi / dyi
  (horizontal / vertical neighbour differences off the 8-px grid, s 10), dxb / dyb (differences across the 7-px
  grid line between local columns / rows 7 and 8, s 10), mdx / mdy (differences of 3x3 box means 2 px apart,
  s 6), lowac (Gaussian sigma 2 smoothed Y minus the patch mean, s 8), chr (per-pixel R - G and (R + G)/2 - B, s 30).
  The 8-px grid: the processor (`tatar_core.demo.view`) cuts each quality-view patch at native resolution with its
  origin on a multiple of 8 px, so JPEG's 8-px block borders (and 8-px pixelation) fall between local pixels 7|8.
  view: 1 on the global view's patches (the processor's marker: +delta / -delta on the two temporal copies), 0 on
  the quality view's; block 1 averages the "G." features over quality-view patches only, and the merger writes the
  view as a feature, so the language model can tell the two token kinds apart.
  zint / zbnd: mean over 4 single neighbour differences d of max(0, 1 - |d|) (near-equal pixels), off / on the grid.
  sat = max(R, G, B) - min(R, G, B) of the patch-mean colour (/255); dark fractions d20/d50/d90 = clip ramps
  1 for mean Y <= t - 10, 0 for >= t (t = 20, 50, 90), bri = same for mean Y >= 230.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from tatar_core.demo.view import MARKER

PATCH, TEMPORAL, MERGE, HIDDEN, INTER, OUT = 14, 2, 2, 64, 128, 128
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # Qwen2-VL image processor image_mean (OPENAI_CLIP_MEAN)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # image_std (OPENAI_CLIP_STD)
LUMA = (0.299, 0.587, 0.114)
BIG = 1.0e5  # constant in residual dim 63: makes every RMSNorm a fixed scaling
NORM_W = BIG / 8.0  # RMSNorm weight that undoes it: rms(h) = sqrt(BIG^2 / 64) = BIG / 8
LIN_SHIFT = 8.0  # GELU(x + 8) = x + 8 to < 3e-6 for |x| <= 3
N_KNOTS = 9
CONST_OUT = 4.0  # value on the constant output direction
GRID_COL = 7  # the 8-px grid line lies between local columns / rows 7 and 8 of a quality-view patch
GATE = 50.0  # block 1: attention logit -GATE on global-view keys (weight e^-50 against quality patches)

# ----------------------------------------------------------------------------- residual layout (64 dims)
# projection groups: (name, number of projections m, scale s)
GROUPS = (
    ("lap", 5, 20.0),
    ("dxi", 4, 10.0),
    ("dxb", 3, 10.0),
    ("dyi", 4, 10.0),
    ("dyb", 3, 10.0),
    ("mdx", 3, 6.0),
    ("mdy", 3, 6.0),
    ("lowac", 4, 8.0),
    ("crg", 3, 30.0),
    ("cyb", 3, 30.0),
)
D_RGB = (0, 1, 2)
_d = 3
D_GROUP: dict[str, list[int]] = {}
for _name, _m, _s in GROUPS:
    D_GROUP[_name] = list(range(_d, _d + _m))
    _d += _m
assert _d == 38
D_VIEW = 38  # 1 on the global view's patches, 0 on the quality view's (tatar_core.demo.view marker)
# single luminance differences (i0, j0, i1, j1): Y[i0, j0] - Y[i1, j1]
DIFFS_INT = ((3, 2, 3, 3), (10, 9, 10, 10), (2, 3, 3, 3), (9, 10, 10, 10))  # off the 8-px grid
DIFFS_BND = ((3, 7, 3, 8), (10, 7, 10, 8), (7, 3, 8, 3), (7, 10, 8, 10))  # across it
D_DIFF = list(range(39, 47))
D_ZINT, D_ZBND, D_SAT, D_D20, D_D50, D_D90, D_BRI, D_YSQ = range(47, 55)
D_CONST = 63
ENERGIES = ("lap", "dxi", "dxb", "dyi", "dyb", "mdx", "mdy", "lowac", "chr")
GLOBALS = ENERGIES + ("zint", "zbnd", "sat", "Y", "var", "d50", "bri")
D_GLOBAL = dict(zip(GLOBALS, list(range(39, 47)) + list(range(55, 63))))
HINGES = (("d20", D_D20, 20.0, -1), ("d50", D_D50, 50.0, -1), ("d90", D_D90, 90.0, -1), ("bri", D_BRI, 230.0, +1))

# -------------------------------------------------------------------------------------------- features
# (name, formula, units, targets). "L." = 2x2-group (28x28 px) mean per token, "G." = whole image (same on every
# token). log(.) is the bounded piecewise-linear natural log over LOG_RANGES[quantity] (flat outside).
_ENERGY_DOC = {
    "lap": ("4-neighbour Laplacian energy, (r/20)^2", "gblur, jp2k, awgn, impulse"),
    "dxi": ("horizontal neighbour-difference energy off the 8-px grid, (r/10)^2", "motion, gblur, awgn"),
    "dxb": ("horizontal difference energy across the 8-px grid line, (r/10)^2", "jpeg, pixelate"),
    "dyi": ("vertical neighbour-difference energy off the 8-px grid, (r/10)^2", "motion (reference), gblur"),
    "dyb": ("vertical difference energy across the 8-px grid line, (r/10)^2", "jpeg, pixelate"),
    "mdx": ("horizontal difference of 3x3 means 2 px apart, energy (r/6)^2", "motion (strong), gblur"),
    "mdy": ("vertical difference of 3x3 means 2 px apart, energy (r/6)^2", "motion (reference)"),
    "lowac": ("energy of Gaussian(sigma 2)-smoothed Y minus patch mean, (r/8)^2", "contrast; content scale"),
    "chr": ("mean square chroma (R-G)^2 and ((R+G)/2-B)^2 per pixel, /30^2", "desat, darken"),
}


def _feature_specs() -> list[tuple[str, str, str, str, tuple]]:
    """[(name, formula, units, targets, recipe)]; recipe: ("lin", q) | ("log", q) | ("diff", q1, q2, a2)."""
    specs = []
    for scope in ("L", "G"):
        p = scope + "."
        if scope == "L":
            specs.append(
                (
                    "L.view",
                    "1 on the global view's tokens, 0 on the quality view's",
                    "0-1",
                    "which view a token shows",
                    ("lin", "L.view"),
                )
            )
            for c in "RGB":
                specs.append((p + c, f"mean {c} / 255", "0-1", "darken, colour cast", ("lin", p + c)))
        specs.append((p + "logY", "log(mean Y / 255)", "nats", "darken, exposure", ("log", p + "Y")))
        for e in ENERGIES:
            f, t = _ENERGY_DOC[e]
            specs.append((p + e, f"log E_{e}: {f}", "nats", t, ("log", p + e)))
        specs.append(
            (
                p + "zint",
                "near-equal fraction max(0,1-|dY|) off the grid",
                "0-1",
                "pixelate, jpeg (flat blocks), contrast/darken (quantised)",
                ("lin", p + "zint"),
            )
        )
        specs.append(
            (
                p + "zbnd",
                "near-equal fraction max(0,1-|dY|) across the grid line",
                "0-1",
                "jpeg, pixelate (vs zint)",
                ("lin", p + "zbnd"),
            )
        )
        specs.append((p + "sat", "max-min of patch-mean RGB / 255", "0-1", "desat", ("lin", p + "sat")))
        hinge_names = ("d20", "d50", "d90", "bri") if scope == "L" else ("d50", "bri")
        for h in hinge_names:
            specs.append(
                (
                    p + h,
                    "fraction of patches with mean Y below 20/50/90 (bri: above 230), soft 10-level ramp"
                    if h != "bri"
                    else "fraction of patches with mean Y above 230, soft 10-level ramp",
                    "0-1",
                    "darken" if h != "bri" else "exposure (bright)",
                    ("lin", p + h),
                )
            )
        if scope == "G":
            specs.append(("G.logvar", "log variance of patch-mean Y (Y/255)", "nats", "contrast", ("log", "G.var")))
            specs.append(
                (
                    "G.weber_var",
                    "log var(patch Y) - 2 log mean Y",
                    "nats",
                    "contrast vs darken",
                    ("diff", "G.var", "G.Y", 2.0),
                )
            )
        specs += [
            (
                p + "blk_h",
                "log E_dxb - log E_dxi",
                "nats",
                "jpeg, pixelate (horizontal blockiness)",
                ("diff", p + "dxb", p + "dxi", 1.0),
            ),
            (
                p + "blk_v",
                "log E_dyb - log E_dyi",
                "nats",
                "jpeg, pixelate (vertical blockiness)",
                ("diff", p + "dyb", p + "dyi", 1.0),
            ),
            (p + "aniso", "log E_dxi - log E_dyi", "nats", "motion (horizontal)", ("diff", p + "dxi", p + "dyi", 1.0)),
            (p + "aniso_mid", "log E_mdx - log E_mdy", "nats", "motion (long)", ("diff", p + "mdx", p + "mdy", 1.0)),
            (
                p + "sharp",
                "log E_lap - log E_lowac",
                "nats",
                "gblur, jp2k (contrast-invariant); awgn up",
                ("diff", p + "lap", p + "lowac", 1.0),
            ),
            (
                p + "fine_mid",
                "log E_lap - log E_mdy",
                "nats",
                "blur spectrum slope; awgn, impulse",
                ("diff", p + "lap", p + "mdy", 1.0),
            ),
            (
                p + "chr_rel",
                "log E_chr - 2 log Y",
                "nats",
                "desat (relative chroma)",
                ("diff", p + "chr", p + "Y", 2.0),
            ),
            (
                p + "weber",
                "log E_lowac - 2 log Y",
                "nats",
                "contrast vs darken (Weber contrast)",
                ("diff", p + "lowac", p + "Y", 2.0),
            ),
        ]
    return specs


FEATURE_SPECS = _feature_specs()
FEATURE_NAMES = tuple(s[0] for s in FEATURE_SPECS)
FEATURES = tuple({"name": n, "formula": f, "units": u, "targets": t} for n, f, u, t, _ in FEATURE_SPECS)

# ------------------------------------------------------------- constants measured by `--measure-stats`
# LOG_RANGES[q] = (lo, hi): the log's knots span lo..hi geometrically (0.5 / 99.5 % quantiles of the quantity over
# tokens of unlabelled generated images); ZSTATS[name] = (mean, std) of each feature over the same tokens. Both live
# in STATS_FILE, written by `python scripts/analytic_tower_stats.py --measure-stats --write`.
CODE_DATA = ("tower_stats.json",)  # counted in the code version (tatar_core.code_version)
STATS_FILE = Path(__file__).with_name(CODE_DATA[0])


def load_stats(path: Path = STATS_FILE) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """(LOG_RANGES, ZSTATS) from the measured-statistics file."""
    data = json.loads(Path(path).read_text())
    return ({k: tuple(v) for k, v in data["log_ranges"].items()}, {k: tuple(v) for k, v in data["zstats"].items()})


def save_stats(ranges: dict, zstats: dict, path: Path = STATS_FILE) -> None:
    """Write (LOG_RANGES, ZSTATS) to the statistics file, one quantity / feature per line."""

    def block(d):
        return ",\n".join(f"  {json.dumps(k)}: {json.dumps(list(v))}" for k, v in d.items())

    Path(path).write_text(
        '{\n "about": "measured by scripts/analytic_tower_stats.py --measure-stats",\n'
        f' "log_ranges": {{\n{block(ranges)}\n }},\n "zstats": {{\n{block(zstats)}\n }}\n}}\n'
    )


LOG_RANGES, ZSTATS = load_stats()


# ------------------------------------------------------------------------------------------- filters
def _luma(k: np.ndarray) -> np.ndarray:
    """(n, 14, 14) luminance kernels -> (n, 3, 14, 14) colour kernels."""
    return np.stack([c * k for c in LUMA], axis=1)


def _filters() -> dict[str, np.ndarray]:
    """Response kernels per group, (n_responses, 3, 14, 14), on 0..255 colour values."""
    P = PATCH
    out = {}
    lap = []
    for i in range(1, P - 1):
        for j in range(1, P - 1):
            k = np.zeros((P, P))
            k[i, j] = 4
            k[i - 1, j] = k[i + 1, j] = k[i, j - 1] = k[i, j + 1] = -1
            lap.append(k)
    out["lap"] = _luma(np.array(lap))
    dx = {"i": [], "b": []}
    for i in range(P):
        for j in range(P - 1):
            k = np.zeros((P, P))
            k[i, j], k[i, j + 1] = 1, -1
            dx["b" if j == GRID_COL else "i"].append(k)
    for t in "ib":
        out["dx" + t] = _luma(np.array(dx[t]))
        out["dy" + t] = _luma(np.array(dx[t]).transpose(0, 2, 1))
    mdx = []
    for i in range(1, P - 1):
        for j in range(1, P - 3):
            k = np.zeros((P, P))
            k[i - 1 : i + 2, j - 1 : j + 2] += 1 / 9
            k[i - 1 : i + 2, j + 1 : j + 4] -= 1 / 9
            mdx.append(k)
    out["mdx"] = _luma(np.array(mdx))
    out["mdy"] = _luma(np.array(mdx).transpose(0, 2, 1))
    yy, xx = np.mgrid[0:P, 0:P]
    low = []
    for i in range(P):
        for j in range(P):
            g = np.exp(-((yy - i) ** 2 + (xx - j) ** 2) / (2 * 2.0**2))
            low.append(g / g.sum() - 1.0 / (P * P))
    out["lowac"] = _luma(np.array(low))
    eye = np.eye(P * P).reshape(P * P, P, P)
    out["crg"] = np.stack([eye, -eye, 0 * eye], axis=1)
    out["cyb"] = np.stack([0.5 * eye, 0.5 * eye, -eye], axis=1)
    return out


def _diff_kernel(i0, j0, i1, j1) -> np.ndarray:
    k = np.zeros((PATCH, PATCH))
    k[i0, j0], k[i1, j1] = 1, -1
    return _luma(k[None])[0]


def _orthonormal(gen: torch.Generator, n: int, m: int) -> np.ndarray:
    """n x m matrix with orthonormal columns (QR of a Gaussian)."""
    q, r = torch.linalg.qr(torch.randn(n, m, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).numpy()


def _projections(gen: torch.Generator, n: int, m: int) -> np.ndarray:
    """n x m unit columns w_k = 1/n + sqrt(1 - 1/n) v_k, v_k orthonormal and orthogonal to the all-ones vector:
    (w_k . r)^2 averages to mean(r^2) with the mean of r counted exactly (not by a seed-dependent factor)."""
    q = _orthonormal(gen, n, m + 1)
    ones = np.ones(n) / math.sqrt(n)
    v = q[:, 1:] - np.outer(ones, ones @ q[:, 1:])
    v, _ = np.linalg.qr(v)
    return 1.0 / n + math.sqrt(1.0 - 1.0 / n) * v


# -------------------------------------------------------------------------------------------- install
def _vision(model):
    vis = getattr(getattr(model, "model", None), "visual", None) or getattr(model, "visual", None)
    if vis is None:
        raise ValueError("install_analytic_tower: the model has no Qwen2.5-VL vision tower (model.model.visual)")
    c = vis.config
    want = dict(
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        patch_size=PATCH,
        temporal_patch_size=TEMPORAL,
        spatial_merge_size=MERGE,
        out_hidden_size=OUT,
        in_channels=3,
        hidden_act="silu",
    )
    bad = {k: getattr(c, k, None) for k, v in want.items() if getattr(c, k, None) != v}
    if bad or c.depth < 2 or 1 not in c.fullatt_block_indexes:
        raise ValueError(f"install_analytic_tower: vision config differs from the tiny model's: {bad}")
    return vis


class _Units:
    """Rows of a gated MLP silu(W_g h + b_g) * (W_u h + b_u), written to the residual by columns of W_d."""

    def __init__(self, n: int, dim: int):
        self.g, self.gb = np.zeros((n, dim)), np.zeros(n)
        self.u, self.ub = np.zeros((n, dim)), np.zeros(n)
        self.d = np.zeros((dim, n))
        self.n = 0

    def add(self, gate: dict, gate_b: float, up: dict, up_b: float, down: dict) -> None:
        i = self.n
        self.n += 1
        for k, v in gate.items():
            self.g[i, k] += v
        for k, v in up.items():
            self.u[i, k] += v
        for k, v in down.items():
            self.d[k, i] += v
        self.gb[i], self.ub[i] = gate_b, up_b

    def square_pair(self, a: dict, a_b: float, x: dict, x_b: float, down: dict) -> None:
        """Two units giving a * X exactly (a, X linear in h): silu(a)X - silu(-a)X = aX."""
        self.add(a, a_b, x, x_b, down)
        self.add({k: -v for k, v in a.items()}, -a_b, {k: -v for k, v in x.items()}, -x_b, down)

    def ramp(self, x: dict, x_b: float, k: float, down: dict) -> None:
        """One unit giving silu(k x)/k ~ relu(x)."""
        self.add({i: k * v for i, v in x.items()}, k * x_b, {}, 1.0 / k, down)


def _log_units(lo: float, hi: float):
    """Knots t_k (geometric lo..hi), GELU slopes s_k and output weights c_k/s_k of a bounded log:
    f(x) = log(lo) + sum_k (c_k / s_k) GELU(s_k (x - t_k)), piecewise linear in x, = log x at the knots."""
    t = np.geomspace(lo, hi, N_KNOTS)
    slope = np.diff(np.log(t)) / np.diff(t)  # segment slopes
    c = np.concatenate([[slope[0]], np.diff(slope), [-slope[-1]]])
    gap = np.concatenate([np.diff(t), [np.diff(t)[-1]]])
    s = 4.0 / gap  # GELU ramp width ~ a quarter of the gap
    return t, s, c / s


def _quantities() -> dict[str, dict[int, float]]:
    """Per-token linear readouts (dim -> weight) of the merger input for every quantity q ("L.x" / "G.x")."""
    q = {}
    for c, d in zip("RGB", D_RGB):
        q["L." + c] = {d: 1.0}
    q["L.Y"] = {d: w for d, w in zip(D_RGB, LUMA)}
    q["L.view"] = {D_VIEW: 1.0}
    for name, m, s in GROUPS:
        if name not in ("crg", "cyb"):
            q["L." + name] = {d: 1.0 for d in D_GROUP[name]}
    q["L.chr"] = {d: 0.5 for d in D_GROUP["crg"] + D_GROUP["cyb"]}
    for n, d in (
        ("zint", D_ZINT),
        ("zbnd", D_ZBND),
        ("sat", D_SAT),
        ("d20", D_D20),
        ("d50", D_D50),
        ("d90", D_D90),
        ("bri", D_BRI),
    ):
        q["L." + n] = {d: 1.0}
    for g, d in D_GLOBAL.items():
        q["G." + g] = {d: 1.0}
    return q


def _readout(ranges: dict, zstats: dict, names: Sequence[str]):
    """Merger L1 (W1, b1) and the map from its GELU outputs to the named features: z = M g + m0."""
    quant = _quantities()
    W1, b1, rows = [], [], {}

    def token_mean(q):
        w = np.zeros(4 * HIDDEN)
        for d, v in quant[q].items():
            for tkn in range(4):
                w[tkn * HIDDEN + d] = v / 4.0
        return w

    def lin(q):  # -> {unit: weight}, offset
        if ("lin", q) not in rows:
            rows[("lin", q)] = len(W1)
            W1.append(token_mean(q))
            b1.append(LIN_SHIFT)
        return {rows[("lin", q)]: 1.0}, -LIN_SHIFT

    def log(q):
        if ("log", q) not in rows:
            lo, hi = ranges.get(q, (1e-3, 1e2))
            t, s, w = _log_units(lo, hi)
            rows[("log", q)] = (len(W1), w, math.log(lo))
            for tk, sk in zip(t, s):
                W1.append(sk * token_mean(q))
                b1.append(-sk * tk)
        i0, w, off = rows[("log", q)]
        return {i0 + k: float(wk) for k, wk in enumerate(w)}, off

    spec = {s[0]: s[4] for s in FEATURE_SPECS}
    M_rows, m0 = [], []
    for name in names:
        r = spec[name]
        if r[0] == "lin":
            coef, off = lin(r[1])
        elif r[0] == "log":
            coef, off = log(r[1])
        else:
            c1, o1 = log(r[1])
            c2, o2 = log(r[2])
            coef = dict(c1)
            for k, v in c2.items():
                coef[k] = coef.get(k, 0.0) - r[3] * v
            off = o1 - r[3] * o2
        M_rows.append((coef, off))
    n_units = len(W1)
    if n_units > 4 * HIDDEN:
        raise ValueError(f"analytic tower: {n_units} merger units needed, only {4 * HIDDEN} exist")
    M = np.zeros((len(names), 4 * HIDDEN))
    for i, (coef, off) in enumerate(M_rows):
        for k, v in coef.items():
            M[i, k] = v
        mu, sd = zstats.get(names[i], (0.0, 1.0))
        M[i] /= sd
        m0.append((off - mu) / sd)
    W1 = np.array(W1 + [np.zeros(4 * HIDDEN)] * (4 * HIDDEN - n_units))
    b1 = np.array(b1 + [0.0] * (4 * HIDDEN - n_units))
    return W1, b1, M, np.array(m0)


def _build(seed: int, ranges: dict, zstats: dict, names: Sequence[str]) -> dict[str, np.ndarray]:
    """All tower weights as numpy arrays keyed by parameter name (relative to the visual module)."""
    gen = torch.Generator().manual_seed(int(seed))
    std = np.array(CLIP_STD)
    mean = np.array(CLIP_MEAN)
    # ---- patch embedding: kernels on 0..255 colour values -> conv weights on normalised input + offsets
    kern = np.zeros((HIDDEN, 3, PATCH, PATCH))
    for c, d in zip(range(3), D_RGB):
        kern[d, c] = 1.0 / (PATCH * PATCH * 255.0)
    filt = _filters()
    for name, m, s in GROUPS:
        F = filt[name]
        Q = _projections(gen, F.shape[0], m)  # (n_resp, m)
        kern[D_GROUP[name]] = np.einsum("rk,rcij->kcij", Q, F) / s
    for d, dd in zip(D_DIFF, DIFFS_INT[:2] + DIFFS_BND[:2] + DIFFS_INT[2:] + DIFFS_BND[2:]):
        kern[d] = _diff_kernel(*dd)
    conv = kern * (255.0 * std)[None, :, None, None] / TEMPORAL
    conv = np.repeat(conv[:, :, None], TEMPORAL, axis=2)  # (64, 3, 2, 14, 14)
    conv[D_VIEW, :, 0], conv[D_VIEW, :, 1] = 1.0, -1.0  # view = sum over copies of (+d) - (-d) = 1
    conv[D_VIEW] /= 2 * MARKER * 3 * PATCH * PATCH
    offset = np.einsum("dcij,c->d", kern, 255.0 * mean)  # v = 255 (x std + mean)
    W = {"patch_embed.proj.weight": conv}
    # ---- block 0: attention = constant offsets + BIG; MLP = squares, triangles, abs, ramps
    b0 = offset.copy()
    b0[D_CONST] = BIG
    W["blocks.0.attn.proj.bias"] = b0
    U = _Units(INTER, HIDDEN)
    for name, m, s in GROUPS:
        for d in D_GROUP[name]:  # dim d: a -> a + (a^2/m - a) = a^2/m
            U.square_pair({d: 1.0}, 0.0, {d: 1.0 / m}, -1.0, {d: 1.0})
    # near-equal indicators tri(d) = r(d+1) - 2 r(d) + r(d-1), then clear the raw difference
    for idx, d in enumerate(D_DIFF):
        acc = D_ZBND if idx in (2, 3, 6, 7) else D_ZINT
        for shift, w in ((1.0, 0.25), (0.0, -0.5), (-1.0, 0.25)):
            U.ramp({d: 1.0}, shift, 20.0, {acc: w})
        U.add({}, 30.0, {d: -1.0 / 30.0}, 0.0, {d: 1.0})  # silu(30) = 30: linear unit, -d
    # saturation = (|R-G| + |G-B| + |B-R|) / 2 on patch-mean colour (0..1)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        for sign in (1.0, -1.0):
            U.ramp({a: sign, b: -sign}, 0.0, 500.0, {D_SAT: 0.5})
    # dark / bright fractions: clip ramp r(u) - r(u - 1), u = (t - Y)/10 (dark) or (Y - t)/10 (bright), 0..1 units
    for _, dim, t, sign in HINGES:
        u = {d: sign * w * 255.0 / 10.0 for d, w in zip(D_RGB, LUMA)}  # u = sign (Y - t) / 10
        U.ramp(u, -sign * t / 10.0, 10.0, {dim: 1.0})
        U.ramp(u, -sign * t / 10.0 - 1.0, 10.0, {dim: -1.0})
    ylin = {d: w for d, w in zip(D_RGB, LUMA)}
    U.square_pair(ylin, 0.0, ylin, 0.0, {D_YSQ: 1.0})  # Y^2 (0..1 units)
    assert U.n <= INTER, U.n
    W.update(
        {
            "blocks.0.mlp.gate_proj.weight": U.g,
            "blocks.0.mlp.gate_proj.bias": U.gb,
            "blocks.0.mlp.up_proj.weight": U.u,
            "blocks.0.mlp.up_proj.bias": U.ub,
            "blocks.0.mlp.down_proj.weight": U.d,
        }
    )
    # ---- block 1: uniform attention -> image means of per-patch quantities into the global slots
    quant = _quantities()
    vW = np.zeros((HIDDEN, HIDDEN))
    pW = np.zeros((HIDDEN, HIDDEN))
    src = {g: quant["L." + g] for g in GLOBALS if "L." + g in quant}
    src["var"] = {D_YSQ: 1.0}  # mean of Y^2 (the MLP below subtracts mean(Y)^2)
    for j, g in enumerate(GLOBALS):
        for d, v in src[g].items():
            vW[j, d] = v
        pW[D_GLOBAL[g], j] = 1.0
    qkv = np.zeros((3 * HIDDEN, HIDDEN))
    qkv[2 * HIDDEN :] = vW
    qkv_b = np.zeros(3 * HIDDEN)
    qkv_b[3] = 1.0  # q: head 0, dim 3 (rotary pair 3|11: h * 0.001 rad)
    qkv[HIDDEN + 3, D_VIEW] = -4.0 * GATE  # k: -4 GATE view; logit q.k / sqrt(16) = -GATE view
    W["blocks.1.attn.qkv.weight"], W["blocks.1.attn.qkv.bias"] = qkv, qkv_b
    W["blocks.1.attn.proj.weight"] = pW
    U1 = _Units(INTER, HIDDEN)
    gy = {D_GLOBAL["Y"]: 1.0}
    U1.square_pair(gy, 0.0, {D_GLOBAL["Y"]: -1.0}, 0.0, {D_GLOBAL["var"]: 1.0})  # -mean(Y)^2
    W.update(
        {
            "blocks.1.mlp.gate_proj.weight": U1.g,
            "blocks.1.mlp.gate_proj.bias": U1.gb,
            "blocks.1.mlp.up_proj.weight": U1.u,
            "blocks.1.mlp.up_proj.bias": U1.ub,
            "blocks.1.mlp.down_proj.weight": U1.d,
        }
    )
    for blk in (0, 1):
        W[f"blocks.{blk}.norm1.weight"] = np.full(HIDDEN, NORM_W)
        W[f"blocks.{blk}.norm2.weight"] = np.full(HIDDEN, NORM_W)
    W["merger.ln_q.weight"] = np.full(HIDDEN, NORM_W)
    # ---- merger: L1 = linear pass-throughs and log ramps; L2 = z-scored features on orthonormal directions
    W1, b1, M, m0 = _readout(ranges, zstats, names)
    D = _orthonormal(gen, OUT, len(names) + 1)  # (128, n + 1), last = constant direction
    W["merger.mlp.0.weight"], W["merger.mlp.0.bias"] = W1, b1
    W["merger.mlp.2.weight"] = D[:, :-1] @ M
    W["merger.mlp.2.bias"] = D[:, :-1] @ m0 + CONST_OUT * D[:, -1]
    return W


def install_analytic_tower(
    model,
    seed: int,
    names: Optional[Sequence[str]] = None,
    _ranges: Optional[dict] = None,
    _zstats: Optional[dict] = None,
) -> None:
    """Overwrite the vision tower's weights in place (every parameter; the language model is untouched).

    `names`: the output features (default: all of FEATURE_NAMES). `_ranges` / `_zstats` override the measured
    constants (used by scripts/analytic_tower_stats.py).
    """
    vis = _vision(model)
    names = list(names or FEATURE_NAMES)
    weights = _build(seed, LOG_RANGES if _ranges is None else _ranges, ZSTATS if _zstats is None else _zstats, names)
    params = dict(vis.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if name in weights:
                p.copy_(torch.as_tensor(weights[name], dtype=p.dtype).reshape(p.shape))
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                p.fill_(1.0)
            else:
                p.zero_()
    vis._analytic_names = tuple(names)  # for tower_features (also recoverable: default = FEATURE_NAMES)


# ---------------------------------------------------------------------------------------------- readout
def _run_tower(model, processor, images, capture: str):
    """Run the visual tower on `images`; returns (captured per-token tensor, tokens per image, is-global per token:
    the processor's marker, `tatar_core.demo.view`)."""
    vis = _vision(model)
    mod = vis.merger.mlp[1] if capture == "gelu" else vis.merger.ln_q
    got = []
    hook = mod.register_forward_hook(lambda m, i, o: got.append(o.detach()))
    try:
        px = processor.image_processor(images=list(images), return_tensors="pt")
        with torch.no_grad():
            vis(px["pixel_values"].to(vis.dtype), grid_thw=px["image_grid_thw"])
    finally:
        hook.remove()
    counts = (px["image_grid_thw"].prod(-1) // MERGE**2).tolist()
    rows = px["pixel_values"].double().reshape(-1, MERGE**2, 3, TEMPORAL, PATCH * PATCH)
    is_global = (rows[:, :, :, 0] - rows[:, :, :, 1]).abs().amax(dim=(1, 2, 3)) > 1e-3
    x = got[0].double()
    if capture != "gelu":
        x = x.reshape(-1, 4 * HIDDEN)
    return x, counts, is_global.numpy()


def tower_features(
    model, processor, images, pool: bool = True, batch: int = 64, names: Optional[Sequence[str]] = None
) -> np.ndarray:
    """The named, z-scored features (FEATURE_NAMES order unless the tower was installed with `names`), read
    from the merger's GELU layer before the random-direction projection: with pool=True [n_images, 2 n_features],
    the mean over the image's quality-view tokens, then over its global-view tokens (0 where it has none); with
    pool=False [n_tokens_total, n_features]."""
    names = list(names or getattr(_vision(model), "_analytic_names", FEATURE_NAMES))
    _, _, M, m0 = _readout(LOG_RANGES, ZSTATS, names)
    out = []
    images = list(images)
    for i in range(0, len(images), batch):
        g, counts, glob = _run_tower(model, processor, images[i : i + batch], "gelu")
        z = g.numpy() @ M.T + m0
        if pool:
            parts = zip(np.split(z, np.cumsum(counts)[:-1]), np.split(glob, np.cumsum(counts)[:-1]))
            z = np.stack(
                [np.concatenate([c[~v].mean(0), c[v].mean(0) if v.any() else np.zeros(len(names))]) for c, v in parts]
            )
        out.append(z)
    return np.concatenate(out)


def tower_quantities(model, processor, images, batch: int = 64) -> dict[str, np.ndarray]:
    """Raw per-token quantities (pre-log energies etc., `_quantities()` keys) from the merger input."""
    quant = _quantities()
    R = np.zeros((len(quant), 4 * HIDDEN))
    for i, (q, w) in enumerate(quant.items()):
        for d, v in w.items():
            for tkn in range(4):
                R[i, tkn * HIDDEN + d] = v / 4.0
    rows = []
    images = list(images)
    for i in range(0, len(images), batch):
        x, _, _ = _run_tower(model, processor, images[i : i + batch], "lnq")
        rows.append(x.numpy() @ R.T)
    x = np.concatenate(rows)
    return {q: x[:, i] for i, q in enumerate(quant)}
