"""Code versions read from the imports: the hash of the project modules a module really imports.

    import_closure(m) = m's source file + every `tatar_core` / `data_contracts` module it imports (absolute or
                        relative, lazy imports inside functions included; read with `ast`, nothing is imported),
                        transitively, + the `__init__.py` of every package on the way
    files_version(fs) = sha256 over (path relative to the project root, bytes) of the files, 16 hex digits

Stage cache keys (`tatar_core.pipeline.keys`) and the embedded model's build folder (`tatar_core.models.loading`)
use it, so no hand-kept module list can go stale. This module imports nothing of the project.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("tatar_core", "data_contracts")


def module_file(module: str, root: Path = PROJECT_ROOT) -> Path | None:
    """The source file of a project module (`a/b.py` or `a/b/__init__.py`), or None."""
    base = root.joinpath(*module.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imported(path: Path, module: str, root: Path) -> set[str]:
    """Project modules a file imports (absolute and relative imports, lazy ones included)."""
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if m.split(".")[0] in PROJECT_PACKAGES and module_file(m, root)}


def import_closure(entry: str, root: Path = PROJECT_ROOT) -> list[Path]:
    """Source files of `entry` and of every project module it imports, transitively, plus the packages'
    `__init__.py` files (importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py`)."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = module_file(mod, root)
        if path is None:
            raise ValueError(f"{mod}: no such project module under {root}")
        seen[mod] = path
        parents = [".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)]
        todo += [p for p in parents if p not in seen] + sorted(_imported(path, mod, root) - set(seen))
    return sorted(set(seen.values()))


def files_version(files: list[Path], root: Path = PROJECT_ROOT) -> str:
    """sha256 over (path relative to root, bytes) of `files`, 16 hex digits."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
