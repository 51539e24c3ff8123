"""The orchestration section, the dispatch mode, and the key check a stage run makes before any work (the routed
runs themselves are in tests/test_e2e_prefect.py)."""

from __future__ import annotations

import pytest

from data_contracts.config import load_config
from data_contracts.errors import ConfigError
from flows.stages import DEPLOYMENTS, StageRunFailed, check_key, dispatch_mode
from tatar_core.pipeline.keys import stage_keys


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"orchestration.mode": "k8s"}, "orchestration.mode"),
        ({"orchestration.poll_seconds": 0}, "orchestration.poll_seconds"),
        ({"orchestration.job_variables": {"sfft": {"env": {}}}}, "orchestration.job_variables.sfft"),
        ({"orchestration.pool": "gpu"}, "unknown key 'orchestration.pool'"),
        ({"sft.launch.python": "/envs/gpu/bin/python"}, "launch.python"),  # needs launch.mode: accelerate
    ],
)
def test_bad_orchestration_and_launch_settings_fail_at_load(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config("configs/demo.yaml", overrides)


def test_settings_load_and_do_not_change_cache_keys():
    base = load_config("configs/demo.yaml")
    cfg = load_config(
        "configs/demo.yaml",
        {
            "orchestration.mode": "deployments",
            "orchestration.stage_timeout_s": 60,
            "orchestration.job_variables": {"sft": {"env": {"NCCL_DEBUG": "INFO"}}},
        },
    )
    assert cfg.orchestration.job_variables["sft"] == {"env": {"NCCL_DEBUG": "INFO"}}
    assert stage_keys(cfg) == stage_keys(base)  # how stages are dispatched is not part of what they compute


def test_dispatch_mode():
    assert dispatch_mode(load_config("configs/demo.yaml")) == "subflow"  # auto, not running from a deployment
    for mode in ("deployments", "subflow"):
        assert dispatch_mode(load_config("configs/demo.yaml", {"orchestration.mode": mode})) == mode


def test_a_stage_run_with_another_key_fails_before_any_work():
    cfg = load_config("configs/demo.yaml")
    key = stage_keys(cfg)["sft"]
    check_key("sft", cfg, "configs/demo.yaml", key)
    check_key("sft", cfg, "configs/demo.yaml", None)  # started by hand: no expectation
    with pytest.raises(StageRunFailed, match=f"computes cache key {key[:16]}.*computed {'0' * 16}.*same commit"):
        check_key("sft", cfg, "configs/demo.yaml", "0" * 64)


def test_prefect_yaml_routes_each_stage_to_its_pool():
    import yaml

    deployments = {d["name"]: d for d in yaml.safe_load(open("prefect.yaml"))["deployments"]}
    pools = {name: d["work_pool"]["name"] for name, d in deployments.items()}
    assert pools == {
        "full": "{{ $TATAR_CPU_POOL }}",
        "probes": "{{ $TATAR_CPU_POOL }}",
        "samples": "{{ $TATAR_CPU_POOL }}",
        "rationales": "{{ $TATAR_CPU_POOL }}",
        "filtered": "{{ $TATAR_CPU_POOL }}",
        "sft": "{{ $TATAR_GPU_POOL }}",
        "grpo": "{{ $TATAR_GPU_POOL }}",
        "benchmark": "{{ $TATAR_GPU_POOL }}",
    }
    for stage, name in DEPLOYMENTS.items():  # the names the tatar flow starts
        flow_name, deployment = name.split("/")
        assert deployments[deployment]["entrypoint"] == f"flows/stages.py:{stage}" and flow_name == f"tatar-{stage}"
    assert deployments["sft"]["work_pool"]["job_variables"]["env"]["HF_HUB_OFFLINE"] == "1"
    assert deployments["probes"]["entrypoint"] == "flows/probes.py:probes"


def test_probes_flow_starts_each_distinct_stage_run_as_its_deployment(monkeypatch, tmp_path):
    """The tatar-probes flow's executor: a finished stage is cached without a deployment run; an unfinished one
    starts `tatar-<stage>/<stage>` through the tatar flow's own `_run_deployment` (its idempotency key, key check)."""
    from data_contracts.config.probes import load_probes
    from flows import probes as probes_flow
    from tatar_core.probes.grid import build_grid

    grid = build_grid(load_probes("configs/probes.yaml", {"seeds": [0], "run_dir": str(tmp_path / "run")}))
    started = []

    def fake(stage, pipe, config, overrides):
        started.append((stage, pipe.keys[stage], config, overrides))
        raise RuntimeError("stop here")

    monkeypatch.setattr(probes_flow, "_run_deployment", fake)
    node = grid.ordered()[0]
    with pytest.raises(RuntimeError, match="stop here"):
        probes_flow.deployment_executor(grid)(node)
    assert started == [("samples", node.key, "configs/demo.yaml", node.overrides)]
    assert load_config("configs/demo.yaml", node.overrides) == node.cells[0].cfg  # the stage run computes this key
