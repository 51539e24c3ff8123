"""Code versions that follow meaning: a hash of the normalised source of the project code a module really uses.

    import_closure(m)  = m's source file + every `tatar_core` / `data_contracts` module it imports (absolute or
                         relative, lazy imports inside functions included; read with `ast`, nothing is imported),
                         transitively, + the `__init__.py` of every package on the way
    canonical(node)    = the syntax tree with docstrings removed, written as `Type(field=value, …)` (fields that are
                         None or [] left out, so Python 3.11–3.13 write the same text): comments, docstrings, blank
                         lines and formatting vanish; any other change (a statement, a default value, a string that
                         is not a docstring, a name) changes it
    files_version(fs)  = sha256 over (path relative to the project root, canonical(file)) of the files, 16 hex digits
    closure_version(m, sections)
                       = the same over m's import closure, except that the shared contract modules
                         (`CONTRACT_MODULES`: every config section and every record schema) count definition by
                         definition: only the top-level definitions (classes, functions, constants, imported names)
                         that the closure's other modules import, the fields `sections` of `PipelineConfig` (not the
                         rest of that class), and, transitively, the top-level names those definitions use.

A module that reads data files of its own (e.g. measured constants) names them in a top-level
`CODE_DATA = ("file.json", …)` (paths relative to the module's folder); their bytes count in both versions.

So a stage's version ignores comments and docstrings everywhere, and ignores the config classes and record schemas
of other stages (whose values are not in its key either); a changed default, validator or method of a config class
it reads changes it. Stage cache keys (`tatar_core.pipeline.keys`) use `closure_version`, the embedded model's build
folder (`tatar_core.models.loading`) `files_version`, so no hand-kept module list can go stale. This module imports
nothing of the project.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("tatar_core", "data_contracts")
# modules that every stage imports but reads only in part: hashed per top-level definition (see closure_version)
CONTRACT_MODULES = ("data_contracts.config", "data_contracts.records")
ROOT_CONFIG = ("data_contracts.config", "PipelineConfig")  # the whole config: a stage reads only its sections
ALL = "*"  # every top-level definition of a module

_PARSE_LOCK = threading.Lock()


def module_file(module: str, root: Path = PROJECT_ROOT) -> Path | None:
    """The source file of a project module (`a/b.py` or `a/b/__init__.py`), or None."""
    base = root.joinpath(*module.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    """Remove the docstring of the module and of every class and function (an emptied body becomes `pass`)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def _parse(source: bytes, filename: str) -> ast.Module:
    with _PARSE_LOCK:  # CPython 3.11 can fail a parse that overlaps another thread's (python/cpython#106905)
        for attempt in range(3):
            try:
                return _strip_docstrings(ast.parse(source, filename=filename))
            except SystemError:
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _tree(path: Path) -> ast.Module:
    """The file's syntax tree without docstrings (cached by content; do not modify it)."""
    return _parse(path.read_bytes(), str(path))


def canonical(node) -> str:
    """A syntax tree as text: `Type(field=value, …)` over `_fields` (no line numbers), None and [] left out."""
    if isinstance(node, ast.AST):
        fields = ",".join(f"{k}={canonical(v)}" for k, v in ast.iter_fields(node) if v is not None and v != [])
        return f"{type(node).__name__}({fields})"
    if isinstance(node, list):
        return "[" + ",".join(canonical(x) for x in node) + "]"
    return repr(node)


def _package(path: Path, module: str) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _from_module(node: ast.ImportFrom, pkg: str) -> str:
    """The absolute module of `from … import …` (relative imports resolved against the package `pkg`)."""
    base = node.module or ""
    if node.level:
        parts = pkg.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
    return base


def _imported(path: Path, module: str, root: Path) -> set[str]:
    """Project modules a file imports (absolute and relative imports, lazy ones included)."""
    pkg = _package(path, module)
    out: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_module(node, pkg)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if m.split(".")[0] in PROJECT_PACKAGES and module_file(m, root)}


def _closure(entry: str, root: Path) -> dict[str, Path]:
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
    return seen


def import_closure(entry: str, root: Path = PROJECT_ROOT) -> list[Path]:
    """Source files of `entry` and of every project module it imports, transitively, plus the packages'
    `__init__.py` files (importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py`)."""
    return sorted(set(_closure(entry, root).values()))


