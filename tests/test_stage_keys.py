"""Cache keys: a change in stage k's config reruns k and what follows it, nothing before it."""
import pytest

from data_contracts.config import STAGES, load_config
from tatar_core.pipeline.runner import Pipeline, StageNotReady
from tatar_core.pipeline.keys import stage_keys


def _changed(overrides):
    base = stage_keys(load_config("configs/demo.yaml"))
    new = stage_keys(load_config("configs/demo.yaml", overrides))
    return [s for s in STAGES if base[s] != new[s]]


def test_keys_are_deterministic():
    assert stage_keys(load_config("configs/demo.yaml")) == stage_keys(load_config("configs/demo.yaml"))


@pytest.mark.parametrize("overrides, expected", [
    ({"sft.learning_rate": 0.001}, ["sft", "grpo", "benchmark"]),
    ({"grpo.beta": 0.01}, ["grpo", "benchmark"]),
    ({"benchmark.batch_size": 2}, ["benchmark"]),
    ({"filtered.rules.iaa_min_aspects": 4}, ["filtered", "sft", "grpo", "benchmark"]),
    ({"rationales.shard_size": 7}, ["rationales", "filtered", "sft", "grpo", "benchmark"]),
    ({"samples.demo.test_refs": 2}, list(STAGES)),
    ({"model.seed": 1}, ["sft", "grpo", "benchmark"]),
])
def test_change_reruns_stage_and_downstream_only(overrides, expected):
    assert _changed(overrides) == expected


def test_stage_needs_finished_inputs(tmp_path):
    cfg = load_config("configs/demo.yaml", {"run_dir": str(tmp_path / "run")})
    with pytest.raises(StageNotReady, match="stage 'filtered' has not finished"):
        Pipeline(cfg, log=lambda _: None).run("sft")


def _copy_project(dst):
    import shutil

    from tatar_core.code_version import PROJECT_ROOT

    for name in ("tatar_core", "data_contracts", "configs"):
        shutil.copytree(PROJECT_ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


_KEYS_SCRIPT = """
import json, sys
from data_contracts.config import load_config
from tatar_core.models.loading import embedded_model_dir
from tatar_core.pipeline.keys import stage_keys
print(json.dumps({"keys": stage_keys(load_config("configs/demo.yaml")), "model": embedded_model_dir(".", 0).name}))
"""


def _keys_in(root):
    """Stage keys and the embedded model folder name, computed by a fresh interpreter inside a project copy."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _KEYS_SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def _edit(root, rel):
    path = root / rel
    path.write_text(path.read_text() + "\n# edited by a test\n")


def test_code_versions_follow_the_imports(tmp_path):
    """Editing a module deep in a stage's import closure changes that stage's key and every later one, nothing before;
    editing a module no stage imports changes nothing; a changed tiny-model builder gives a new model folder."""
    root = _copy_project(tmp_path / "project")
    base = _keys_in(root)
    # the IAA aspect vocabulary: imported by the offline teacher (rationales) and the rules (filtered)
    _edit(root, "tatar_core/method/aspects.py")
    after = _keys_in(root)
    assert [s for s in STAGES if after["keys"][s] != base["keys"][s]] == list(STAGES[1:])
    assert after["model"] == base["model"]
    # `tatar inspect`: no stage imports it
    _edit(root, "tatar_core/cli/inspect_parquet.py")
    assert _keys_in(root) == after
    # the embedded model's builder: a new model folder, and every stage that trains or scores it reruns
    _edit(root, "tatar_core/demo/tiny.py")
    built = _keys_in(root)
    assert built["model"] != after["model"] and built["model"].startswith("tiny-qwen2.5-vl-seed0-")
    assert [s for s in STAGES if built["keys"][s] != after["keys"][s]] == ["sft", "grpo", "benchmark"]


def test_closure_follows_lazy_and_relative_imports(tmp_path):
    from tatar_core.code_version import import_closure

    pkg = tmp_path / "tatar_core" / "p"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "tatar_core", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n    from tatar_core.p.c import X\n")
    (pkg / "b.py").write_text("import os\n")
    (pkg / "c.py").write_text("X = 1\n")
    (pkg / "unused.py").write_text("")
    names = [p.relative_to(tmp_path).as_posix() for p in import_closure("tatar_core.p.a", tmp_path)]
    assert names == ["tatar_core/__init__.py", "tatar_core/p/__init__.py", "tatar_core/p/a.py", "tatar_core/p/b.py",
                     "tatar_core/p/c.py"]
