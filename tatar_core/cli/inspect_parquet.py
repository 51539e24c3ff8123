"""`tatar inspect PATH.parquet`: a readable summary of any Parquet file the pipeline writes.

Shows: file size and row count, the schema, rows by task (and split/source/parse/benchmark when present),
words per rationale per task (min / p25 / median / p75 / max, from `n_words`, else counted from `rationale`
or `completion`), rejection reasons (counts by code, from a `reasons` column), failed-row errors, and a few
sample rows with long texts truncated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import polars as pl

MAX_CELL = 160


def _cell(v) -> str:
    s = " ".join(str(v).split()) if isinstance(v, str) else repr(v) if isinstance(v, (list, dict)) else str(v)
    return s if len(s) <= MAX_CELL else s[: MAX_CELL - 1] + "…"


def _counts(df: pl.DataFrame, cols: list[str]) -> list[str]:
    g = df.group_by(cols).agg(pl.len().alias("rows")).sort(cols)
    return [f"  {', '.join(f'{c}={r[c]}' for c in cols)}: {r['rows']}" for r in g.iter_rows(named=True)]


def _words(df: pl.DataFrame) -> Optional[pl.Expr]:
    if "n_words" in df.columns:
        return pl.col("n_words").cast(pl.Float64)
    for c in ("rationale", "completion"):
        if c in df.columns and df.schema[c] == pl.Utf8:
            return (
                pl.col(c)
                .fill_null("")
                .str.split(" ")
                .list.eval(pl.element().filter(pl.element() != ""))
                .list.len()
                .cast(pl.Float64)
            )
    return None


def inspect_parquet(path: str | Path, n_rows: int = 3) -> str:
    """A multi-line text summary of the Parquet file at `path`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable Parquet file: {e}") from None
    out = [f"{path}  ({path.stat().st_size:,} bytes, {df.height} rows, {df.width} columns)", "", "schema:"]
    out += [f"  {name}: {dtype}" for name, dtype in df.schema.items()]

    group_cols = [c for c in ("benchmark", "task", "split", "source", "parse") if c in df.columns]
    if df.height and group_cols:
        keys = [c for c in ("benchmark", "task") if c in group_cols] or group_cols[:1]
        out += ["", f"rows by {' / '.join(keys)}:"] + _counts(df, keys)
        for extra in (c for c in group_cols if c not in keys):
            out += ["", f"rows by {extra}:"] + _counts(df, [extra])

    w = _words(df)
    if df.height and w is not None:
        by = ["task"] if "task" in df.columns else []
        q = lambda p: pl.col("_w").quantile(p, interpolation="linear")  # noqa: E731 - as numpy's default
        aggs = [
            pl.len().alias("n"),
            pl.col("_w").min().alias("min"),
            q(0.25).alias("p25"),
            pl.col("_w").median().alias("median"),
            q(0.75).alias("p75"),
            pl.col("_w").max().alias("max"),
            pl.col("_w").mean().alias("mean"),
        ]
        dw = df.with_columns(w.alias("_w"))
        stats = dw.group_by(by).agg(aggs).sort(by) if by else dw.select(aggs)
        out += ["", "words per rationale (min / p25 / median / p75 / max, mean):"]
        for r in stats.iter_rows(named=True):
            label = r.get("task", "all")
            out.append(
                f"  {label}: {r['min']:.0f} / {r['p25']:.0f} / {r['median']:.0f} / {r['p75']:.0f} / "
                f"{r['max']:.0f}, mean {r['mean']:.1f} (n={r['n']})"
            )

    if df.height and "reasons" in df.columns and isinstance(df.schema["reasons"], pl.List):
        from tatar_core.filtered.stage import reason_code

        keys = [c for c in ("task",) if c in df.columns] + ["reason"]
        codes = (
            df.with_row_index("_row")
            .select(["_row", *keys[:-1], "reasons"])
            .explode("reasons")
            .drop_nulls("reasons")
            .with_columns(pl.col("reasons").map_elements(reason_code, return_dtype=pl.Utf8).alias("reason"))
        )
        g = (
            codes.unique(subset=["_row", "reason"])
            .group_by(keys)
            .agg(pl.len().alias("n"))
            .sort([*keys[:-1], "n"], descending=[False] * (len(keys) - 1) + [True])
        )
        out += ["", "rejection reasons (rows per reason code):"]
        out += [f"  {', '.join(str(r[k]) for k in keys)}: {r['n']}" for r in g.iter_rows(named=True)]

    if df.height and "error" in df.columns:
        g = (
            df.with_columns(pl.col("error").str.slice(0, 80).alias("_e"))
            .group_by("_e")
            .agg(pl.len().alias("n"))
            .sort("n", descending=True)
            .head(10)
        )
        out += ["", "errors (first 80 characters, most frequent first):"]
        out += [f"  {r['n']} × {r['_e']}" for r in g.iter_rows(named=True)]

    if df.height and n_rows > 0:
        out += ["", f"first {min(n_rows, df.height)} rows:"]
        for i, r in enumerate(df.head(n_rows).iter_rows(named=True)):
            out.append(f"  [{i}]")
            out += [f"    {k}: {_cell(v)}" for k, v in r.items()]
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: `tatar inspect PATH.parquet [-n N]`."""
    ap = argparse.ArgumentParser(prog="tatar inspect", description="Summarize a pipeline Parquet file.")
    ap.add_argument("path", nargs="+", help="Parquet file(s)")
    ap.add_argument("-n", "--rows", type=int, default=3, help="sample rows to show (default 3)")
    args = ap.parse_args(argv)
    rc = 0
    for i, p in enumerate(args.path):
        try:
            print(("\n" if i else "") + inspect_parquet(p, args.rows))
        except (FileNotFoundError, ValueError) as e:
            print(f"tatar inspect: {e}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
