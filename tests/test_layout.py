"""The package layout is the pipeline: subpackages per stage, imports only downward, no circles, no module named
like a standard-library one, and no Prefect inside `tatar_core`."""

from __future__ import annotations

import sys
from pathlib import Path

from tatar_core.code_version import PROJECT_ROOT, _imported

# lower rank = lower layer; a package may import its own modules and packages of a strictly lower rank
RANKS = {
    "data_contracts": -1,
    "tatar_core": 0,  # modules at the top of tatar_core (code_version, images, processor) import nothing of the
    # project
    "method": 1,
    "demo": 1.5,  # demo-only: the demo set, the embedded model and its tower, the offline teacher
    "samples": 2,
    "llm": 3,
    "models": 3,
    "rationales": 4,
    "filtered": 5,
    "training": 6,
    "scoring": 6,
    "benchmark": 7,
    "pipeline": 8,
    "probes": 8.5,  # grids of pipeline runs (the paper's controlled probes)
    "cli": 9,
}


def _modules():
    for path in sorted((PROJECT_ROOT / "tatar_core").rglob("*.py")):
        rel = path.relative_to(PROJECT_ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "data_contracts":
        return "data_contracts"
    return (
        parts[1]
        if len(parts) > 2 or (len(parts) == 2 and (PROJECT_ROOT / "tatar_core" / parts[1]).is_dir())
        else "tatar_core"
    )


def test_every_subpackage_has_a_rank():
    dirs = {p.name for p in (PROJECT_ROOT / "tatar_core").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert dirs == set(RANKS) - {"data_contracts", "tatar_core"}


def test_imports_only_go_downward():
    wrong = []
    for module, path in _modules():
        here = _package(module)
        for dep in _imported(path, module, PROJECT_ROOT):
            there = _package(dep)
            if there != here and RANKS[there] >= RANKS[here]:
                wrong.append(f"{module} imports {dep} ({here} -> {there})")
    assert wrong == []


def test_no_import_circle():
    graph = {m: {d for d in _imported(p, m, PROJECT_ROOT) if d.startswith("tatar_core")} for m, p in _modules()}
    graph = {m: {d if d in graph else d.rpartition(".")[0] for d in deps} - {m} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in graph.get(m, ()):
            if d.startswith(m + ".") or m.startswith(d + "."):
                continue  # a package and its own modules
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_module_shadows_the_standard_library():
    clash = [m for m, _ in _modules() if m.rsplit(".", 1)[-1] in sys.stdlib_module_names]
    assert clash == []


def test_tatar_core_never_imports_prefect():
    users = [str(p) for _, p in _modules() if "prefect" in {n.split(".")[0] for n in _all_imports(p)}]
    assert users == []


def _all_imports(path: Path) -> set[str]:
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out
