"""filter_rationales: rule checks on every row, LLM judge (real openai client, local HTTP server) on passing rows."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from PIL import Image

from data_contracts.config.rationales import EndpointConfig, FilterConfig, JudgeConfig
from data_contracts.parquet_io import read_records, write_records
from data_contracts.records import KeptRecord, RationaleRecord, RejectedRecord, SampleRecord
from tatar_core.filtered.stage import filter_rationales, reason_code, reason_counts
from tatar_core.method.parsing import count_words
from tatar_core.method.prompts import make_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from serve_openai import FAST_REPLY, SLOW_REPLY, Reply, StubOpenAIServer, completion, request_text  # noqa: E402

FAST_TEXT = re.search(r"<think>(.*)</think>", FAST_REPLY).group(1)
SLOW_TEXT = re.search(r"<think>(.*)</think>", SLOW_REPLY).group(1)
KNOWN = re.compile(r"Known score: ([0-9]+\.[0-9]+)")


def make_rows(tmp_path: Path):
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (30, 90, 160)).save(img)
    rows, samples = [], {}
    for i, (task, text) in enumerate(
        [
            ("iqa", FAST_TEXT),
            ("iqa", FAST_TEXT),
            ("iaa", SLOW_TEXT),
            ("iaa", SLOW_TEXT),
            ("iqa", FAST_TEXT),
            ("iqa", "Too short."),
            ("iaa", SLOW_TEXT),
        ]
    ):
        score = 20.0 + i
        rec = RationaleRecord(
            sample_id=f"r{i}",
            image_path=str(img),
            task=task,
            score=score,
            rationale=text,
            target=make_target(text, score),
            teacher="t",
            n_words=count_words(text),
        )
        rows.append(rec)
        samples[rec.sample_id] = SampleRecord(
            sample_id=rec.sample_id, image_path=str(img), task=task, score=score, split="train", source="t", ref_id="x"
        )
    rows[6] = rows[6].model_copy(update={"target": make_target(SLOW_TEXT, 99.0)})  # answer != score
    return rows, samples


def verdict(task: str, decision="keep", **scores):
    crit = {
        "iqa": ["visual_fidelity", "technical_rigor", "score_consistency"],
        "iaa": ["attribute_coverage", "groundedness", "reasoning_cohesion", "score_derivation"],
    }[task]
    return json.dumps(
        {
            "decision": decision,
            "overall_confidence": 70,
            "scores": {c: scores.get(c, 4) for c in crit},
            "major_issues": [],
            "minor_notes": [],
        }
    )


SCRIPT = {
    "20.00": lambda: completion(verdict("iqa")),  # keep
    "21.00": lambda: completion(verdict("iqa", "reject", visual_fidelity=1)),  # reject, 2 reasons
    "22.00": lambda: completion("```json\n" + verdict("iaa") + "\n```"),  # keep (fenced)
    "23.00": lambda: completion(verdict("iaa", groundedness=2, reasoning_cohesion=1)),  # 2 reasons
    "24.00": lambda: completion("I cannot produce JSON, sorry."),  # malformed
}


def judge_cfg(url: str, **kw) -> FilterConfig:
    ep = EndpointConfig(
        base_url=url, model="judge", timeout_s=2, max_retries=1, backoff_base_s=0.01, concurrency=3, image_max_side=32
    )
    return FilterConfig(judge=JudgeConfig(enabled=True, endpoint=ep, max_attempts=2, **kw))


def test_rules_then_judge(tmp_path):
    rows, samples = make_rows(tmp_path)
    behaviour = lambda req, n: Reply(body=SCRIPT[KNOWN.search(request_text(req)).group(1)]())  # noqa: E731
    with StubOpenAIServer(behaviour) as srv:
        kept, rejected = filter_rationales(rows, samples, judge_cfg(srv.base_url), progress=False)
        judged = sorted(KNOWN.search(request_text(r)).group(1) for r in srv.requests)
    # rule failures (r5 too short, r6 answer mismatch) never reach the judge; the malformed row is asked twice
    assert judged == ["20.00", "21.00", "22.00", "23.00", "24.00", "24.00"]
    assert [k.sample_id for k in kept] == ["r0", "r2"]
    assert all(json.loads(k.judge)["decision"] == "keep" for k in kept)
    rej = {r.sample_id: r for r in rejected}
    assert [r.sample_id for r in rejected] == ["r1", "r3", "r4", "r5", "r6"]
    assert rej["r1"].reasons == ["judge: decision=reject", "judge: visual_fidelity 1 <= 2"]
    assert rej["r3"].reasons == ["judge: groundedness 2 <= 2", "judge: reasoning_cohesion 1 <= 2"]
    assert rej["r4"].reasons[0].startswith("judge: malformed verdict (after 2 attempts")
    assert rej["r5"].reasons == ["words: iqa 2 < 20"] and rej["r5"].judge == ""
    assert any(x.startswith("answer_mismatch") for x in rej["r6"].reasons)
    # IAA judge prompts carry the local aspect coverage
    iaa_req = next(r for r in srv.requests if "22.00" in request_text(r))
    assert "composition" in request_text(iaa_req).split("local check found covered:")[1].split("\n")[0]

    counts = reason_counts(rejected)
    assert {"task": "iqa", "reason": "judge: visual_fidelity", "count": 1} in counts
    assert {"task": "iqa", "reason": "judge: malformed", "count": 1} in counts
    assert {"task": "iaa", "reason": "answer_mismatch", "count": 1} in counts
    assert sum(c["count"] for c in counts if c["task"] == "iaa") == 3  # r3 twice-coded, r6 once
    # outputs round-trip through the validated Parquet writer
    write_records(kept, tmp_path / "kept.parquet", KeptRecord)
    write_records(rejected, tmp_path / "rejected.parquet", RejectedRecord)
    assert read_records(tmp_path / "rejected.parquet", RejectedRecord)[0].reasons == rej["r1"].reasons


def test_rules_only_when_judge_disabled(tmp_path):
    rows, samples = make_rows(tmp_path)
    with StubOpenAIServer() as srv:
        cfg = judge_cfg(srv.base_url).model_copy(update={"judge": JudgeConfig(enabled=False)})
        kept, rejected = filter_rationales(rows, samples, cfg, progress=False)
        assert srv.requests == []
    assert [k.sample_id for k in kept] == ["r0", "r1", "r2", "r3", "r4"] and all(k.judge == "" for k in kept)
    missing = rows[0].model_copy(update={"image_path": str(tmp_path / "gone.png")})
    kept, rejected = filter_rationales([missing], {}, cfg, progress=False)
    assert not kept and rejected[0].reasons == [f"image_missing: {tmp_path / 'gone.png'}"]


def test_reason_code():
    assert reason_code("words: iqa 72 > 65") == "words"
    assert reason_code("judge: decision=reject") == "judge: decision"
    assert reason_code("judge: malformed verdict (after 3 attempts: x)") == "judge: malformed"
    assert reason_code("number_in_rationale") == "number_in_rationale"
