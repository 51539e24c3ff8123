"""The vLLM engine without vLLM (not installable on CPU): its readout on vLLM-shaped outputs recorded from a real
model equals the transformers engine's, its arguments, the clear error when vLLM is missing; the scoring worker's
spec round trip and errors; `tatar score --engine vllm`."""

from __future__ import annotations

import json
import math
import sys

import pytest
from test_scoring import _images
from vllm_outputs import CompletionOutput, Logprob, RequestOutput, record_outputs


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def scorer(sft_checkpoint):
    from tatar_core.scoring.scorer import Scorer

    return Scorer(sft_checkpoint, batch_size=8, draft_tokens=0, readout="expected")


@pytest.mark.slow
def test_vllm_readout_on_recorded_outputs_equals_the_transformers_engine(scorer):
    """Same tokens -> same completion, parse, greedy score; with every digit token's logprob the same expected score;
    with vLLM's top-20 only, the digits below the 20th count as 0 (still a finite score on 0–100)."""
    import dataclasses

    from tatar_core.scoring.readout import digit_vocab
    from tatar_core.scoring.vllm_engine import results_from_outputs

    images, task, greedy = _images(3, seed=31), "iqa", scorer
    ref_e = scorer.score(images, task)
    ref_g = [dataclasses.replace(r, score=r.greedy) for r in ref_e]  # what readout "greedy" gives for the same tokens
    digits = digit_vocab(greedy.tokenizer)

    plain = results_from_outputs(record_outputs(greedy, images, task, top_k=None), greedy.tokenizer, greedy.stops)
    assert plain == ref_g
    assert sum(r.score is not None for r in plain) >= 2, [r.completion[-40:] for r in plain]

    every = record_outputs(greedy, images, task, top_k=0, include=list(digits))
    full = results_from_outputs(every, greedy.tokenizer, greedy.stops, digits)
    for a, b in zip(full, ref_e):
        assert (a.completion, a.parse, a.greedy) == (b.completion, b.parse, b.greedy)
        assert (a.score is None) == (b.score is None)
        if a.score is not None:
            assert a.score == pytest.approx(b.score, abs=1e-4)
    top20 = results_from_outputs(
        record_outputs(greedy, images, task, top_k=20), greedy.tokenizer, greedy.stops, digits
    )
    assert [r.completion for r in top20] == [r.completion for r in ref_e]
    assert all(r.score is None or (0 <= r.score <= 100 and math.isfinite(r.score)) for r in top20)


def test_vllm_expected_readout_from_logprob_dicts(tiny_model_dir):
    """A hand-made vLLM output: "73.42" where the "73" step has 73 and 80 at log(1/2) each (and an unrelated token
    at -0.1 that is not a digit): 73.42 + (0.5·73 + 0.5·80 − 73) = 76.92; no logprobs at that step: the greedy."""
    from tatar_core.models.loading import load_processor
    from tatar_core.scoring.readout import digit_vocab, stop_tokens
    from tatar_core.scoring.vllm_engine import results_from_outputs

    tok = load_processor(tiny_model_dir).tokenizer
    ids = tok.encode("<think>Sharp.</think><answer>73.42</answer>", add_special_tokens=False)
    ids.append(tok.convert_tokens_to_ids("<|im_end|>"))
    digits, stops = digit_vocab(tok), stop_tokens(tok)
    by_text = {t: i for i, t in digits.items()}
    steps = []
    for t in ids:
        piece = tok.decode([t])
        if piece == "73":
            steps.append(
                {
                    by_text["73"]: Logprob(math.log(0.5), 1, "73"),
                    by_text["80"]: Logprob(math.log(0.5), 2, "80"),
                    ids[0]: Logprob(-0.1, 3, "<think>"),
                }
            )
        else:
            steps.append({t: Logprob(0.0, 1, piece)})
    out = RequestOutput("0", "prompt", [], [CompletionOutput(0, "", ids, None, steps, "stop", ids[-1])])
    (r,) = results_from_outputs([out], tok, stops, digits)
    assert r.completion == "<think>Sharp.</think><answer>73.42</answer>" and r.parse == "strict"
    assert r.greedy == pytest.approx(73.42) and r.score == pytest.approx(76.92, abs=1e-9)
    steps[[tok.decode([t]) for t in ids].index("73")] = {}
    (r,) = results_from_outputs([out], tok, stops, digits)
    assert r.score == pytest.approx(73.42, abs=1e-9)


