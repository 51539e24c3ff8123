"""`tatar score PATH... --task iqa|iaa [--model DIR] [--out results.csv] [--batch-size N]`

Scores image files (folders are searched recursively for image extensions) on 0–100, higher is better, and
writes a CSV with one row per file, in order: path,task,score,parse,n_words,error (score empty when the answer does
not parse; parse "unreadable" and the reason in `error` when the file does not decode: missing, not an image,
truncated, over the decompression-bomb limit). Every mode is scored as RGB with its EXIF orientation applied
(`tatar_core.samples.images.load_rgb`).
--model defaults to the environment variable TATAR_MODEL, then to the newest finished GRPO checkpoint under
./runs (e.g. the one `make demo` trained).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Optional

from tatar_core.samples.specs import IMAGE_EXTENSIONS
from tatar_core.samples.readers import iter_image_files

CSV_COLUMNS = ("path", "task", "score", "parse", "n_words", "error")
MODEL_ENV = "TATAR_MODEL"


class ScoreCliError(ValueError):
    """A user error of `tatar score` (no images, bad model folder)."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tatar score", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    ap.add_argument("--task", required=True, choices=("iqa", "iaa"), help="iqa = quality (fast), iaa = aesthetics")
    ap.add_argument("--model", default=None,
                    help=f"model folder (default: ${MODEL_ENV}, else the newest finished GRPO model under ./runs)")
    ap.add_argument("--out", default="results.csv", help="CSV to write (default: results.csv)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--draft-tokens", type=int, default=6,
                    help="speculative decoding: drafted tokens checked per pass (0 = off); same scores either way")
    ap.add_argument("--readout", choices=("greedy", "expected"), default="greedy")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    return ap


def latest_trained_model(runs: Path = Path("runs")) -> Optional[Path]:
    """The `model/` folder of the newest finished grpo stage under `runs/<name>/grpo/<key>/` (by manifest time)."""
    manifests = sorted(runs.glob("*/grpo/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return manifests[-1].parent / "model" if manifests else None


def _model_dir(arg: Optional[str]) -> Path:
    value = arg or os.environ.get(MODEL_ENV) or latest_trained_model()
    if not value:
        raise ScoreCliError(f"no model: pass --model DIR, set {MODEL_ENV}, or train one (make demo)")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ScoreCliError(f"model folder {path} does not exist")
    if not (path / "config.json").is_file():
        raise ScoreCliError(f"{path} is not a model folder (no config.json)")
    return path


def _images(paths: list[str]) -> list[Path]:
    try:
        files = iter_image_files(paths)
    except FileNotFoundError as e:
        raise ScoreCliError(str(e)) from None
    if not files:
        raise ScoreCliError(f"no images found in {', '.join(paths)} (extensions: {' '.join(IMAGE_EXTENSIONS)})")
    return files


def short_table(rows: list[dict], limit: int = 20) -> str:
    """A few rows of path / score / parse plus a summary line."""
    width = min(60, max([len(r["path"]) for r in rows[:limit]] + [4]))
    lines = [f"{'path':<{width}}  {'score':>6}  parse"]
    for r in rows[:limit]:
        p = r["path"] if len(r["path"]) <= width else "…" + r["path"][-(width - 1):]
        s = "" if r["score"] == "" else f"{float(r['score']):6.2f}"
        lines.append(f"{p:<{width}}  {s:>6}  {r['parse']}")
    if len(rows) > limit:
        lines.append(f"… {len(rows) - limit} more")
    scored = [float(r["score"]) for r in rows if r["score"] != ""]
    mean = f", mean {sum(scored) / len(scored):.2f}" if scored else ""
    lines.append(f"{len(scored)}/{len(rows)} parsed{mean}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        model = _model_dir(args.model)
        files = _images(args.paths)
    except ScoreCliError as e:
        print(f"tatar score: error: {e}", file=sys.stderr)
        return 2
    from tatar_core.samples.images import ImageLoadError, load_rgb
    from tatar_core.scoring.scorer import Scorer

    try:
        scorer = Scorer(model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, readout=args.readout,
                        device=args.device, draft_tokens=args.draft_tokens)
    except ValueError as e:
        print(f"tatar score: error: {e}", file=sys.stderr)
        return 2
    rows: dict[int, dict] = {}
    ok, images = [], []
    for i, f in enumerate(files):
        try:
            images.append(load_rgb(f))
            ok.append(i)
        except ImageLoadError as e:
            rows[i] = {"path": str(f), "task": args.task, "score": "", "parse": "unreadable", "n_words": 0,
                       "error": e.reason}
            print(f"tatar score: skipped {e.path}: {e.reason}", file=sys.stderr)
    results = scorer.score(images, args.task, progress=True) if images else []
    for i, r in zip(ok, results):
        rows[i] = {"path": str(files[i]), "task": args.task, "score": "" if r.score is None else f"{r.score:.2f}",
                   "parse": r.parse, "n_words": r.n_words, "error": ""}
    rows = [rows[i] for i in range(len(files))]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(short_table(rows))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