def data_files(path: Path) -> list[Path]:
    """The files a module names in its top-level `CODE_DATA` tuple (relative to its folder)."""
    out = []
    for node in _tree(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CODE_DATA" for t in node.targets):
            names = ast.literal_eval(node.value)
            out += [path.parent / n for n in ((names,) if isinstance(names, str) else names)]
    return out


def _hash_module(h, path: Path, root: Path, text: str) -> None:
    h.update(f"{path.relative_to(root).as_posix()}\0{text}\0".encode())
    for f in data_files(path):
        h.update(f"{f.relative_to(root).as_posix()}\0".encode() + f.read_bytes() + b"\0")


def files_version(files: Iterable[Path], root: Path = PROJECT_ROOT) -> str:
    """sha256 over (path relative to root, canonical source, the module's CODE_DATA files) of `files`, 16 hex
    digits."""
    h = hashlib.sha256()
    for f in sorted(files):
        _hash_module(h, f, root, canonical(_tree(f)))
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------- contract modules
def is_contract(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CONTRACT_MODULES)


def _names(node: ast.AST) -> set[str]:
    """Names a statement uses: every identifier, and every string that could be a forward reference."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
            out.add(n.value)
    return out


def _definitions(path: Path, module: str) -> tuple[dict, dict, list]:
    """A module's top level: ({name: [statements defining it]}, {name: (module, name) it imports}, [statements that
    define nothing but run on import])."""
    return _top_level(_tree(path), _package(path, module))


@lru_cache(maxsize=None)
def _top_level(tree: ast.Module, pkg: str) -> tuple[dict, dict, list]:
    defs: dict[str, list[ast.stmt]] = {}
    imports: dict[str, tuple[str, str]] = {}
    other: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom):
            base = _from_module(stmt, pkg)
            if base != "__future__":
                imports.update({a.asname or a.name: (base, a.name) for a in stmt.names})
        elif isinstance(stmt, ast.Import):
            imports.update(
                {
                    a.asname or a.name.split(".")[0]: (a.name if a.asname else a.name.split(".")[0], ALL)
                    for a in stmt.names
                }
            )
        elif isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            defs.setdefault(stmt.name, []).append(stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and all(
            isinstance(t, ast.Name) for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
        ):
            for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                defs.setdefault(t.id, []).append(stmt)
        else:
            other.append(stmt)
    return defs, imports, other


def _contract_parts(roots: Iterable[tuple[str, str]], sections: Sequence[str], root: Path) -> dict[str, set[str]]:
    """{contract module: canonical texts of the definitions reached from `roots`} (see the module docstring)."""
    parts: dict[str, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    todo = list(roots)
    while todo:
        mod, name = todo.pop()
        path = module_file(mod, root)
        if (mod, name) in seen or path is None:
            continue
        seen.add((mod, name))
        defs, imports, other = _definitions(path, mod)
        out = parts.setdefault(mod, set())
        if name == ALL:
            todo += [(mod, n) for n in (*defs, *imports)]
            continue
        if name in imports:
            src, orig = imports[name]
            out.add(f"import {src}:{orig} as {name}")
            target = (src, ALL) if orig == ALL else _target(src, orig, root)
            if target is not None and is_contract(target[0]):
                todo.append(target)
            continue
        stmts = defs.get(name, [])
        if (mod, name) == ROOT_CONFIG:  # only the stage's sections of the whole config
            stmts = [
                s
                for c in stmts
                for s in c.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.target.id in sections
            ]
        if not stmts:
            continue  # a builtin, or not a top-level name
        out.update(canonical(s) for s in (*stmts, *other))
        todo += [(mod, n) for s in stmts for n in _names(s)]
    return {m: p for m, p in parts.items() if p}


def _defines(module: str, name: str, root: Path) -> bool:
    defs, imports, _ = _definitions(module_file(module, root), module)
    return name in defs or name in imports


def _target(base: str, name: str, root: Path) -> tuple[str, str] | None:
    """What `from base import name` reads of a contract module: (module, name), (a submodule, ALL), or None."""
    sub = f"{base}.{name}"
    if name != ALL and module_file(sub, root) and not (is_contract(base) and _defines(base, name, root)):
        return (sub, ALL) if is_contract(sub) else None
    return (base, name) if is_contract(base) else None


def closure_version(entry: str, sections: Sequence[str] = (), root: Path = PROJECT_ROOT) -> str:
    """sha256 over the canonical source of `entry`'s import closure, the contract modules counted only by the
    definitions it reaches (plus PipelineConfig's fields `sections`), 16 hex digits."""
    mods = _closure(entry, root)
    plain = {m: p for m, p in mods.items() if not is_contract(m)}
    roots: set[tuple[str, str]] = {ROOT_CONFIG} if sections else set()
    for mod, path in plain.items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom):
                base = _from_module(node, _package(path, mod))
                roots.update(t for a in node.names if (t := _target(base, a.name, root)) is not None)
            elif isinstance(node, ast.Import):
                roots.update((a.name, ALL) for a in node.names if is_contract(a.name))
    h = hashlib.sha256()
    for path in sorted(plain.values()):
        _hash_module(h, path, root, canonical(_tree(path)))
    for mod, texts in sorted(_contract_parts(roots, tuple(sections), root).items()):
        h.update(f"{module_file(mod, root).relative_to(root).as_posix()}\0{chr(0).join(sorted(texts))}\0".encode())
    return h.hexdigest()[:16]