def test_vllm_arguments(tiny_model_dir):
    from data_contracts.config.model import ModelConfig
    from tatar_core.models.loading import load_processor
    from tatar_core.scoring.readout import stop_tokens
    from tatar_core.scoring.vllm_engine import TOP_LOGPROBS, llm_args, sampling_args

    stops = stop_tokens(load_processor(tiny_model_dir).tokenizer)
    g, e = sampling_args(stops, 64, "greedy"), sampling_args(stops, 64, "expected")
    assert g["temperature"] == 0.0 and g["max_tokens"] == 64 and g["logprobs"] is None
    assert e["logprobs"] == TOP_LOGPROBS and stops.answer_close_id in g["stop_token_ids"] and g["stop"] is None
    cfg = ModelConfig(dtype="bfloat16", max_pixels=1024 * 768)
    args = llm_args(tiny_model_dir, cfg, {"gpu_memory_utilization": 0.5, "seed": 3})
    assert args["model"] == str(tiny_model_dir) and args["dtype"] == "bfloat16"
    assert args["mm_processor_kwargs"]["max_pixels"] == 1024 * 768 and args["limit_mm_per_prompt"] == {"image": 1}
    assert args["gpu_memory_utilization"] == 0.5 and args["seed"] == 3  # benchmark.vllm passes through, last


@pytest.mark.skipif(_has_vllm(), reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error(tiny_model_dir):
    from tatar_core.scoring.engines import make_scorer
    from tatar_core.scoring.vllm_engine import EngineUnavailable

    with pytest.raises(EngineUnavailable, match=r"vllm package is not importable in .*python.*engine: transformers"):
        make_scorer("vllm", tiny_model_dir)
    assert "vllm" not in sys.modules  # imported only inside the engine


def test_worker_spec_round_trip_and_errors(tmp_path, tiny_model_dir):
    from data_contracts.config.model import ModelConfig
    from tatar_core.scoring.worker import SpecError, read_spec, write_spec

    cfg = ModelConfig(dtype="bfloat16", max_pixels=4096)
    items = [("0:a", "/img/a.png", "iqa"), ("0:b", "/img/b.png", "iaa")]
    spec = write_spec(
        tmp_path / "s" / "spec.json",
        engine="vllm",
        models=[("grpo", tiny_model_dir)],
        items=items,
        out="rows.parquet",
        model_cfg=cfg,
        scorer={"batch_size": 4, "readout": "expected"},
        vllm_args={"max_model_len": 4096},
    )
    back = read_spec(spec)
    assert back["engine"] == "vllm" and back["models"] == [["grpo", str(tiny_model_dir.resolve())]]
    assert back["model_cfg"] == cfg and back["items"] == [list(i) for i in items]
    assert back["scorer"] == {"batch_size": 4, "readout": "expected"} and back["vllm"] == {"max_model_len": 4096}
    assert back["out"] == (tmp_path / "s" / "rows.parquet").resolve()
    raw = json.loads(spec.read_text())
    for change, key in (
        ({"engine": "onnx"}, "'engine'"),
        ({"items": [["x", "/a.png", "vqa"]]}, "'items'"),
        ({"items": [["x", "/a", "iqa"], ["x", "/b", "iqa"]]}, "'items'"),
        ({"scorer": {"beams": 4}}, "'scorer'"),
        ({"extra": 1}, "unknown \\['extra'\\]"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**raw, **change}))
        with pytest.raises(SpecError, match=f"bad.json: worker spec.*{key}"):
            read_spec(bad)


@pytest.mark.skipif(_has_vllm(), reason="vLLM is installed here")
def test_tatar_score_engine_vllm_runs_the_worker_and_reports_the_missing_engine(tmp_path, tiny_model_dir, capsys):
    from tatar_core.cli.score import main

    img = tmp_path / "a.png"
    _images(1)[0].save(img)
    rc = main(
        [
            str(img),
            "--task",
            "iqa",
            "--model",
            str(tiny_model_dir),
            "--engine",
            "vllm",
            "--out",
            str(tmp_path / "s.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "vllm scoring worker" in err and "vllm package is not importable" in err
    assert not (tmp_path / "s.csv").exists()


def test_scorer_speed_reports_each_engine(tiny_model_dir):
    """What the GPU check calls: img/s per engine on the same images; an engine missing here is reported, not
    raised."""
    from tatar_core.scoring.engines import scorer_speed

    rows = scorer_speed(tiny_model_dir, _images(2, seed=33), "iqa", repeat=1, batch_size=2, max_new_tokens=4)
    assert [r["engine"] for r in rows] == ["transformers", "vllm"]
    assert rows[0]["n"] == 2 and rows[0]["img_per_s"] > 0 and 0 <= rows[0]["parsed"] <= 2
    if not _has_vllm():
        assert "vllm package is not importable" in rows[1]["error"]
