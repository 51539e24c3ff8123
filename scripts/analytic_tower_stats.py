"""Measure the analytic vision tower's fixed statistics (`LOG_RANGES`, `ZSTATS`, kept in
`tatar_core/demo/tower_stats.json`) on unlabelled generated images, and print its feature table.

    python scripts/analytic_tower_stats.py --features
    python scripts/analytic_tower_stats.py --measure-stats [--write]
    python scripts/analytic_tower_stats.py --probe runs/demo/samples/<key>/samples.parquet [--split test]

`--probe` asks how much of the held-out ranking the tower's features carry, apart from what the language model
learns from them: ridge regression, a one-hidden-layer MLP (256 ReLU units, the width of the language side's MLP)
on standardised inputs, and a random forest on the token-mean features, fitted on the train split's IQA images,
scored on another split, beside the random-forest baseline itself (`tatar_core.benchmark.baselines`: the same forest
on its numpy features) and the same MLP on those numpy features; per distortion type, each regressor's SRCC and the
best single tower feature's |SRCC| within the type (chosen on the scored images, so optimistic: with a random-init
tower the best of the 53 features still reaches 0.4-0.9 on 15 images).
"""

from __future__ import annotations

import numpy as np

import tatar_core.demo.tower as at
from tatar_core.demo.tower import FEATURE_NAMES, FEATURES, install_analytic_tower, tower_features, tower_quantities


def stats_images(n: int = 600, seed: int = 12345, long_side: tuple[int, int] = (128, 640)):
    """Unlabelled generated images for the statistics: dead leaves and 1/f textures at sizes drawn as the demo's
    train references are (long side log-uniform in `long_side`, aspect 1:1, 4:3 or 3:4), half of them distorted
    with a random demo distortion type at a random level (no labels are used)."""
    from PIL import Image

    from data_contracts.config.samples import DemoDataConfig
    from tatar_core.demo.data import IQA_DISTORTIONS, dead_leaves, draw_size, pink_noise

    rng = np.random.default_rng(seed)
    cfg = DemoDataConfig(train_long_side=long_side)
    types = sorted(IQA_DISTORTIONS)
    out = []
    for i in range(n):
        w, h = draw_size(cfg, rng)
        a = dead_leaves(rng, w, h) if i % 2 == 0 else pink_noise(rng, w, h)
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

    from tatar_core.demo.tiny import build_tiny_model
    from tatar_core.models.loading import load_model_and_processor

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
    zstats = {
        n_: (float(f"{z[:, i].mean():.5g}"), float(f"{max(z[:, i].std(), 1e-3):.5g}"))
        for i, n_ in enumerate(FEATURE_NAMES)
    }
    return ranges, zstats


