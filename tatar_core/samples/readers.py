"""Readers of the datasets in their native formats (the spec table is `tatar_core.samples.specs`).

`load_dataset(src)` returns `LoadResult(samples, skipped)`. A missing or unreadable image, or a label
row that does not parse, becomes a `SkippedRecord` with its reason (the run goes on); a missing dataset
folder, label file or image folder is a `DatasetError` naming the expected path and files.

Splits (`src.split`): "train" / "test" keep that standard split; "all" keeps every row, each labelled
with its standard split. `src.split_file` (a list of the TEST images: a json list with "image" entries,
such as the TATAR/DeQA benchmark lists, or one name per line) replaces a spec's split rule; images are
matched by file name. A file that carries no split information at all (a "list", a "table" without a
`split` column) is taken whole as the requested split ("all" labels it "test").
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from data_contracts.config.samples import DatasetSource
from data_contracts.records import SampleRecord, SkippedRecord
from tatar_core.samples.specs import (
    HASH_TEST_FRACTION, IMAGE_EXTENSIONS, KADID_TEST_REFS, DatasetError, DatasetSpec, declared_scale, get_spec,
)

@dataclass(frozen=True)
class RawRow:
    """One label row before image checks: `image` is relative to the image folder (or absolute)."""

    image: str
    native: float
    ref_id: str
    where: str  # "file:line" for messages
    split: Optional[str] = None  # "train" | "test" | "validation" | None (no split information)
    attributes: str = ""


@dataclass
class ParsedLabels:
    rows: list[RawRow]
    bad: list[SkippedRecord]  # unparsable label rows


Reader = Callable[["_Ctx"], ParsedLabels]


@dataclass
class LoadResult:
    samples: list[SampleRecord]
    skipped: list[SkippedRecord]


# ----------------------------------------------------------------------------------------------- helpers


@dataclass
class _Ctx:
    src: DatasetSource
    spec: DatasetSpec
    root: Path
    label_paths: list[Path]
    display: str

    def bad(self, where: str, reason: str) -> SkippedRecord:
        return SkippedRecord(benchmark=self.display, item=where, reason=reason)


def hash_fraction(key: str) -> float:
    """A fixed pseudo-random number in [0, 1) from a string (sha1), for splits and subsets."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16**12)


def _float(text) -> Optional[float]:
    try:
        v = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _stem(name: str) -> str:
    return Path(name).stem


