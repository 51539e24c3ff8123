"""LLM judge: verdict parsing, keep rules, malformed-output retries, through a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from data_contracts.config.rationales import EndpointConfig, JudgeConfig
from data_contracts.records import RationaleRecord, SampleRecord
from tatar_core.filtered.judge import LLMJudge, MalformedVerdict, parse_verdict, verdict_reasons
from tatar_core.method.prompts import make_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from serve_openai import Reply, StubOpenAIServer, completion, request_text  # noqa: E402

IQA_OK = {
    "decision": "keep",
    "overall_confidence": 80,
    "scores": {"visual_fidelity": 4, "technical_rigor": 2, "score_consistency": 3},
}


def verdict_reply(obj, wrap="{}") -> Reply:
    return Reply(body=completion(wrap.format(json.dumps(obj)) if wrap != "{}" else json.dumps(obj)))


def test_parse_verdict_variants():
    v = parse_verdict("Here you go:\n```json\n" + json.dumps(IQA_OK) + "\n```", "iqa")
    assert v.decision == "keep" and v.scores == {"visual_fidelity": 4, "technical_rigor": 2, "score_consistency": 3}
    iaa = {
        "decision": "REJECT",
        "scores": {
            "attribute_coverage": "3",
            "groundedness_no_fabrication": 1,
            "reasoning_cohesion": 4,
            "score_derivation_smoothness": 2.5,
        },
    }
    v = parse_verdict(json.dumps(iaa), "iaa")
    assert v.decision == "reject" and v.scores["groundedness"] == 1 and v.scores["score_derivation"] == 2.5
    for bad in [
        "no json here",
        '{"decision": "maybe", "scores": {}}',
        json.dumps({"decision": "keep", "scores": {"visual_fidelity": 4, "technical_rigor": 2}}),
        json.dumps(
            {"decision": "keep", "scores": {"visual_fidelity": 9, "technical_rigor": 2, "score_consistency": 3}}
        ),
        '{"decision": "keep", "scores": {"visual_fidelity": 4,',
    ]:
        with pytest.raises(MalformedVerdict):
            parse_verdict(bad, "iqa")


def test_keep_rules_are_strict_thresholds():
    cfg = JudgeConfig()
    v = parse_verdict(json.dumps(IQA_OK), "iqa")
    assert verdict_reasons(v, "iqa", cfg) == []
    v.scores["score_consistency"] = 2  # not > 2
    v.decision = "reject"
    assert verdict_reasons(v, "iqa", cfg) == ["judge: decision=reject", "judge: score_consistency 2 <= 2"]
    v.scores["technical_rigor"] = 0  # not thresholded
    assert len(verdict_reasons(v, "iqa", cfg)) == 2
    iaa = parse_verdict(
        json.dumps(
            {
                "decision": "keep",
                "scores": {"attribute_coverage": 0, "groundedness": 3, "reasoning_cohesion": 2, "score_derivation": 0},
            }
        ),
        "iaa",
    )
    assert verdict_reasons(iaa, "iaa", cfg) == ["judge: reasoning_cohesion 2 <= 2"]
    assert verdict_reasons(iaa, "iaa", cfg.model_copy(update={"iaa_min_cohesion": 1.5})) == []


@pytest.fixture
def rec_and_sample(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (80, 60), (10, 120, 200)).save(img)
    text = "The frame is sharp with clean edges. Noise is low and exposure is balanced."
    rec = RationaleRecord(
        sample_id="x1",
        image_path=str(img),
        task="iqa",
        score=71.5,
        rationale=text,
        target=make_target(text, 71.5),
        teacher="t",
        n_words=len(text.split()),
    )
    s = SampleRecord(
        sample_id="x1", image_path=str(img), task="iqa", score=71.5, split="train", source="t", ref_id="r"
    )
    return rec, s


def _judge(url: str, **kw) -> LLMJudge:
    ep = EndpointConfig(
        base_url=url, model="judge-m", timeout_s=2, max_retries=2, backoff_base_s=0.01, image_max_side=40
    )
    return LLMJudge(JudgeConfig(enabled=True, endpoint=ep, **kw))


def test_judge_retries_malformed_then_accepts(rec_and_sample):
    rec, s = rec_and_sample
    replies = [
        Reply(body=completion("I think it is fine")),
        Reply(body=completion('{"decision": "keep"}')),
        verdict_reply(IQA_OK),
    ]
    with StubOpenAIServer(lambda req, n: replies[n - 1]) as srv:
        res = asyncio.run(_judge(srv.base_url, max_attempts=3).ajudge(rec, s))
        req = srv.requests[0]
    assert res.reasons == []
    stored = json.loads(res.verdict_json)
    assert (
        stored["attempts"] == 3 and stored["scores"]["visual_fidelity"] == 4 and stored["judge"].startswith("judge:")
    )
    assert req["temperature"] == 0.0 and req["max_tokens"] == 400
    text = request_text(req)
    assert "Known score: 71.50" in text and "ends with: 71.50" in text and rec.rationale in text
    assert req["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_judge_gives_up_after_max_attempts_and_records_failures(rec_and_sample):
    rec, s = rec_and_sample
    with StubOpenAIServer(lambda req, n: Reply(body=completion("not json"))) as srv:
        res = asyncio.run(_judge(srv.base_url, max_attempts=2, send_image=False).ajudge(rec, s))
        assert len(srv.requests) == 2
        assert all(
            isinstance(m["content"], str) or all(p["type"] == "text" for p in m["content"])
            for m in srv.requests[0]["messages"]
        )
    assert len(res.reasons) == 1 and res.reasons[0].startswith("judge: malformed verdict (after 2 attempts")
    with StubOpenAIServer(lambda req, n: Reply(403, {"error": {"message": "forbidden"}})) as srv:
        res = asyncio.run(_judge(srv.base_url).ajudge(rec, s))
        assert len(srv.requests) == 1
    assert res.reasons[0].startswith("judge: request_failed (HTTP 403")
    low = dict(IQA_OK, decision="reject", scores=dict(IQA_OK["scores"], visual_fidelity=1))
    with StubOpenAIServer(lambda req, n: verdict_reply(low)) as srv:
        res = asyncio.run(_judge(srv.base_url, json_mode=True).ajudge(rec, s))
        assert srv.requests[0]["response_format"] == {"type": "json_object"}
    assert res.reasons == ["judge: decision=reject", "judge: visual_fidelity 1 <= 2"]
    res = asyncio.run(
        _judge("http://127.0.0.1:9/v1").ajudge(rec.model_copy(update={"image_path": "/no/such.png"}), None)
    )
    assert res.reasons[0].startswith("judge: image_unreadable")