def probe(samples_parquet, split: str = "test", seed: int = 0) -> dict:
    """{"overall": {regressor: SRCC}, "types": {type: {regressor: SRCC, "best": (feature, |SRCC|)}}, "n": (n_train,
    n_eval)} for the IQA rows of `samples_parquet` (a samples stage output; image paths relative to its run folder)."""
    import json
    import tempfile
    import warnings
    from pathlib import Path

    from scipy.stats import spearmanr
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from data_contracts.parquet_io import read_records
    from data_contracts.records import SampleRecord
    from tatar_core.benchmark.baselines import image_features, make_forest
    from tatar_core.demo.tiny import build_tiny_model
    from tatar_core.images import load_rgb
    from tatar_core.models.loading import load_model_and_processor

    path = Path(samples_parquet)
    rows = [s for s in read_records(path, SampleRecord, run_root=path.parents[2]) if s.task == "iqa"]
    with tempfile.TemporaryDirectory() as tmp:
        model, proc = load_model_and_processor(build_tiny_model(Path(tmp) / "m", seed=seed))
    data = {}
    for name in ("train", split):
        part = [s for s in rows if s.split == name]
        if len(part) < 3:
            raise ValueError(f"{path}: {len(part)} IQA rows in split {name!r}; the probe needs at least 3")
        images = [load_rgb(s.image_path) for s in part]
        data[name] = dict(
            tower=tower_features(model, proc, images),
            numpy=np.stack([image_features(i) for i in images]),
            y=np.array([s.score for s in part]),
            type=np.array([json.loads(s.meta or "{}").get("type", "pristine") for s in part]),
        )
    tr, ev = data["train"], data[split]
    pred = {}
    regressors = {
        "ridge": lambda: RidgeCV(alphas=np.logspace(-3, 3, 13)),
        "forest": lambda: make_forest(seed),
        "mlp": lambda: make_pipeline(
            StandardScaler(), MLPRegressor(hidden_layer_sizes=(256,), max_iter=300, random_state=seed)
        ),
    }
    for feats, reg in (
        ("tower", "ridge"),
        ("tower", "mlp"),
        ("tower", "forest"),
        ("numpy", "mlp"),
        ("numpy", "forest"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the MLP stops at 300 epochs, converged or not
            pred[f"{reg} on {feats} features"] = regressors[reg]().fit(tr[feats], tr["y"]).predict(ev[feats])
    srcc = lambda a, b: float(spearmanr(a, b).statistic)  # noqa: E731
    types = {}
    for t in sorted(set(ev["type"]) - {"pristine"}):
        m = ev["type"] == t
        r = {k: srcc(p[m], ev["y"][m]) for k, p in pred.items()}
        singles = [
            (n, abs(srcc(ev["tower"][m, i], ev["y"][m])))
            for i, n in enumerate(FEATURE_NAMES)
            if np.ptp(ev["tower"][m, i]) > 0
        ]
        r["best"] = max(singles, key=lambda x: x[1]) if singles else ("-", float("nan"))
        types[t] = r
    return {
        "overall": {k: srcc(p, ev["y"]) for k, p in pred.items()},
        "types": types,
        "n": (len(tr["y"]), len(ev["y"])),
    }


def _print_probe(res: dict, split: str) -> None:
    n_tr, n_ev = res["n"]
    print(f"held-out IQA SRCC, fitted on {n_tr} train images, scored on {n_ev} {split} images")
    for k, v in res["overall"].items():
        print(f"  {k:<28} {v:.3f}")
    keys = list(res["overall"])
    print(
        f"\n{'type':<10} "
        + " ".join(f"{k.split(' on ')[0] + '/' + k.split(' on ')[1][:5]:>13}" for k in keys)
        + "   best single tower feature (|SRCC|, chosen here)"
    )
    for t, r in res["types"].items():
        print(f"{t:<10} " + " ".join(f"{r[k]:>13.3f}" for k in keys) + f"   {r['best'][0]} {r['best'][1]:.2f}")


def _format_constants(ranges: dict, zstats: dict) -> str:
    import json

    return json.dumps({"log_ranges": ranges, "zstats": zstats}, indent=1)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--measure-stats", action="store_true", help="print LOG_RANGES / ZSTATS measured on generated images"
    )
    ap.add_argument("--write", action="store_true", help="also write them to tatar_core/demo/tower_stats.json")
    ap.add_argument("-n", type=int, default=600)
    ap.add_argument("--features", action="store_true", help="print the FEATURES table")
    ap.add_argument("--probe", metavar="SAMPLES_PARQUET", help="fit ridge / random forest on the tower's features")
    ap.add_argument("--split", default="test", help="the split --probe scores (default test)")
    a = ap.parse_args()
    import json

    if a.probe:
        _print_probe(probe(a.probe, a.split), a.split)
    if a.features:
        for f in FEATURES:
            print(f"{f['name']:<14} {f['units']:<6} {f['formula']}  [{f['targets']}]")
    if a.measure_stats:
        text = _format_constants(*measure_stats(a.n))
        print(text)
        if a.write:
            at.save_stats(*json.loads(text).values())
            print(f"wrote {at.STATS_FILE}")
