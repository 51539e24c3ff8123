"""The draft corpus saved with a checkpoint: the training targets the scorer's speculative decoding drafts from.

`draft_corpus.jsonl` in a model folder holds one `{"task": "iqa"|"iaa", "text": target}` per line: the SFT
targets (`<think>…</think><answer>NN.NN</answer>`), at most `MAX_PER_TASK` per task, in sample_id order.
SFT writes it next to the weights; GRPO copies it from the model it starts from. It only speeds scoring up
(drafts are verified against the model's own greedy tokens); a folder without it scores the same.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

FILE_NAME = "draft_corpus.jsonl"
MAX_PER_TASK = 512


def write_corpus(model_dir: Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    """Write distinct `(sample_id, task, target)` rows (the first MAX_PER_TASK per task by sample_id) to model_dir."""
    from data_contracts.files import atomic_write_text  # here: the scorer imports this module without pydantic

    kept: dict[str, list[tuple[str, str]]] = {}
    for sample_id, task, text in sorted(set(rows)):
        if len(kept.setdefault(task, [])) < MAX_PER_TASK:
            kept[task].append((sample_id, text))
    lines = [
        json.dumps({"task": task, "text": text}, ensure_ascii=False) + "\n"
        for task in sorted(kept)
        for _, text in kept[task]
    ]
    return atomic_write_text(Path(model_dir) / FILE_NAME, "".join(lines))


def copy_corpus(src_model_dir: Path, dst_model_dir: Path) -> bool:
    """Copy the corpus from one model folder to another; False when the source has none."""
    from data_contracts.files import atomic_write

    src = Path(src_model_dir) / FILE_NAME
    if not src.is_file():
        return False
    atomic_write(Path(dst_model_dir) / FILE_NAME, lambda tmp: shutil.copyfile(src, tmp))
    return True


def read_corpus(model_dir: Path) -> dict[str, list[str]]:
    """{task: [text, ...]} from model_dir; {} when the folder has no corpus. A bad line names file and line."""
    path = Path(model_dir) / FILE_NAME
    if not path.is_file():
        return {}
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.setdefault(str(row["task"]), []).append(str(row["text"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: line {n} is not a {{'task', 'text'}} JSON object ({e})") from e
    return out


__all__ = ["FILE_NAME", "MAX_PER_TASK", "write_corpus", "copy_corpus", "read_corpus"]
