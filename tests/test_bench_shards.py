"""Benchmark shards: the longest-processing-time split, and the benchmark stage with `num_gpus: 2` on CPU as two real
scoring-worker processes (one killed with SIGKILL, then rerun alone) giving exactly the one-process results."""

from __future__ import annotations

import json
import os
import signal

import pytest

from data_contracts import StageContext, StageManifest, StageResult, read_records, write_records
from data_contracts.config import PipelineConfig
from data_contracts.records import MetricRecord, PredictionRecord, SampleRecord, ScoredRecord
from tatar_core.benchmark.shards import ShardFailed, lpt_split, shard_plan_text


def test_lpt_split_balances_cost_and_keeps_every_item_once():
    iaa_first = [5.0] * 4 + [1.0] * 4  # a contiguous split would give 20 vs 4
    shards = lpt_split(iaa_first, 2)
    assert sorted(i for s in shards for i in s) == list(range(8)) and all(s == sorted(s) for s in shards)
    assert [sum(iaa_first[i] for i in s) for s in shards] == [12.0, 12.0]
    # deterministic ties (lowest shard first); LPT, not an exact optimum: 7 where 6 is possible
    assert lpt_split([3, 3, 2, 2, 2], 2) == [[0, 2, 4], [1, 3]]
    assert lpt_split([1.0, 5.0], 3) == [[1], [0], []]
    with pytest.raises(ValueError):
        lpt_split([1.0], 0)
    assert shard_plan_text({"iqa": 6, "iaa": 2}, 2) == [
        "shard 1/2: 3 iqa + 1 iaa images, cost 8",
        "shard 2/2: 3 iqa + 1 iaa images, cost 8",
    ]


def test_shard_count_is_bounded_by_the_visible_gpus_and_the_images():
    from tatar_core.benchmark.stage import shard_count

    cfg = PipelineConfig.model_validate({"benchmark": {"num_gpus": 4}})
    assert shard_count(cfg, 100, []) == 4  # CPU: that many processes
    assert shard_count(cfg, 3, []) == 3
    assert shard_count(PipelineConfig(), 100, ["0", "1", "2"]) == 3  # default: every visible GPU
    assert shard_count(PipelineConfig(), 100, []) == 1
    with pytest.raises(ValueError, match="num_gpus: 4, but this node sees 2 GPU"):
        shard_count(cfg, 100, ["0", "1"])


def _upstream(tmp_path, sft_checkpoint, synthetic_samples) -> dict[str, StageResult]:
    test = [s.model_copy(update={"split": "test"}) for s in synthetic_samples[:8]]
    train = [s for s in synthetic_samples[8:]]
    d = tmp_path / "samples"
    write_records(test + train, d / "samples.parquet", SampleRecord)

    def result(stage, folder, outputs):
        m = StageManifest(stage=stage, key=stage * 8, code_version="test", outputs=outputs)
        return StageResult(stage, folder, m, cached=True)

    model = {"model": sft_checkpoint.name}
    return {
        "samples": result("samples", d, {"samples": "samples.parquet"}),
        "sft": result("sft", sft_checkpoint.parent, model),
        "grpo": result("grpo", sft_checkpoint.parent, model),
    }


def _cfg(num_gpus: int) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "benchmark": {
                "num_gpus": num_gpus,
                "device": "cpu",
                "batch_size": 4,
                "bootstrap": 50,
                "baselines": ["laplacian"],
            }
        }
    )


def _dump(records) -> list[str]:
    return [json.dumps(r.model_dump(), sort_keys=True) for r in records]  # NaN-aware equality


