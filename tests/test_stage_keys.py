"""Cache keys: a change in stage k's config reruns k and what follows it, nothing before it."""

import pytest

from data_contracts.config import STAGES, load_config
from tatar_core.pipeline.keys import stage_keys
from tatar_core.pipeline.runner import Pipeline, StageNotReady


def _changed(overrides):
    base = stage_keys(load_config("configs/demo.yaml"))
    new = stage_keys(load_config("configs/demo.yaml", overrides))
    return [s for s in STAGES if base[s] != new[s]]


def test_keys_are_deterministic():
    assert stage_keys(load_config("configs/demo.yaml")) == stage_keys(load_config("configs/demo.yaml"))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"sft.learning_rate": 0.001}, ["sft", "grpo", "benchmark"]),
        ({"grpo.beta": 0.01}, ["grpo", "benchmark"]),
        ({"benchmark.batch_size": 2}, ["benchmark"]),
        ({"filtered.rules.iaa_min_aspects": 4}, ["filtered", "sft", "grpo", "benchmark"]),
        ({"rationales.shard_size": 7}, ["rationales", "filtered", "sft", "grpo", "benchmark"]),
        ({"samples.demo.test_refs": 2}, list(STAGES)),
        ({"model.seed": 1}, ["sft", "grpo", "benchmark"]),
    ],
)
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
from data_contracts.config import STAGES, load_config
from tatar_core.models.loading import embedded_model_dir
from tatar_core.pipeline.keys import code_version, stage_keys
print(json.dumps({"keys": stage_keys(load_config("configs/demo.yaml")), "model": embedded_model_dir(".", 0).name,
                  "code": {s: code_version(s) for s in STAGES}}))
"""


def _keys_in(root):
    """Stage keys, code versions and the embedded model folder name, computed by a fresh interpreter inside a
    project copy."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", _KEYS_SCRIPT], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def _edit(root, rel):
    """A real code change: one more statement at the end of the module."""
    path = root / rel
    path.write_text(path.read_text() + "\nEDITED_BY_A_TEST = 1\n")


def _replace(root, rel, old, new):
    path = root / rel
    text = path.read_text()
    assert text.count(old) == 1, (rel, old)
    path.write_text(text.replace(old, new))


def _diff(a, b):
    return [s for s in STAGES if a["keys"][s] != b["keys"][s]]


def test_code_versions_follow_the_imports(tmp_path):
    """A real change in a module deep in a stage's import closure changes that stage's key and every later one,
    nothing before; editing a module no stage imports changes nothing; a changed tiny-model builder gives a new model
    folder."""
    root = _copy_project(tmp_path / "project")
    base = _keys_in(root)
    # the IAA aspect vocabulary: imported by the offline teacher (rationales) and the rules (filtered)
    _edit(root, "tatar_core/method/aspects.py")
    after = _keys_in(root)
    assert _diff(base, after) == list(STAGES[1:])
    assert after["model"] == base["model"]
    # `tatar inspect`: no stage imports it
    _edit(root, "tatar_core/cli/inspect_parquet.py")
    assert _keys_in(root) == after
    # the embedded model's builder: a new model folder, and every stage that trains or scores it reruns
    _edit(root, "tatar_core/demo/tiny.py")
    built = _keys_in(root)
    assert built["model"] != after["model"] and built["model"].startswith("tiny-qwen2.5-vl-seed0-")
    assert _diff(after, built) == ["sft", "grpo", "benchmark"]


# modules of the samples and rationales closures (besides every config module) that the next test edits
CLOSURE_MODULES = (
    "tatar_core/demo/teacher.py",
    "tatar_core/method/aspects.py",
    "tatar_core/samples/stage.py",
    "tatar_core/rationales/runner.py",
    "data_contracts/records.py",
    "tatar_core/demo/tiny.py",
)


def _comment_and_docstrings(root, rel):
    """Comments, blank lines, and changed or added docstrings: the module's, and the first class's or function's."""
    import re

    path = root / rel
    text = path.read_text()
    assert text.startswith('"""'), rel
    text = '"""Edited by a test. ' + text[3:]  # the module docstring
    text, n = re.subn(r'(\n(?:class|def) [^\n]*:\n)([ ]+)(""")', r"\1\2\3Edited by a test. ", text, count=1)
    if not n:  # no docstring: add one to the first class / function
        text, n = re.subn(r"(\n(?:class|def) [^\n]*:\n)([ ]+)", r'\1\2"""Added by a test."""\n\2', text, count=1)
    assert n == 1, rel
    text = text.replace("\nclass ", "\n# a comment\n\n\nclass ", 1).replace("\ndef ", "\n\n# a comment\ndef ", 1)
    path.write_text(text + "\n\n# edited by a test\n")


