"""Build a labelled IQA set from your own photos, distorted exactly like the demo set: each photo is centre-cropped
to the aspect of each `--sizes` entry (WxH, default 128x128), resized to it, and written with the demo's 10
distortion types x 5 levels applied at that size (`tatar_core.demo.data.IQA_DISTORTIONS`, labels `iqa_score`:
KADID-style, 0-100) plus the photo itself, and per size a `labels-WxH.csv` (image, score, type, level, ref) that the
benchmark stage reads as a `table` dataset, so the model and the baselines are scored on the same images with
per-type metrics, size by size (`labels.csv` lists every size together):

    python scripts/photo_iqa_set.py /usr/share/backgrounds/mate/nature --out photos-iqa --sizes 128x128 512x384
    tatar run configs/demo.yaml --stage benchmark --set benchmark.include_demo_test=false \\
        --set 'benchmark.datasets=[{name: table, alias: photos-512x384, root: photos-iqa,
               label_file: labels-512x384.csv, task: iqa, split: all, scale: [0, 100]}]'

The demo's three validation photos are too few to choose settings by (a change of +-0.05 is within the seed
spread); a few dozen photos of other content measure the same thing with less noise. Never use photos you also
train on.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tatar_core.demo.data import fit, iqa_versions, size_tag  # noqa: E402
from tatar_core.images import load_rgb  # noqa: E402
from tatar_core.samples.readers import iter_image_files  # noqa: E402

FIELDS = ["image", "score", "type", "level", "ref"]


def parse_size(text: str) -> tuple[int, int]:
    """'512x384' -> (512, 384)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 512x384") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size {text!r}: both sides must be at least 16 px")
    return w, h


def build_photo_set(photos, out: Path, sizes=((128, 128),), seed: int = 0) -> tuple[Path, int]:
    """Write every photo's labelled versions at every size under `out`/<WxH>/<photo stem>/, a `labels-WxH.csv` per
    size and `out`/labels.csv with all of them; returns (labels.csv, its number of rows)."""
    out = Path(out)
    rows: dict[str, list[dict]] = {}
    for path in photos:
        ref = Path(path).stem
        photo = load_rgb(path)
        for w, h in sizes:
            tag = size_tag(w, h)
            (out / tag / ref).mkdir(parents=True, exist_ok=True)
            for v in iqa_versions(fit(photo, w, h), f"{ref}@{tag}", seed):
                v.image.save(out / tag / ref / v.file_name)
                rows.setdefault(tag, []).append(
                    {
                        "image": f"{tag}/{ref}/{v.file_name}",
                        "score": v.score,
                        "type": v.type,
                        "level": v.level,
                        "ref": ref,
                    }
                )
    for name, part in [(f"labels-{t}.csv", r) for t, r in rows.items()] + [("labels.csv", sum(rows.values(), []))]:
        with open(out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(part)
    return out / "labels.csv", sum(len(r) for r in rows.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="+", help="photo files or folders (searched recursively)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(128, 128)],
        metavar="WxH",
        help="sizes to build, each a centre crop to its aspect then a resize (default 128x128)",
    )
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
    labels, n = build_photo_set(photos, Path(a.out), a.sizes, a.seed)
    print(f"{n} images of {len(photos)} photos: {labels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
