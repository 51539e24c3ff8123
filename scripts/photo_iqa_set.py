"""Build a labelled IQA set from your own photos, distorted exactly like the demo set: each photo is centre-cropped
to a square, resized to `--size` px, and written with the demo's 10 distortion types x 5 levels
(`tatar_core.demo.data.IQA_DISTORTIONS`, labels `iqa_score`: KADID-style, 0-100) plus the photo itself, and a
`labels.csv` (image, score, type, level, ref) that the benchmark stage reads as a `table` dataset, so the model and
the baselines are scored on the same images with per-type metrics:

    python scripts/photo_iqa_set.py /usr/share/backgrounds/mate/nature --out photos-iqa
    tatar run configs/demo.yaml --stage benchmark --set benchmark.include_demo_test=false \\
        --set 'benchmark.datasets=[{name: table, alias: photos-iqa, root: photos-iqa, label_file: labels.csv,
               task: iqa, split: all, scale: [0, 100]}]'

The demo's three validation photos are too few to choose settings by (a change of +-0.05 is within the seed
spread); a few dozen photos of other content measure the same thing with less noise. Never use photos you also
train on.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tatar_core.demo.data import centre_square, iqa_versions  # noqa: E402
from tatar_core.images import load_rgb  # noqa: E402
from tatar_core.samples.readers import iter_image_files  # noqa: E402


def build_photo_set(photos, out: Path, size: int = 128, seed: int = 0) -> tuple[Path, int]:
    """Write every photo's labelled versions under `out`/<photo stem>/ and `out`/labels.csv; returns (the CSV, its
    number of rows)."""
    out = Path(out)
    rows = []
    for path in photos:
        ref = Path(path).stem
        base = centre_square(np.asarray(load_rgb(path))).resize((size, size), Image.Resampling.LANCZOS)
        (out / ref).mkdir(parents=True, exist_ok=True)
        for v in iqa_versions(base, ref, seed):
            v.image.save(out / ref / v.file_name)
            rows.append({"image": f"{ref}/{v.file_name}", "score": v.score, "type": v.type, "level": v.level,
                         "ref": ref})
    labels = out / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "score", "type", "level", "ref"])
        w.writeheader()
        w.writerows(rows)
    return labels, len(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="+", help="photo files or folders (searched recursively)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--size", type=int, default=128, help="side in px after the centre crop (the demo's 128)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed of the random distortions")
    a = ap.parse_args(argv)
    try:
        photos = iter_image_files(a.photos)
    except FileNotFoundError as e:
        ap.error(str(e))
    stems = [p.stem for p in photos]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if not photos:
        ap.error(f"no image files in {a.photos}")
    if dup:
        ap.error(f"photos must have distinct file names (the reference id), repeated: {dup}")
    labels, n = build_photo_set(photos, Path(a.out), a.size, a.seed)
    print(f"{n} images of {len(photos)} photos: {labels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
