"""The field names of trl's `SFTConfig` / `GRPOConfig` and of their bases, read from the installed sources with
`ast` (importing trl would import torch, and `tatar plan` must validate a config in about a second).

A class's fields are the annotated names of its body and of its bases, followed through the `import` lines of
each module (relative or absolute, e.g. `SFTConfig(_BaseConfig)` -> `_BaseConfig(TrainingArguments)`).
"""

from __future__ import annotations

import ast
import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

TRL_CONFIGS = {"sft": ("trl.trainer.sft_config", "SFTConfig"), "grpo": ("trl.trainer.grpo_config", "GRPOConfig")}


def _module_path(module: str) -> Path:
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{top} is not installed")
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*rest)
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"


_PARSE_LOCK = threading.Lock()
PARSE_ATTEMPTS = 3


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    """`ast.parse` of a source file, one at a time and retried: on CPython 3.11 a parse that overlaps another thread's
    (a flow-run process has several) can fail with a spurious `SystemError: AST constructor recursion depth mismatch`
    (python/cpython#106905); the next parse starts from a clean count."""
    source = path.read_text(encoding="utf-8")
    with _PARSE_LOCK:
        for attempt in range(1, PARSE_ATTEMPTS + 1):
            try:
                return ast.parse(source, filename=str(path))
            except SystemError:
                if attempt == PARSE_ATTEMPTS:
                    raise


def _class_fields(module: str, name: str) -> set[str]:
    path = _module_path(module)
    tree = _parse(path)
    imports: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
            src = node.module or ""
            if node.level:
                parts = pkg.split(".")
                src = ".".join(parts[: len(parts) - node.level + 1] + ([src] if src else []))
            for a in node.names:
                imports[a.asname or a.name] = src
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            out = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
            for b in node.bases:
                if isinstance(b, ast.Name):
                    out |= _class_fields(_resolve(imports.get(b.id, module), b.id), b.id)
            return out
    raise LookupError(f"class {name} not found in {path}")


def _resolve(module: str, name: str) -> str:
    """The module that defines `name` when `module` re-exports it (e.g. `from transformers import
    TrainingArguments`)."""
    if module == "transformers":  # a lazy-import package: TrainingArguments lives in transformers.training_args
        return "transformers.training_args"
    if any(isinstance(n, ast.ClassDef) and n.name == name for n in _parse(_module_path(module)).body):
        return module
    raise LookupError(f"cannot locate class {name} re-exported by {module}")


@lru_cache(maxsize=None)
def trainer_fields(stage: str) -> frozenset[str]:
    """Every field of trl's config class for `stage` ("sft" | "grpo"), TrainingArguments' included."""
    module, name = TRL_CONFIGS[stage]
    return frozenset(_class_fields(module, name))