def _read_csv_rows(path: Path, delimiter: Optional[str] = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header + (line number, row dict) of a CSV; the delimiter is sniffed (comma, tab, semicolon) if not given."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = max([",", "\t", ";"], key=first.count)
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    return header, [(i + 2, row) for i, row in enumerate(reader)]


def _need_columns(path: Path, header: Sequence[str], cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (has {', '.join(header)})")


# ----------------------------------------------------------------------------------------------- readers
# Each reader parses the label file(s) into RawRows; a row that does not parse becomes a SkippedRecord.


def _read_koniq(ctx: _Ctx) -> ParsedLabels:
    path = ctx.label_paths[0]
    header, rows = _read_csv_rows(path)
    col = ctx.src.score_column or "MOS_zscore"  # its scale was checked by `declared_scale`
    _need_columns(path, header, ["image_name", col])
    out, bad = [], []
    for line, r in rows:
        where = f"{path.name}:{line}"
        v = _float(r.get(col))
        name = (r.get("image_name") or "").strip()
        if v is None or not name:
            bad.append(ctx.bad(where, f"unparsable label row (image_name={name!r}, {col}={r.get(col)!r})"))
            continue
        s = (r.get("set") or "").strip().lower() if "set" in header else ""
        split = {"training": "train", "train": "train", "validation": "validation", "val": "validation",
                 "test": "test"}.get(s)
        out.append(RawRow(name, v, _stem(name), where, split))
    return ParsedLabels(out, bad)


def _read_spaq(ctx: _Ctx) -> ParsedLabels:
    import openpyxl

    path = ctx.label_paths[0]
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:
        raise DatasetError(f"{path}: not a readable xlsx file: {e}") from None
    try:
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
    finally:
        wb.close()
    if not rows:
        raise DatasetError(f"{path}: empty sheet")
    header = [str(h).strip() if h is not None else "" for h in rows[0]]
    norm = {h.lower(): i for i, h in enumerate(header)}
    score_col = (ctx.src.score_column or "MOS").lower()
    if "image name" not in norm or score_col not in norm:
        raise DatasetError(f"{path}: expected columns 'Image name' and {score_col!r} (has {header})")
    ii, si = norm["image name"], norm[score_col]
    out, bad = [], []
    for k, row in enumerate(rows[1:], start=2):
        if row is None or all(c is None for c in row):
            continue
        where = f"{path.name}:{k}"
        name = str(row[ii]).strip() if ii < len(row) and row[ii] is not None else ""
        v = _float(row[si]) if si < len(row) else None
        if v is None or not name:
            bad.append(ctx.bad(where, f"unparsable label row (Image name={name!r}, MOS={row[si] if si < len(row) else None!r})"))
            continue
        out.append(RawRow(name, v, _stem(name), where, None))
    return ParsedLabels(out, bad)


def _read_kadid(ctx: _Ctx) -> ParsedLabels:
    path = ctx.label_paths[0]
    header, rows = _read_csv_rows(path)
    col = ctx.src.score_column or "dmos"
    _need_columns(path, header, ["dist_img", "ref_img", col])
    out, bad = [], []
    for line, r in rows:
        where = f"{path.name}:{line}"
        name, ref, v = (r.get("dist_img") or "").strip(), (r.get("ref_img") or "").strip(), _float(r.get(col))
        if v is None or not name or not ref:
            bad.append(ctx.bad(where, f"unparsable label row (dist_img={name!r}, ref_img={ref!r}, {col}={r.get(col)!r})"))
            continue
        ref_id = _stem(ref)
        out.append(RawRow(name, v, ref_id, where, "test" if ref_id in KADID_TEST_REFS else "train"))
    return ParsedLabels(out, bad)


def _read_pipal(ctx: _Ctx) -> ParsedLabels:
    out, bad = [], []
    for path in ctx.label_paths:
        for k, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{k}"
            parts = [p.strip() for p in re.split(r"[,\s]+", line.strip()) if p.strip()]
            v = _float(parts[1]) if len(parts) == 2 else None
            if v is None:
                bad.append(ctx.bad(where, f"unparsable label row {line.strip()!r} (expected 'name,elo')"))
                continue
            name = parts[0]
            ref_id = name.split("_")[0] if "_" in name else path.stem
            split = "test" if hash_fraction(f"pipal:{ref_id}") < HASH_TEST_FRACTION else "train"
            out.append(RawRow(name, v, ref_id, where, split))
    return ParsedLabels(out, bad)


def _json_items(path: Path) -> list:
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON: {e}") from None
    if isinstance(data, dict):  # {"images": [...]} style wrappers
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records")
    return data


_IMAGE_KEYS = ("image", "img_path", "image_path", "path")
_SCORE_KEYS = ("gt_score", "score", "mos")


def _json_rows(ctx: _Ctx, path: Path, split: Optional[str], image_key: Optional[str], score_key: Optional[str]
               ) -> ParsedLabels:
    out, bad = [], []
    for k, item in enumerate(_json_items(path)):
        where = f"{path.name}:[{k}]"
        if not isinstance(item, dict):
            bad.append(ctx.bad(where, f"unparsable label row (not an object: {str(item)[:60]!r})"))
            continue
        ik = image_key or next((c for c in _IMAGE_KEYS if c in item), None)
        sk = score_key or next((c for c in _SCORE_KEYS if c in item), None)
        name = str(item.get(ik, "")).strip() if ik else ""
        v = _float(item.get(sk)) if sk else None
        if v is None or not name:
            bad.append(ctx.bad(where, f"unparsable label row (image={name!r}, score={item.get(sk) if sk else None!r})"))
            continue
        attrs = item.get("aesthetic_attributes") or item.get("attributes") or ""
        attrs = json.dumps(attrs, ensure_ascii=False, sort_keys=True) if isinstance(attrs, dict) else ""
        out.append(RawRow(name, v, _stem(name), where, split, attrs))
    return ParsedLabels(out, bad)


def _split_of_file(ctx: _Ctx, path: Path) -> Optional[str]:
    """For specs whose split is the file (train.json / test.json)."""
    if ctx.src.label_file:
        return None
    return "test" if "test" in path.stem.lower() else "train"


def _read_artimuse(ctx: _Ctx) -> ParsedLabels:
    rows, bad = [], []
    for path in ctx.label_paths:
        p = _json_rows(ctx, path, _split_of_file(ctx, path), None, ctx.src.score_column)
        rows += p.rows
        bad += p.bad
    return ParsedLabels(rows, bad)


def _read_ava(ctx: _Ctx) -> ParsedLabels:
    path = ctx.label_paths[0]
    test_list = ctx.root / "aesthetics_image_lists" / "generic_test.jpgl"
    test_ids = set(test_list.read_text().split()) if test_list.exists() else None
    out, bad = [], []
    for k, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{k}"
        parts = line.split()
        try:
            if len(parts) < 12:
                raise ValueError(f"{len(parts)} fields")
            image_id = parts[1]
            votes = [int(x) for x in parts[2:12]]
            total = sum(votes)
            if total <= 0 or min(votes) < 0:
                raise ValueError("no votes")
        except ValueError as e:
            bad.append(ctx.bad(where, f"unparsable label row ({e}): {line.strip()[:60]!r}"))
            continue
        mean = sum((s + 1) * n for s, n in enumerate(votes)) / total
        split = None if test_ids is None else ("test" if image_id in test_ids else "train")
        out.append(RawRow(f"{image_id}.jpg", mean, image_id, where, split))
    return ParsedLabels(out, bad)


def _read_tad66k(ctx: _Ctx) -> ParsedLabels:
    out, bad = [], []
    for path in ctx.label_paths:
        header, rows = _read_csv_rows(path)
        col = ctx.src.score_column or "score"
        _need_columns(path, header, ["image", col])
        split = _split_of_file(ctx, path)
        for line, r in rows:
            where = f"{path.name}:{line}"
            name, v = (r.get("image") or "").strip(), _float(r.get(col))
            if v is None or not name:
                bad.append(ctx.bad(where, f"unparsable label row (image={name!r}, {col}={r.get(col)!r})"))
                continue
            out.append(RawRow(name, v, _stem(name), where, split))
    return ParsedLabels(out, bad)


def _read_flickr_aes(ctx: _Ctx) -> ParsedLabels:
    path = ctx.label_paths[0]
    out, bad = [], []
    for k, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{k}"
        parts = line.split()  # some names carry a leading space
        v = _float(parts[-1]) if len(parts) >= 2 else None
        if v is None:
            bad.append(ctx.bad(where, f"unparsable label row {line.strip()[:60]!r} (expected 'name score')"))
            continue
        name = " ".join(parts[:-1])
        out.append(RawRow(name, v, _stem(name), where, None))
    return ParsedLabels(out, bad)


def _read_list(ctx: _Ctx) -> ParsedLabels:
    path = ctx.label_paths[0]
    return _json_rows(ctx, path, None, ctx.src.image_column, ctx.src.score_column)


def _read_table(ctx: _Ctx) -> ParsedLabels:
    path = ctx.label_paths[0]
    icol, scol = ctx.src.image_column or "image", ctx.src.score_column or "score"
    if path.suffix.lower() == ".parquet":
        import polars as pl

        try:
            df = pl.read_parquet(path)
        except Exception as e:
            raise DatasetError(f"{path}: not a readable Parquet file: {e}") from None
        header = df.columns
        rows = [(i, {k: (None if v is None else str(v)) for k, v in r.items()})
                for i, r in enumerate(df.iter_rows(named=True))]
    else:
        header, rows = _read_csv_rows(path)
    _need_columns(path, header, [icol, scol])
    out, bad = [], []
    for line, r in rows:
        where = f"{path.name}:{line}"
        name, v = (r.get(icol) or "").strip(), _float(r.get(scol))
        if v is None or not name:
            bad.append(ctx.bad(where, f"unparsable label row ({icol}={name!r}, {scol}={r.get(scol)!r})"))
            continue
        split = None
        if "split" in header:
            split = (r.get("split") or "").strip().lower()
            if split not in ("train", "test"):
                bad.append(ctx.bad(where, f"unparsable label row (split={r.get('split')!r}, expected train/test)"))
                continue
        out.append(RawRow(name, v, _stem(name), where, split))
    return ParsedLabels(out, bad)


_READERS: dict[str, Callable[[_Ctx], ParsedLabels]] = {
    "koniq": _read_koniq, "spaq": _read_spaq, "kadid": _read_kadid, "pipal": _read_pipal,
    "artimuse": _read_artimuse, "ava": _read_ava, "tad66k": _read_tad66k, "flickr_aes": _read_flickr_aes,
    "list": _read_list, "table": _read_table,
}

# ----------------------------------------------------------------------------------------------- load


def _label_paths(src: DatasetSource, spec: DatasetSpec, root: Path) -> list[Path]:
    if src.label_file:
        p = root / src.label_file
        if not p.is_file():
            raise DatasetError(f"{spec.name}: label file {p} not found")
        return [p]
    if not spec.label_files:
        raise DatasetError(f"{spec.name}: label_file is required (the {spec.format} file, relative to {root})")
    if spec.reader in ("artimuse", "tad66k"):  # the split is the file
        want = [f for f in spec.label_files if src.split == "all" or src.split in Path(f).stem]
        found = [root / f for f in want if (root / f).is_file()]
        if src.split == "all" and found:
            return found
        if len(found) == len(want):
            return found
        raise DatasetError(f"{spec.name}: label file(s) not found: {', '.join(str(root / f) for f in want)}")
    if any(ch in f for f in spec.label_files for ch in "*?["):
        found = sorted(p for f in spec.label_files for p in root.glob(f) if p.is_file())
        if not found:
            raise DatasetError(f"{spec.name}: no label files matching {', '.join(str(root / f) for f in spec.label_files)}")
        return found
    for f in spec.label_files:
        if (root / f).is_file():
            return [root / f]
    raise DatasetError(f"{spec.name}: label file not found; expected one of: "
                       f"{', '.join(str(root / f) for f in spec.label_files)}")


def _image_dirs(src: DatasetSource, spec: DatasetSpec, root: Path) -> list[Path]:
    if src.image_dir is not None:
        d = root / src.image_dir
        if not d.is_dir():
            raise DatasetError(f"{spec.name}: image folder {d} not found")
        return [d]
    dirs = [root / d for d in spec.image_dirs if (root / d).is_dir()]
    if not dirs:
        raise DatasetError(f"{spec.name}: image folder not found; expected "
                           f"{' or '.join(str(root / d) for d in spec.image_dirs)}")
    if spec.reader == "pipal":
        return dirs  # images are spread over Distortion_1..4
    return dirs[:1]


def read_split_file(path: Path) -> set[str]:
    """File names listed in a split file: a json list (objects with 'image'/'img_path', or strings) or text lines."""
    if not path.is_file():
        raise DatasetError(f"split_file {path} not found")
    if path.suffix.lower() in (".json", ".jsonl"):
        names = set()
        for item in _json_items(path):
            if isinstance(item, dict):
                key = next((k for k in _IMAGE_KEYS if k in item), None)
                if key is None:
                    raise DatasetError(f"{path}: split-file entries need an 'image' key, got {sorted(item)}")
                names.add(Path(str(item[key]).strip()).name)
            else:
                names.add(Path(str(item).strip()).name)
        return names
    names = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        tok = re.split(r"[,\s]+", line.strip())[0] if line.strip() else ""
        if tok:
            names.add(Path(tok).name)
    return names


def _resolve_split(spec: DatasetSpec, src: DatasetSource, rows: list[RawRow], split_names: Optional[set[str]]
                   ) -> list[tuple[RawRow, str]]:
    """(row, "train"|"test") for the rows in the requested split."""
    out = []
    for r in rows:
        if split_names is not None:
            s = "test" if Path(r.image).name in split_names or Path(r.image).stem in split_names else "train"
        elif r.split is not None:
            s = r.split
        elif spec.reader == "spaq":
            s = "test" if hash_fraction(f"spaq:{r.image}") < HASH_TEST_FRACTION else "train"
        else:
            s = None
        if s is None:  # no split information: the whole file is the requested split
            if spec.reader in ("ava", "flickr_aes", "koniq") and src.split != "all":
                hint = {"ava": "aesthetics_image_lists/generic_test.jpgl", "koniq": "a 'set' column",
                        "flickr_aes": "the held-out workers' image list"}[spec.reader]
                raise DatasetError(f"{spec.name}: no standard {src.split} split found (needs {hint}); "
                                   "give split_file=<list of the test images> or split=all")
            s = src.split if src.split != "all" else "test"
        if s == "validation":
            if src.split != "all":
                continue
            s = "train"
        if src.split == "all" or s == src.split:
            out.append((r, s))
    return out


def select_subset(keys: Sequence[str], n: Optional[int]) -> list[int]:
    """Indices of a fixed pseudo-random subset of size n (by hash of each key), in the original order."""
    if n is None or n >= len(keys):
        return list(range(len(keys)))
    order = sorted(range(len(keys)), key=lambda i: (hash_fraction(keys[i]), keys[i]))
    return sorted(order[: max(0, n)])


def check_image(path: Path) -> Optional[str]:
    """None if `path` opens as an image (header + structure check, no full decode), else the reason."""
    if not path.is_file():
        return "image not found"
    try:
        with Image.open(path) as im:
            im.verify()
    except UnidentifiedImageError:
        return "corrupt image: not a recognised image format"
    except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
        return f"corrupt image: {type(e).__name__}: {e}"
    return None


class _ImageIndex:
    """Find an image by its name in one or more folders (names relative to the folder; absolute paths kept)."""

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs
        self._by_name: Optional[dict[str, Path]] = None

    def find(self, name: str) -> Path:
        p = Path(name)
        if p.is_absolute():
            return p
        if len(self.dirs) == 1:
            return self.dirs[0] / p
        for d in self.dirs:
            if (d / p).exists():
                return d / p
        if self._by_name is None:
            self._by_name = {}
            for d in self.dirs:
                for dirpath, _, files in os.walk(d):
                    for f in files:
                        self._by_name.setdefault(f, Path(dirpath) / f)
        return self._by_name.get(p.name, self.dirs[0] / p)


def load_dataset(src: DatasetSource, check_images: bool = True, progress: bool = True) -> LoadResult:
    """Load a dataset in its native format: scores on 0–100 by the declared scale, bad rows skipped with reasons.

    Raises `DatasetError` for a missing dataset folder / label file / image folder or an invalid source.
    """
    spec = get_spec(src.name)
    display = src.alias or src.name
    task = spec.task or src.task
    if task is None:
        raise DatasetError(f"{src.name}: task (iqa|iaa) is required for this source")
    if spec.task is not None and src.task is not None and src.task != spec.task:
        raise DatasetError(f"{src.name}: is an {spec.task} dataset, the source says task={src.task!r}")
    root = Path(src.root).expanduser()
    if not root.is_dir():
        expected = ", ".join(spec.label_files) or "the label file"
        raise DatasetError(f"{src.name}: dataset folder {root} not found (expected {expected} and "
                           f"{' or '.join(d + '/' for d in spec.image_dirs if d) or 'the images'} inside)")
    scale = declared_scale(src, spec)
    ctx = _Ctx(src, spec, root, _label_paths(src, spec, root), display)
    dirs = _image_dirs(src, spec, root)
    parsed = _READERS[spec.reader](ctx)
    split_names = read_split_file(root / src.split_file) if src.split_file else None
    chosen = _resolve_split(spec, src, parsed.rows, split_names)

    index = _ImageIndex(dirs)
    ids = [f"{display}:{r.image}" for r, _ in chosen]
    keep = select_subset(ids, src.max_items)
    samples: list[SampleRecord] = []
    skipped = list(parsed.bad)
    seen: set[str] = set()
    rows = [(chosen[i], ids[i]) for i in keep]
    for (r, split), sid in tqdm(rows, desc=f"load {display}", unit="img", disable=not progress or len(rows) < 2000):
        path = index.find(r.image).resolve()
        if sid in seen:
            skipped.append(ctx.bad(r.where, f"duplicate image {r.image!r}"))
            continue
        seen.add(sid)
        reason = check_image(path) if check_images else None
        if reason is not None:
            skipped.append(SkippedRecord(benchmark=display, item=str(path), reason=reason))
            continue
        meta = {"native": r.native, "scale": [scale.low, scale.high, scale.higher_is_better], "row": r.where}
        samples.append(SampleRecord(
            sample_id=sid, image_path=str(path), task=task, score=scale.to_100(r.native), split=split,
            source=display, ref_id=f"{display}:{r.ref_id}", attributes=r.attributes, meta=json.dumps(meta),
        ))
    return LoadResult(samples, skipped)


def iter_image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Image files among `paths` (files as given, folders searched recursively), sorted per folder."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


__all__ = [
    "LoadResult", "load_dataset", "read_split_file", "select_subset", "check_image", "hash_fraction",
    "iter_image_files",
]
