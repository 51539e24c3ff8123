"""`tatar score PATH... --task iqa|iaa [--model DIR] [--out results.csv] [--batch-size N]`

Scores image files (folders are searched recursively for image extensions) on 0–100, higher is better, and
writes a CSV with one row per file, in order: path,task,score,parse,n_words,error (score empty when the answer does
not parse; parse "unreadable" and the reason in `error` when the file does not decode: missing, not an image,
truncated, over the decompression-bomb limit). Every mode is scored as RGB with its EXIF orientation applied
(`tatar_core.images.load_rgb`).
--model defaults to the environment variable TATAR_MODEL, then to the newest finished GRPO checkpoint under
./runs (e.g. the one `make demo` trained). --readout defaults to the readout the model was benchmarked with
(read from the run's benchmark manifest), else greedy. --engine vllm scores with vLLM's offline engine in a scoring
worker process (`python -m tatar_core.scoring.worker`, run by --python: the interpreter of the environment where
vLLM is installed; default this one).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Optional

from tatar_core.samples.readers import iter_image_files
from tatar_core.samples.specs import IMAGE_EXTENSIONS

CSV_COLUMNS = ("path", "task", "score", "parse", "n_words", "error")
MODEL_ENV = "TATAR_MODEL"


class ScoreCliError(ValueError):
    """A user error of `tatar score` (no images, bad model folder)."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tatar score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    ap.add_argument("--task", required=True, choices=("iqa", "iaa"), help="iqa = quality (fast), iaa = aesthetics")
    ap.add_argument(
        "--model",
        default=None,
        help=f"model folder (default: ${MODEL_ENV}, else the newest finished GRPO model under ./runs)",
    )
    ap.add_argument("--out", default="results.csv", help="CSV to write (default: results.csv)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument(
        "--draft-tokens",
        type=int,
        default=6,
        help="speculative decoding: drafted tokens checked per pass (0 = off); same scores either way",
    )
    ap.add_argument(
        "--readout",
        choices=("greedy", "expected"),
        default=None,
        help="default: the readout this model was benchmarked with, else greedy",
    )
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument(
        "--engine",
        choices=("transformers", "vllm"),
        default="transformers",
        help="transformers (in this process) or vllm (a scoring worker process; GPU environment)",
    )
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="--engine vllm: the interpreter that runs the scoring worker (default: this one)",
    )
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
        p = r["path"] if len(r["path"]) <= width else "…" + r["path"][-(width - 1) :]
        s = "" if r["score"] == "" else f"{float(r['score']):6.2f}"
        lines.append(f"{p:<{width}}  {s:>6}  {r['parse']}")
    if len(rows) > limit:
        lines.append(f"… {len(rows) - limit} more")
    scored = [float(r["score"]) for r in rows if r["score"] != ""]
    mean = f", mean {sum(scored) / len(scored):.2f}" if scored else ""
    lines.append(f"{len(scored)}/{len(rows)} parsed{mean}")
    return "\n".join(lines)


def _score_in_worker(model: Path, files: list[Path], args, readout: str) -> list[dict]:
    """CSV rows from a scoring worker (`tatar_core.scoring.worker`) run by `args.python` on `args.engine`."""
    import tempfile

    from data_contracts.parquet_io import read_records
    from data_contracts.records import ScoredRecord
    from tatar_core.scoring.worker import start_worker, write_spec

    with tempfile.TemporaryDirectory(prefix="tatar_score_") as tmp:
        spec = write_spec(
            Path(tmp) / "spec.json",
            engine=args.engine,
            models=[("model", model)],
            items=[(str(i), str(f.resolve()), args.task) for i, f in enumerate(files)],
            out="scores.parquet",
            scorer={
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "readout": readout,
                "draft_tokens": args.draft_tokens,
                "device": args.device,
            },
        )
        log = Path(tmp) / "worker.log"
        rc = start_worker(spec, python=args.python, log_file=log).wait()
        out = Path(tmp) / "scores.parquet"
        if rc != 0 or not out.exists():
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-8:])
            raise ScoreCliError(f"the {args.engine} scoring worker ({args.python}) exited with {rc}:\n{tail}")
        scored = {int(r.item): r for r in read_records(out, ScoredRecord)}
    rows = []
    for i, f in enumerate(files):
        r = scored[i]
        if r.parse == "unreadable":
            print(f"tatar score: skipped {f}: {r.error}", file=sys.stderr)
        rows.append(
            {
                "path": str(f),
                "task": args.task,
                "score": "" if r.score is None else f"{r.score:.2f}",
                "parse": r.parse,
                "n_words": r.n_words,
                "error": r.error if r.parse == "unreadable" else "",
            }
        )
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        model = _model_dir(args.model)
        files = _images(args.paths)
    except ScoreCliError as e:
        print(f"tatar score: error: {e}", file=sys.stderr)
        return 2
    from tatar_core.images import ImageLoadError, load_rgb
    from tatar_core.scoring.scorer import Scorer

    readout = args.readout
    if readout is None:
        found = benchmarked_readout(model)
        readout = found[0] if found else "greedy"
        print(
            f"tatar score: readout {readout}" + (f" (as benchmarked in {found[1]})" if found else ""), file=sys.stderr
        )
    if args.engine == "vllm":
        try:
            rows = _score_in_worker(model, files, args, readout)
        except ScoreCliError as e:
            print(f"tatar score: error: {e}", file=sys.stderr)
            return 2
    else:
        try:
            scorer = Scorer(
                model,
                batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens,
                readout=readout,
                device=args.device,
                draft_tokens=args.draft_tokens,
            )
        except ValueError as e:
            print(f"tatar score: error: {e}", file=sys.stderr)
            return 2
        by_index: dict[int, dict] = {}
        ok, images = [], []
        for i, f in enumerate(files):
            try:
                images.append(load_rgb(f))
                ok.append(i)
            except ImageLoadError as e:
                by_index[i] = {
                    "path": str(f),
                    "task": args.task,
                    "score": "",
                    "parse": "unreadable",
                    "n_words": 0,
                    "error": e.reason,
                }
                print(f"tatar score: skipped {e.path}: {e.reason}", file=sys.stderr)
        results = scorer.score(images, args.task, progress=True) if images else []
        for i, r in zip(ok, results):
            by_index[i] = {
                "path": str(files[i]),
                "task": args.task,
                "score": "" if r.score is None else f"{r.score:.2f}",
                "parse": r.parse,
                "n_words": r.n_words,
                "error": "",
            }
        rows = [by_index[i] for i in range(len(files))]
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
