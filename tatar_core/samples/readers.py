"""Readers of the datasets in their native formats (the spec table is `tatar_core.samples.specs`).

`load_dataset(src)` returns `LoadResult(samples, skipped)`. A missing image or one that does not decode fully
(`images.load_rgb`: truncated, not an image, too large; each image is decoded once here), or a label row that does
not parse, becomes a `SkippedRecord` with its reason and split (the run goes on). An unparsable label row is
reported only by loads of the split it belongs to; one whose split cannot be told (e.g. no image name) is listed
with split "unknown" and counted in no split's skipped count. A missing dataset folder, label file or image folder
is a `DatasetError` naming the expected path and files; `check_source` runs those checks alone (`tatar plan`).

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

from tqdm import tqdm

from data_contracts.config.samples import DatasetSource
from data_contracts.records import SampleRecord, SkippedRecord
from tatar_core.images import ImageLoadError, load_rgb
from tatar_core.samples.specs import (
    HASH_TEST_FRACTION,
    IMAGE_EXTENSIONS,
    KADID_TEST_REFS,
    DatasetError,
    DatasetSpec,
    declared_scale,
    get_spec,
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
    group: str = ""  # distortion type (IQA) or manipulation (IAA): the report's per-group metrics


@dataclass(frozen=True)
class BadRow:
    """A label row that does not parse, with what is known of it: its image name and split (None: not in the row),
    so that it is reported once, in its own split (`_row_split`), or under "unknown"."""

    record: SkippedRecord
    image: str = ""
    split: Optional[str] = None


@dataclass
class ParsedLabels:
    rows: list[RawRow]
    bad: list[BadRow]  # unparsable label rows


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

    def bad(self, where: str, reason: str, image: str = "", split: Optional[str] = None) -> BadRow:
        return BadRow(SkippedRecord(benchmark=self.display, item=where, reason=reason), image, split)


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
        s = (r.get("set") or "").strip().lower() if "set" in header else ""
        split = {
            "training": "train",
            "train": "train",
            "validation": "validation",
            "val": "validation",
            "test": "test",
        }.get(s)
        if v is None or not name:
            bad.append(
                ctx.bad(where, f"unparsable label row (image_name={name!r}, {col}={r.get(col)!r})", name, split)
            )
            continue
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
            bad.append(
                ctx.bad(
                    where,
                    f"unparsable label row (Image name={name!r}, MOS={row[si] if si < len(row) else None!r})",
                    name,
                )
            )
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
            split = None if not ref else ("test" if _stem(ref) in KADID_TEST_REFS else "train")
            bad.append(
                ctx.bad(
                    where,
                    f"unparsable label row (dist_img={name!r}, ref_img={ref!r}, {col}={r.get(col)!r})",
                    name,
                    split,
                )
            )
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
            name = parts[0] if parts else ""
            ref_id = name.split("_")[0] if "_" in name else path.stem
            split = "test" if hash_fraction(f"pipal:{ref_id}") < HASH_TEST_FRACTION else "train"
            if v is None:
                bad.append(
                    ctx.bad(
                        where,
                        f"unparsable label row {line.strip()!r} (expected 'name,elo')",
                        name,
                        split if name else None,
                    )
                )
                continue
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


def _json_rows(
    ctx: _Ctx, path: Path, split: Optional[str], image_key: Optional[str], score_key: Optional[str]
) -> ParsedLabels:
    out, bad = [], []
    for k, item in enumerate(_json_items(path)):
        where = f"{path.name}:[{k}]"
        if not isinstance(item, dict):
            bad.append(ctx.bad(where, f"unparsable label row (not an object: {str(item)[:60]!r})", "", split))
            continue
        ik = image_key or next((c for c in _IMAGE_KEYS if c in item), None)
        sk = score_key or next((c for c in _SCORE_KEYS if c in item), None)
        name = str(item.get(ik, "")).strip() if ik else ""
        v = _float(item.get(sk)) if sk else None
        if v is None or not name:
            bad.append(
                ctx.bad(
                    where,
                    f"unparsable label row (image={name!r}, score={item.get(sk) if sk else None!r})",
                    name,
                    split,
                )
            )
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
            iid = parts[1] if len(parts) > 1 else ""
            split = None if test_ids is None or not iid else ("test" if iid in test_ids else "train")
            bad.append(
                ctx.bad(
                    where, f"unparsable label row ({e}): {line.strip()[:60]!r}", f"{iid}.jpg" if iid else "", split
                )
            )
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
                bad.append(ctx.bad(where, f"unparsable label row (image={name!r}, {col}={r.get(col)!r})", name, split))
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
            name = " ".join(parts[:-1]) if len(parts) >= 2 else ""
            bad.append(ctx.bad(where, f"unparsable label row {line.strip()[:60]!r} (expected 'name score')", name))
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
        rows = [
            (i, {k: (None if v is None else str(v)) for k, v in r.items()})
            for i, r in enumerate(df.iter_rows(named=True))
        ]
    else:
        header, rows = _read_csv_rows(path)
    _need_columns(path, header, [icol, scol])
    out, bad = [], []
    for line, r in rows:
        where = f"{path.name}:{line}"
        name, v = (r.get(icol) or "").strip(), _float(r.get(scol))
        split = None  # no split column: the file is the requested split
        if "split" in header:
            split = (r.get("split") or "").strip().lower()
            split = split if split in ("train", "test") else UNKNOWN_SPLIT
        if v is None or not name:
            bad.append(ctx.bad(where, f"unparsable label row ({icol}={name!r}, {scol}={r.get(scol)!r})", name, split))
            continue
        if split == UNKNOWN_SPLIT:
            bad.append(
                ctx.bad(where, f"unparsable label row (split={r.get('split')!r}, expected train/test)", name, split)
            )
            continue
        ref = (r.get("ref") or "").strip() or _stem(name)
        out.append(RawRow(name, v, ref, where, split, group=(r.get("type") or "").strip()))
    return ParsedLabels(out, bad)


_READERS: dict[str, Callable[[_Ctx], ParsedLabels]] = {
    "koniq": _read_koniq,
    "spaq": _read_spaq,
    "kadid": _read_kadid,
    "pipal": _read_pipal,
    "artimuse": _read_artimuse,
    "ava": _read_ava,
    "tad66k": _read_tad66k,
    "flickr_aes": _read_flickr_aes,
    "list": _read_list,
    "table": _read_table,
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
            raise DatasetError(
                f"{spec.name}: no label files matching {', '.join(str(root / f) for f in spec.label_files)}"
            )
        return found
    for f in spec.label_files:
        if (root / f).is_file():
            return [root / f]
    raise DatasetError(
        f"{spec.name}: label file not found; expected one of: {', '.join(str(root / f) for f in spec.label_files)}"
    )


def _image_dirs(src: DatasetSource, spec: DatasetSpec, root: Path) -> list[Path]:
    if src.image_dir is not None:
        d = root / src.image_dir
        if not d.is_dir():
            raise DatasetError(f"{spec.name}: image folder {d} not found")
        return [d]
    dirs = [root / d for d in spec.image_dirs if (root / d).is_dir()]
    if not dirs:
        raise DatasetError(
            f"{spec.name}: image folder not found; expected {' or '.join(str(root / d) for d in spec.image_dirs)}"
        )
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


UNKNOWN_SPLIT = "unknown"
_ROW_SPLIT_READERS = ("koniq", "kadid", "pipal", "spaq", "ava", "flickr_aes")  # each row's split is in the row


def _row_split(
    spec: DatasetSpec, src: DatasetSource, image: str, split: Optional[str], split_names: Optional[set[str]]
) -> Optional[str]:
    """The split of one label row: from the split file (by image name), the row itself, SPAQ's hash of the name,
    or the whole file's split (a file without per-row split information is the requested split); None when the
    row does not tell (e.g. its image name did not parse)."""
    if split == UNKNOWN_SPLIT:
        return None
    if split_names is not None:
        if not image:
            return None
        return "test" if Path(image).name in split_names or Path(image).stem in split_names else "train"
    if split is not None:
        return split
    if spec.reader == "spaq":
        return ("test" if hash_fraction(f"spaq:{image}") < HASH_TEST_FRACTION else "train") if image else None
    if spec.reader in _ROW_SPLIT_READERS:
        return None
    return src.split if src.split != "all" else "test"


def _bad_rows(
    spec: DatasetSpec, src: DatasetSource, bad: list[BadRow], split_names: Optional[set[str]]
) -> list[SkippedRecord]:
    """The unparsable label rows that belong to the requested split (all with split "all"), each tagged with its
    split, plus those whose split cannot be told, tagged "unknown" (counted in no split's skipped count)."""
    out = []
    for b in bad:
        s = _row_split(spec, src, b.image, b.split, split_names)
        s = s or UNKNOWN_SPLIT  # a validation row is reported with split "all" only, as its rows are loaded
        if src.split == "all" or s in (src.split, UNKNOWN_SPLIT):
            out.append(b.record.model_copy(update={"split": s}))
    return out


def _resolve_split(
    spec: DatasetSpec, src: DatasetSource, rows: list[RawRow], split_names: Optional[set[str]]
) -> list[tuple[RawRow, str]]:
    """(row, "train"|"test") for the rows in the requested split."""
    out = []
    for r in rows:
        s = _row_split(spec, src, r.image, r.split, split_names)
        if s is None:  # no split information: the whole file is the requested split
            if spec.reader in ("ava", "flickr_aes", "koniq") and src.split != "all":
                hint = {
                    "ava": "aesthetics_image_lists/generic_test.jpgl",
                    "koniq": "a 'set' column",
                    "flickr_aes": "the held-out workers' image list",
                }[spec.reader]
                raise DatasetError(
                    f"{spec.name}: no standard {src.split} split found (needs {hint}); "
                    "give split_file=<list of the test images> or split=all"
                )
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
    """None if `path` decodes fully as the stages will read it (`images.load_rgb`), else the reason (so a truncated
    file is skipped here, once, instead of failing a later stage on every rerun)."""
    if not Path(path).is_file():
        return "image not found"
    try:
        load_rgb(path)
    except ImageLoadError as e:
        return e.reason
    return None


def image_problems(paths: Sequence[Path], progress: bool = False, desc: str = "decode") -> list[Optional[str]]:
    """`check_image` of every path, decoded on a few threads (PIL releases the GIL while decoding), in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        it = pool.map(check_image, paths)
        return list(tqdm(it, total=len(paths), desc=desc, unit="img", disable=not progress or len(paths) < 2000))


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


@dataclass(frozen=True)
class _Resolved:
    spec: DatasetSpec
    task: str
    root: Path
    scale: object
    label_paths: list[Path]
    image_dirs: list[Path]


def _resolve(src: DatasetSource) -> _Resolved:
    """The checks a source passes before any label row or image is read (known name, task, scale, dataset folder,
    label file(s), image folder(s), split file); DatasetError naming what is missing."""
    spec = get_spec(src.name)
    task = spec.task or src.task
    if task is None:
        raise DatasetError(f"{src.name}: task (iqa|iaa) is required for this source")
    if spec.task is not None and src.task is not None and src.task != spec.task:
        raise DatasetError(f"{src.name}: is an {spec.task} dataset, the source says task={src.task!r}")
    root = Path(src.root).expanduser()
    if not root.is_dir():
        expected = ", ".join(spec.label_files) or "the label file"
        raise DatasetError(
            f"{src.name}: dataset folder {root} not found (expected {expected} and "
            f"{' or '.join(d + '/' for d in spec.image_dirs if d) or 'the images'} inside)"
        )
    scale = declared_scale(src, spec)
    labels, dirs = _label_paths(src, spec, root), _image_dirs(src, spec, root)
    if src.split_file and not (root / src.split_file).is_file():
        raise DatasetError(f"{src.name}: split_file {root / src.split_file} not found")
    return _Resolved(spec, task, root, scale, labels, dirs)


def check_source(src: DatasetSource) -> Optional[str]:
    """None when `load_dataset(src)` would find everything it needs (without reading labels or images, as
    `tatar plan` runs it), else the DatasetError message it would raise."""
    try:
        _resolve(src)
    except DatasetError as e:
        return str(e)
    return None


def load_dataset(src: DatasetSource, check_images: bool = True, progress: bool = True) -> LoadResult:
    """Load a dataset in its native format: scores on 0–100 by the declared scale, bad rows skipped with reasons.

    Raises `DatasetError` for a missing dataset folder / label file / image folder or an invalid source.
    """
    res = _resolve(src)
    spec, task, root, scale, dirs = res.spec, res.task, res.root, res.scale, res.image_dirs
    display = src.alias or src.name
    ctx = _Ctx(src, spec, root, res.label_paths, display)
    parsed = _READERS[spec.reader](ctx)
    split_names = read_split_file(root / src.split_file) if src.split_file else None
    chosen = _resolve_split(spec, src, parsed.rows, split_names)

    index = _ImageIndex(dirs)
    ids = [f"{display}:{r.image}" for r, _ in chosen]
    keep = select_subset(ids, src.max_items)
    samples: list[SampleRecord] = []
    skipped = _bad_rows(spec, src, parsed.bad, split_names)
    seen: set[str] = set()
    rows = []
    for i in keep:
        (r, split), sid = chosen[i], ids[i]
        if sid in seen:
            skipped.append(ctx.bad(r.where, f"duplicate image {r.image!r}").record.model_copy(update={"split": split}))
            continue
        seen.add(sid)
        rows.append((r, split, sid, index.find(r.image).resolve()))
    reasons = (
        image_problems([p for *_, p in rows], progress, f"decode {display}") if check_images else [None] * len(rows)
    )
    for (r, split, sid, path), reason in zip(rows, reasons):
        if reason is not None:
            skipped.append(SkippedRecord(benchmark=display, item=str(path), reason=reason, split=split))
            continue
        meta = {
            "native": r.native,
            "scale": [scale.low, scale.high, scale.higher_is_better],
            "row": r.where,
            **({"type": r.group} if r.group else {}),
        }
        samples.append(
            SampleRecord(
                sample_id=sid,
                image_path=str(path),
                task=task,
                score=scale.to_100(r.native),
                split=split,
                source=display,
                ref_id=f"{display}:{r.ref_id}",
                attributes=r.attributes,
                meta=json.dumps(meta),
            )
        )
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
    "LoadResult",
    "load_dataset",
    "check_source",
    "read_split_file",
    "select_subset",
    "check_image",
    "image_problems",
    "hash_fraction",
    "iter_image_files",
]