@pytest.mark.slow
def test_two_cpu_processes_kill_one_rerun_it_alone_and_match_one_process(tmp_path, sft_checkpoint, synthetic_samples):
    from tatar_core.benchmark import stage
    from tatar_core.benchmark.shards import run_shards

    upstream = _upstream(tmp_path, sft_checkpoint, synthetic_samples)
    logs: list[str] = []
    ctx = StageContext(run_root=tmp_path, log=logs.append)

    one = tmp_path / "one"
    stage.run_stage(_cfg(1), one, upstream, ctx)
    (single,) = sorted((one / "shards").glob("shard-*.parquet"))
    assert single.name.startswith("shard-00-of-01-") and not list((one / "shards").glob("*.log"))  # in-process

    # two worker processes; the second is killed with a real SIGKILL right after it starts
    two = tmp_path / "two"
    sets = stage.benchmark_sets(_cfg(2), upstream["samples"])
    shards, todo, in_process = stage.prepare_shards(_cfg(2), two, sets, {"grpo": sft_checkpoint}, [])
    assert len(shards) == 2 and not in_process and sum(s.items for s in shards) == 8
    assert shards[0].cost == shards[1].cost == 12  # 4 iqa (1) + 4 iaa (5) split evenly
    with pytest.raises(
        ShardFailed, match=r"(?s)1 of 2 shards did not finish \(1 finished.*shard 2/2 .*killed by SIGKILL"
    ):
        run_shards(
            shards,
            in_process=False,
            log=logs.append,
            on_start=lambda s, p: os.kill(p.pid, signal.SIGKILL) if s.index == 1 else None,
        )
    assert shards[0].done() and not shards[1].done()
    first_mtime = shards[0].out.stat().st_mtime_ns

    logs.clear()
    stage.run_stage(_cfg(2), two, upstream, ctx)  # reruns the killed shard alone
    assert any("shard 1/2: reused" in m for m in logs) and not any("shard 1/2: 4 images" in m for m in logs)
    assert any("shard 2/2: 4 images" in m for m in logs)
    assert shards[0].out.stat().st_mtime_ns == first_mtime
    pids = set()
    for s in shards:  # both processes scored their own images
        info = json.loads(s.out.with_suffix(".info.json").read_text())
        pids.add(info["pid"])
        assert info["engine"] == "transformers" and info["models"]["grpo"]["images"] == 4
        assert len(read_records(s.out, ScoredRecord)) == 4 and "scored 4 images with grpo" in s.log.read_text()
    assert len(pids) == 2 and os.getpid() not in pids

    p1 = read_records(one / "predictions.parquet", PredictionRecord)
    p2 = read_records(two / "predictions.parquet", PredictionRecord)
    keys = [(p.model, p.benchmark, p.sample_id) for p in p2]
    assert len(keys) == len(set(keys)) == 8 + 4  # every image once per model; laplacian scores the 4 IQA
    assert _dump(p2) == _dump(p1)
    assert _dump(read_records(two / "metrics.parquet", MetricRecord)) == _dump(
        read_records(one / "metrics.parquet", MetricRecord)
    )
    assert "Scored by the transformers engine." in (two / "report.md").read_text()


def test_plan_prints_engine_and_shard_plan(tmp_path, synthetic_samples):
    from tatar_core.pipeline.plan import format_plan
    from tatar_core.pipeline.runner import Pipeline

    cfg = PipelineConfig.model_validate(
        {
            "run_dir": str(tmp_path / "run"),
            "benchmark": {"num_gpus": 2, "engine": "vllm", "vllm": {"max_num_seqs": 64}},
        }
    )
    text, _ = format_plan(cfg)
    assert "engine: vllm (offline LLM.generate; extra LLM arguments: {'max_num_seqs': 64})" in text
    assert "shards: 2 (benchmark.num_gpus); 2 scoring worker process(es)" in text
    assert "-m tatar_core.scoring.worker" in text and "when the samples stage has finished" in text
    pipe = Pipeline(cfg, log=lambda _: None)  # a finished samples stage: 4 iqa + 4 iaa test images
    d = pipe.dir("samples")
    write_records(
        [s.model_copy(update={"split": "test"}) for s in synthetic_samples[:8]], d / "samples.parquet", SampleRecord
    )
    StageManifest(
        stage="samples", key=pipe.keys["samples"], code_version="x", outputs={"samples": "samples.parquet"}
    ).write(d)
    text, _ = format_plan(cfg)
    assert "shard 1/2: 2 iqa + 2 iaa images, cost 12" in text and "shard 2/2: 2 iqa + 2 iaa images, cost 12" in text
    text, _ = format_plan(
        cfg.model_copy(
            update={
                "benchmark": cfg.benchmark.model_copy(
                    update={"num_gpus": 1, "engine": "transformers", "device": "cpu"}
                )
            }
        )
    )
    assert "shards: 1 (benchmark.num_gpus); in this process" in text and "shard 1/1: 4 iqa + 4 iaa" in text
