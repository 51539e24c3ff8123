"""The probes grid (configs/probes.yaml, tatar_core.probes): intervals and verdicts, the config, deduplication of
stage runs by cache key, and a 2-variant grid run on the tiny recipe through the same code as the Prefect flow."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
import yaml
from e2e_support import TINY  # tests/ is on the path

from data_contracts import ConfigError
from data_contracts.config import STAGES
from data_contracts.config.probes import load_probes
from tatar_core.probes.grid import build_grid, plan_text
from tatar_core.probes.run import InProcess, ProbesFailed, run_grid, run_probes
from tatar_core.probes.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    bootstrap_interval,
    paired,
    t_interval,
    verdict,
)


# ---------------------------------------------------------------- intervals
def test_t_interval_and_paired_verdicts():
    iv = t_interval([1.0, 2.0, 3.0])
    assert (iv.mean, iv.n) == (2.0, 3)
    assert iv.hi - iv.mean == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) = 4.3027
    assert math.isnan(t_interval([0.5]).lo) and t_interval([0.5]).mean == 0.5
    assert t_interval([None, float("nan"), 1.0, 3.0]).n == 2  # missing values are left out
    b = bootstrap_interval([1.0, 2.0, 3.0])
    assert 1.0 <= b.lo < 2.0 < b.hi <= 3.0 and b == bootstrap_interval([1.0, 2.0, 3.0])  # seeded
    up = paired({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.5, 1: 0.45, 2: 0.6})
    assert up.mean == pytest.approx(0.2833, abs=1e-3) and verdict(up) == SUPPORTED
    assert verdict(paired({0: 0.5, 1: 0.45, 2: 0.6}, {0: 0.8, 1: 0.7, 2: 0.9})) == NOT_SUPPORTED
    assert verdict(paired({0: 0.8, 1: 0.4, 2: 0.9}, {0: 0.5, 1: 0.6, 2: 0.6})) == INCONCLUSIVE
    assert verdict(paired({0: 0.9}, {0: 0.1})) == INCONCLUSIVE  # one seed: no interval
    assert verdict(paired({0: 1.0, 1: 2.0, 2: 1.5}, {0: 3.0, 1: 4.0, 2: 3.6}, direction="lower")) == SUPPORTED
    assert paired({0: 1.0, 1: float("nan"), 2: 2.0}, {0: 0.0, 1: 0.0, 2: 0.0}).n == 2


# ---------------------------------------------------------------- config and grid
def test_shipped_probes_config_dedups_stage_runs_by_key():
    """configs/probes.yaml: one seed needs 1 samples, 3 rationales (fast/slow, fast/fast, slow/slow), 3 filtered,
    4 SFT (the GRPO variants share the recipe's), 7 GRPO, 7 benchmarks; every seed adds the same again."""
    one = build_grid(load_probes("configs/probes.yaml", {"seeds": [0]}))
    count = {s: sum(n.stage == s for n in one.nodes.values()) for s in STAGES}
    assert count == {"samples": 1, "rationales": 3, "filtered": 3, "sft": 4, "grpo": 7, "benchmark": 7}
    assert len(one.cells) == 9
    recipe = {(c.probe, c.variant) for c in one.cells if c.keys == one.cell("optimization", "both", 0).keys}
    assert recipe == {("reasoning", "tatar"), ("optimization", "both"), ("table2", "task_conditioned")}
    sft = {c.keys["sft"] for c in one.cells if c.probe in ("optimization", "table2")}
    assert len(sft) == 1  # variants that differ only in GRPO settings share samples -> sft
    assert len({c.keys["samples"] for c in one.cells}) == 1
    three = build_grid(load_probes("configs/probes.yaml"))
    assert len(three.nodes) == 3 * len(one.nodes) and len(three.cells) == 27
    text = plan_text(three, "configs/probes.yaml")
    assert "75 distinct stage runs for 162 cell-stages" in text and "Estimated stage time left" in text
    paper = plan_text(
        build_grid(load_probes("configs/probes.yaml", {"base": "configs/paper.yaml", "scale": {}, "seeds": [0]}))
    )
    assert "No time estimate" in paper and "steps x batch 128" in paper


def test_probes_config_errors_name_the_problem(tmp_path):
    def write(data) -> Path:
        p = tmp_path / "p.yaml"
        p.write_text(yaml.safe_dump(data))
        return p

    ok = {"base": "configs/demo.yaml", "probes": {"x": {"title": "t", "claim": "c", "variants": {"a": {}, "b": {}}}}}
    assert len(build_grid(load_probes(write(ok))).cells) == 6
    bad = {
        **ok,
        "probes": {
            "x": {**ok["probes"]["x"], "comparisons": [{"claim": "c", "better": "a", "worse": "zz", "task": "iqa"}]}
        },
    }
    with pytest.raises(ConfigError, match="zz"):
        load_probes(write(bad))
    typo = {**ok, "probes": {"x": {**ok["probes"]["x"], "variants": {"a": {"sft.learnin_rate": 1}}}}}
    with pytest.raises(ConfigError, match=r"(?s)cell x/a/seed 0.*learnin_rate"):
        build_grid(load_probes(write(typo)))
    with pytest.raises(ConfigError, match="unknown key 'sedes'"):
        load_probes(write({**ok, "sedes": [1]}))
    assert load_probes(write({**ok, "_anchor": {"a": 1}})).seeds == [0, 1, 2]  # `_` keys hold YAML anchors
    sft_probe = {**ok, "probes": {"x": {**ok["probes"]["x"], "model": "sft", "overrides": {"benchmark.compare": []}}}}
    with pytest.raises(ConfigError, match="benchmark.compare"):
        build_grid(load_probes(write(sft_probe)))
    p = load_probes("configs/probes.yaml", {"scale.sft.max_steps": 5})
    assert p.scale["sft.max_steps"] == 5 and p.scale["grpo.max_steps"] == 15 and not p.estimate_s


# ---------------------------------------------------------------- a 2-variant grid, run
@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    d = tmp_path_factory.mktemp("probes")
    probes = {  # the demo recipe at the tiny scale of the end-to-end test (its `scale` block)
        "base": "configs/demo.yaml",
        "run_dir": str(d / "run"),
        "seeds": [0, 1],
        "parallel": 1,
        "scale": {**TINY, "grpo.trainer_args": {"save_steps": 2}, "benchmark.compare": []},
        "probes": {
            "table2": {
                "title": "Table 2 (tiny)",
                "claim": "task-conditioned rewards beat rank-only",
                "source": "Table 2",
                "curves": True,
                "variants": {"rank_only": {"grpo.ablation": "rank_only"}, "task_conditioned": {}},
                "paper": {
                    "rank_only": {"iqa_srcc": 0.754, "iqa_plcc": 0.756, "iaa_srcc": 0.503, "iaa_plcc": 0.516},
                    "task_conditioned": {"iqa_srcc": 0.767, "iqa_plcc": 0.765, "iaa_srcc": 0.510, "iaa_plcc": 0.525},
                },
                "comparisons": [
                    {
                        "claim": "IQA: 0.767 vs 0.754",
                        "better": "task_conditioned",
                        "worse": "rank_only",
                        "task": "iqa",
                    },
                    {
                        "claim": "fewer zero-variance groups",
                        "better": "task_conditioned",
                        "worse": "rank_only",
                        "task": "iaa",
                        "metric": "train_zero_std_frac",
                        "direction": "lower",
                    },
                ],
            }
        },
    }
    (d / "probes.yaml").write_text(yaml.safe_dump(probes, sort_keys=False))
    return build_grid(load_probes(d / "probes.yaml"))


def test_two_variant_grid_runs_each_key_once_and_reports(tiny_grid):
    grid, calls, lines = tiny_grid, [], []
    inproc = InProcess(grid, log=lambda _: None)

    def execute(node):
        calls.append(node.id)
        return inproc(node)

    report = run_probes(grid, execute, log=lines.append)
    # 2 seeds: samples..sft once per seed (shared by both variants), grpo and benchmark once per variant and seed
    ran = {s: sum(c[0] == s for c in calls) for s in STAGES}
    assert ran == {"samples": 2, "rationales": 2, "filtered": 2, "sft": 2, "grpo": 4, "benchmark": 4}
    assert len(set(calls)) == len(calls) == len(grid.nodes)
    for stage in STAGES:  # one stage folder per distinct key in the shared run folder
        folders = [p for p in (Path(grid.cfg.run_dir) / stage).iterdir() if p.is_dir() and ".stale" not in p.name]
        assert len(folders) == ran[stage], stage
    md = report.with_suffix(".md").read_text()
    assert report.name == "report.html" and report.parent.parent.name == "probes"
    assert "## Table 2 (tiny)" in md and "> **The paper:** task-conditioned rewards beat rank-only" in md
    assert "| **rank_only** | 0.754 / 0.756 |" in md and "| **task_conditioned** | 0.767 / 0.765 |" in md
    assert "Student t interval" in md and "paired difference [95%]" in md
    verdicts = pl.read_parquet(report.parent / "verdicts.parquet")
    assert verdicts.height == 2 and verdicts["claim"].to_list()[0] == "IQA: 0.767 vs 0.754"
    assert set(verdicts["verdict"]) <= {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE}
    cells = pl.read_parquet(report.parent / "cells.parquet")
    assert cells.height == 4 and cells["finished"].all() and cells["iqa_valid"].is_not_nan().all()
    assert (
        cells.filter(pl.col("variant") == "rank_only")["sft_key"].to_list()
        == cells.filter(pl.col("variant") == "task_conditioned")["sft_key"].to_list()
    )
    assert (cells["iaa_train_zero_std_frac"].is_not_nan()).all()  # the group statistics reach the report
    assert {p.name for p in report.parent.glob("curves_*.png")} == {"curves_table2_iqa.png", "curves_table2_iaa.png"}
    html = report.read_text()
    assert "data:image/png;base64," in html and 'src="curves_' not in html  # pictures embedded: copyable

    # a rerun starts nothing: every node is finished (cached), and the report is rewritten in the same folder
    calls.clear()
    assert run_probes(grid, execute, log=lines.append) == report and calls == []
    assert any("cached" in line for line in lines)


def test_failed_stage_runs_fail_their_cells_only(tiny_grid):
    grid = tiny_grid

    def execute(node):
        raise AssertionError("the grid above left nothing to run")

    def broken(node):
        if node.stage == "benchmark" and any(c.variant == "rank_only" for c in node.cells):
            raise RuntimeError("boom")
        return {"cached": True}

    assert not run_grid(grid, execute, log=lambda _: None).failed  # all finished by the test above
    fresh = build_grid(load_probes_with(grid, run_dir=str(Path(grid.cfg.run_dir).with_name("fresh"))))
    out = run_grid(fresh, broken, log=lambda _: None)
    assert len(out.failed) == 2 and not out.skipped
    assert all(k[0] == "benchmark" for k in out.failed)
    with pytest.raises(ProbesFailed, match="boom"):
        run_probes(fresh, broken, log=lambda _: None)


def load_probes_with(grid, **changes):
    return grid.cfg.model_copy(update=changes)
