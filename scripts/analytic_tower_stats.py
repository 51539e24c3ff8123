"""Measure the analytic vision tower's fixed statistics (`LOG_RANGES`, `ZSTATS` in
`tatar_core/models/analytic_tower.py`) on unlabelled generated images, and print its feature table.

    python scripts/analytic_tower_stats.py --features
    python scripts/analytic_tower_stats.py --measure-stats [--write]
"""
from __future__ import annotations

import numpy as np

import tatar_core.models.analytic_tower as at
from tatar_core.models.analytic_tower import (FEATURE_NAMES, FEATURES, install_analytic_tower, tower_features,
                                              tower_quantities)


def stats_images(n: int = 600, seed: int = 12345, size: int = 128):
    """Unlabelled generated images for the statistics: dead leaves and 1/f textures, half of them distorted
    with a random demo distortion type at a random level (no labels are used)."""
    from PIL import Image

    from tatar_core.samples.demo import IQA_DISTORTIONS, dead_leaves, pink_noise

    rng = np.random.default_rng(seed)
    types = sorted(IQA_DISTORTIONS)
    out = []
    for i in range(n):
        a = dead_leaves(rng, size) if i % 2 == 0 else pink_noise(rng, size)
        img = Image.fromarray(a, "RGB")
        if rng.random() < 0.5:
            d = IQA_DISTORTIONS[types[int(rng.integers(len(types)))]]
            img = d.apply(img, d.params[int(rng.integers(5))], rng)
        out.append(img)
    return out


def measure_stats(n: int = 600) -> tuple[dict, dict]:
    """(LOG_RANGES, ZSTATS) from unlabelled generated images: quantity quantiles 0.5 / 99.5 % over tokens
    (floored at 1e-4 and at hi/1e4), then mean / std of every feature over tokens."""
    import tempfile
    from pathlib import Path

    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model, proc = load_model_and_processor(build_tiny_model(Path(tmp) / "m", seed=0, analytic_tower=False))
    images = stats_images(n)
    install_analytic_tower(model, 0, _ranges={}, _zstats={})
    q = tower_quantities(model, proc, images)
    ranges = {}
    for k, v in q.items():
        hi = float(np.quantile(v, 0.995))
        lo = max(float(np.quantile(v, 0.005)), 1e-4, hi / 1e4)
        ranges[k] = (float(f"{lo:.4g}"), float(f"{max(hi, 2 * lo):.4g}"))
    saved = at.LOG_RANGES, at.ZSTATS
    at.LOG_RANGES, at.ZSTATS = ranges, {}
    try:
        install_analytic_tower(model, 0)
        z = tower_features(model, proc, images, pool=False)
    finally:
        at.LOG_RANGES, at.ZSTATS = saved
    zstats = {n_: (float(f"{z[:, i].mean():.5g}"), float(f"{max(z[:, i].std(), 1e-3):.5g}"))
              for i, n_ in enumerate(FEATURE_NAMES)}
    return ranges, zstats


def _format_constants(ranges: dict, zstats: dict) -> str:
    lines = ["LOG_RANGES.update({"]
    lines += [f"    {k!r}: {v!r}," for k, v in ranges.items()]
    lines += ["})", "ZSTATS.update({"]
    lines += [f"    {k!r}: {v!r}," for k, v in zstats.items()]
    lines.append("})")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--measure-stats", action="store_true", help="print LOG_RANGES / ZSTATS measured on generated images")
    ap.add_argument("--write", action="store_true", help="also write them between the MEASURED CONSTANTS markers")
    ap.add_argument("-n", type=int, default=600)
    ap.add_argument("--features", action="store_true", help="print the FEATURES table")
    a = ap.parse_args()
    if a.features:
        for f in FEATURES:
            print(f"{f['name']:<14} {f['units']:<6} {f['formula']}  [{f['targets']}]")
    if a.measure_stats:
        text = _format_constants(*measure_stats(a.n))
        print(text)
        if a.write:
            import re
            from pathlib import Path

            path = Path(at.__file__)
            src = path.read_text()
            src = re.sub(r"(# BEGIN MEASURED CONSTANTS\n).*?(# END MEASURED CONSTANTS)",
                         lambda m: m.group(1) + text + "\n" + m.group(2), src, flags=re.S)
            path.write_text(src)
