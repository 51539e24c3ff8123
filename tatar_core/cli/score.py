"""`tatar score PATH... --task iqa|iaa [--model DIR] [--out results.csv] [--batch-size N]`

Scores image files (folders are searched recursively for image extensions) on 0–100, higher is better, and
writes a CSV with the columns path,task,score,parse,n_words (score empty when the answer does not parse).
--model defaults to the environment variable TATAR_MODEL, then to the newest finished GRPO checkpoint under
./runs (e.g. the one `make demo` trained). --readout defaults to the readout the model was benchmarked with
(read from the run's benchmark manifest), else greedy.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Optional

from tatar_core.samples.specs import IMAGE_EXTENSIONS
from tatar_core.samples.readers import iter_image_files

CSV_COLUMNS = ("path", "task", "score", "parse", "n_words")
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
    ap.add_argument("--readout", choices=("greedy", "expected"), default=None,
                    help="default: the readout this model was benchmarked with, else greedy")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    return ap


def latest_trained_model(runs: Path = Path("runs")) -> Optional[Path]:
    """The `model/` folder of the newest finished grpo stage under `runs/<name>/grpo/<key>/` (by manifest time)."""
    manifests = sorted(runs.glob("*/grpo/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return manifests[-1].parent / "model" if manifests else None


def benchmarked_readout(model: Path) -> Optional[tuple[str, Path]]:
    """(readout, benchmark folder) of the newest finished benchmark of `model` in its run folder
    (`<run>/grpo/<key>/model` -> `<run>/benchmark/*/manifest.json` whose metrics name this model), or None."""
    model = model.resolve()
    found = []
    for m in model.parent.parent.parent.glob("benchmark/*/manifest.json"):
        try:
            metrics = json.loads(m.read_text()).get("metrics", {})
        except (OSError, json.JSONDecodeError):
            continue
        if metrics.get("readout") and metrics.get("model") and Path(metrics["model"]).resolve() == model:
            found.append((m.stat().st_mtime, metrics["readout"], m.parent))
    return max(found)[1:] if found else None


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

    readout = args.readout
    if readout is None:
        found = benchmarked_readout(model)
        readout = found[0] if found else "greedy"
        print(f"tatar score: readout {readout}" + (f" (as benchmarked in {found[1]})" if found else ""),
              file=sys.stderr)
    try:
        scorer = Scorer(model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, readout=readout,
                        device=args.device, draft_tokens=args.draft_tokens)
    except ValueError as e:
        print(f"tatar score: error: {e}", file=sys.stderr)
        return 2
    ok, images, bad = [], [], []
    for f in files:
        try:
            images.append(load_rgb(f))
            ok.append(f)
        except ImageLoadError as e:
            bad.append(f)
            print(f"tatar score: skipped {e.path}: {e.reason}", file=sys.stderr)
    results = scorer.score(images, args.task, progress=True) if images else []
    rows = [{"path": str(f), "task": args.task, "score": "" if r.score is None else f"{r.score:.2f}",
             "parse": r.parse, "n_words": r.n_words} for f, r in zip(ok, results)]
    rows += [{"path": str(f), "task": args.task, "score": "", "parse": "unreadable", "n_words": 0} for f in bad]
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
