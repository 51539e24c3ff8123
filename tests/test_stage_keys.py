"""Cache keys: a change in stage k's config reruns k and what follows it, nothing before it."""
import pytest

from data_contracts.config import STAGES, load_config
from tatar_core.pipeline import Pipeline, StageNotReady
from tatar_core.stage_keys import stage_keys


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
    ({"samples.demo.test_refs": 3}, list(STAGES)),
    ({"model.seed": 1}, ["sft", "grpo", "benchmark"]),
])
def test_change_reruns_stage_and_downstream_only(overrides, expected):
    assert _changed(overrides) == expected


def test_stage_needs_finished_inputs(tmp_path):
    cfg = load_config("configs/demo.yaml", {"run_dir": str(tmp_path / "run")})
    with pytest.raises(StageNotReady, match="stage 'filtered' has not finished"):
        Pipeline(cfg, log=lambda _: None).run("sft")


def test_every_stage_module_exists():
    """A renamed module would silently drop out of the code version (and stale caches would be reused)."""
    from tatar_core.stage_keys import PROJECT_ROOT, STAGE_MODULES, _SHARED

    missing = [f for files in STAGE_MODULES.values() for f in (*files, *_SHARED) if not (PROJECT_ROOT / f).exists()]
    assert missing == []
