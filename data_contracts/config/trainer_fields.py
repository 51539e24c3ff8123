"""The field names of trl's `SFTConfig` / `GRPOConfig` and of their bases, read from the installed sources with
`ast` (importing trl would import torch, and `tatar plan` must validate a config in about a second).

A class's fields are the annotated names of its body and of its bases, followed through the `import` lines of
each module (relative or absolute, e.g. `SFTConfig(_BaseConfig)` -> `_BaseConfig(TrainingArguments)`).
"""
from __future__ import annotations

import ast
import importlib.util
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


def _class_fields(module: str, name: str) -> set[str]:
    path = _module_path(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
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
    """The module that defines `name` when `module` re-exports it (e.g. `from transformers import TrainingArguments`)."""
    path = _module_path(module)
    if any(isinstance(n, ast.ClassDef) and n.name == name for n in ast.parse(path.read_text(encoding="utf-8")).body):
        return module
    if module == "transformers":  # a lazy-import package: TrainingArguments lives in transformers.training_args
        return "transformers.training_args"
    raise LookupError(f"cannot locate class {name} re-exported by {module}")


@lru_cache(maxsize=None)
def trainer_fields(stage: str) -> frozenset[str]:
    """Every field of trl's config class for `stage` ("sft" | "grpo"), TrainingArguments' included."""
    module, name = TRL_CONFIGS[stage]
    return frozenset(_class_fields(module, name))