def test_comments_and_docstrings_change_no_key(tmp_path):
    """Comments, docstrings and blank lines in every config module and in modules of the samples and rationales
    closures (the offline teacher, the aspect vocabulary, the records) change no key and no model folder: the teacher
    is not called again."""
    from tatar_core.code_version import PROJECT_ROOT

    root = _copy_project(tmp_path / "project")
    base = _keys_in(root)
    config = PROJECT_ROOT / "data_contracts" / "config"
    edited = [p.relative_to(PROJECT_ROOT).as_posix() for p in config.glob("*.py")]
    for rel in (*edited, *CLOSURE_MODULES):
        _comment_and_docstrings(root, rel)
    assert len(edited) >= 10
    assert _keys_in(root) == base


def test_real_changes_of_the_rationales_code_change_its_key(tmp_path):
    """A changed statement of the offline teacher, or a changed method or default of the rationales config, changes
    the rationales key (and what follows), never the samples key."""
    root = _copy_project(tmp_path / "project")
    base = _keys_in(root)
    _edit(root, "tatar_core/demo/teacher.py")
    teacher = _keys_in(root)
    assert _diff(base, teacher) == list(STAGES[1:])
    _replace(
        root,
        "data_contracts/config/rationales.py",
        "class TeacherConfig(Section):\n",
        "class TeacherConfig(Section):\n    def edited_by_a_test(self):\n        return 1\n\n",
    )
    method = _keys_in(root)
    assert _diff(teacher, method) == list(STAGES[1:])
    assert method["code"]["rationales"] != teacher["code"]["rationales"]  # through the code version
    assert method["code"]["samples"] == base["code"]["samples"]
    _replace(
        root,
        "data_contracts/config/rationales.py",
        "fast_max_words: int = Field(50,",
        "fast_max_words: int = Field(45,",
    )  # a default the demo config leaves
    default = _keys_in(root)
    assert _diff(method, default) == list(STAGES[1:])


def test_another_stages_config_class_or_record_changes_no_earlier_key(tmp_path):
    """An edit of the GRPO config class (a default, a validator) re-keys the stages whose code reads it, never samples,
    rationales or filtered; an edit of the benchmark's record schema re-keys only the benchmark."""
    root = _copy_project(tmp_path / "project")
    base = _keys_in(root)
    _replace(root, "data_contracts/config/training.py", "    beta: float = 0.001\n", "    beta: float = 0.002\n")
    _replace(
        root,
        "data_contracts/config/training.py",
        "if self.min_iaa_images_per_step > self.prompts_per_step:",
        "if self.min_iaa_images_per_step > self.prompts_per_step + 0:",
    )
    grpo = _keys_in(root)
    assert _diff(base, grpo) == ["sft", "grpo", "benchmark"]  # sft's launcher reads GrpoConfig too
    assert grpo["code"]["grpo"] != base["code"]["grpo"]
    assert {s: grpo["code"][s] for s in STAGES[:3]} == {s: base["code"][s] for s in STAGES[:3]}
    _replace(
        root,
        "data_contracts/records.py",
        "class MetricRecord(Record):\n",
        "class MetricRecord(Record):\n    edited_by_a_test: int = 0\n",
    )
    assert _diff(grpo, _keys_in(root)) == ["benchmark"]


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
    assert names == [
        "tatar_core/__init__.py",
        "tatar_core/p/__init__.py",
        "tatar_core/p/a.py",
        "tatar_core/p/b.py",
        "tatar_core/p/c.py",
    ]


def test_files_version_follows_the_syntax_not_the_text(tmp_path):
    """Comments, docstrings, blank lines and line breaks leave a version; a default, a string or a statement not."""
    from tatar_core.code_version import files_version

    f = tmp_path / "m.py"

    def version(src: str) -> str:
        f.write_text(src)
        return files_version([f], tmp_path)

    base = version('"""Doc."""\nX = 1\n\n\ndef f(a, b=2):\n    """Doc."""\n    return a + b\n')
    assert version("# c\nX = 1  # one\ndef f(a,\n      b=2):\n    return (a + b)\n") == base
    assert version('"""Other."""\nX = 1\ndef f(a, b=2):\n    """Other."""\n\n    return a + b\n') == base
    assert version('"""Doc."""\nX = 1\ndef f(a, b=3):\n    return a + b\n') != base
    assert version('"""Doc."""\nX = "1"\ndef f(a, b=2):\n    return a + b\n') != base
    assert version('"""Doc."""\nX = 1\ndef f(a, b=2):\n    "Doc."\n    a += 0\n    return a + b\n') != base


def test_measured_tower_constants_count_in_the_model_and_training_keys(tmp_path):
    """tatar_core/demo/tower_stats.json (named in the tower's CODE_DATA): a changed constant gives a new embedded
    model folder and reruns what trains or scores it, never samples, rationales or filtered."""
    import json

    root = _copy_project(tmp_path / "project")
    base = _keys_in(root)
    path = root / "tatar_core" / "demo" / "tower_stats.json"
    data = json.loads(path.read_text())
    data["zstats"]["G.lap"][1] *= 1.01
    path.write_text(json.dumps(data))
    after = _keys_in(root)
    assert after["model"] != base["model"]
    assert _diff(base, after) == ["sft", "grpo", "benchmark"]
