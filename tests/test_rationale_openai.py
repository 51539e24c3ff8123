"""OpenAI teacher through the real `openai` client against a real local HTTP server (scripted failures)."""

from __future__ import annotations

import re
import sys
import threading
from collections import defaultdict
from pathlib import Path

from PIL import Image

from data_contracts.config.rationales import EndpointConfig, RationaleStyles, TeacherConfig
from data_contracts.parquet_io import read_records
from data_contracts.records import FailedRecord, RationaleRecord, SampleRecord
from tatar_core.rationales.openai_teacher import OpenAITeacher, make_teacher, teacher_id_for, teacher_messages
from tatar_core.rationales.runner import generate_rationales

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from serve_openai import Reply, StubOpenAIServer, completion, request_text  # noqa: E402

SCORE_RE = re.compile(r"score: ([0-9.]+)")


def make_samples(tmp_path: Path, n: int, task: str = "iqa", attributes: str = "") -> list[SampleRecord]:
    img = tmp_path / "img.png"
    Image.new("RGB", (96, 64), (120, 80, 40)).save(img)
    return [
        SampleRecord(
            sample_id=f"{task}-{i}",
            image_path=str(img),
            task=task,
            score=10.0 + i,
            split="train",
            source="test",
            ref_id=f"r{i}",
            attributes=attributes,
        )
        for i in range(n)
    ]


class Script:
    """Per-sample scripted behaviour: the sample is recognised by the score in the prompt (10.00 + index)."""

    def __init__(self, plans: dict[int, list]):
        self.plans = plans
        self.attempts: dict[int, int] = defaultdict(int)
        self.lock = threading.Lock()

    def __call__(self, req: dict, n: int):
        idx = int(float(SCORE_RE.search(request_text(req)).group(1)) - 10)
        with self.lock:
            self.attempts[idx] += 1
            k = self.attempts[idx]
        plan = self.plans.get(idx, [])
        if plan == "always500":
            return Reply(500, {"error": {"message": "server on fire"}})
        if plan == "auth":
            return Reply(401, {"error": {"message": "invalid api key"}})
        return plan[k - 1] if k <= len(plan) else None


def endpoint(url: str, **kw) -> EndpointConfig:
    base = dict(
        base_url=url,
        model="stub-teacher",
        timeout_s=0.6,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        concurrency=4,
        image_max_side=48,
    )
    return EndpointConfig(**(base | kw))


def test_retries_failures_and_second_run(tmp_path):
    plans = {
        0: [Reply(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "0"})],
        1: [Reply(500, "internal"), Reply(502, "bad gateway")],
        2: [Reply(delay_s=2.0)],  # past the 0.6 s timeout
        3: [Reply(200, "{this is not json")],  # malformed JSON body
        4: [Reply(200, completion(""))],  # empty content
        5: [Reply(200, completion("<think> </think><answer>15</answer>"))],  # no usable rationale
        6: "always500",
        7: "auth",
    }
    script = Script(plans)
    samples = make_samples(tmp_path, 9)
    out = tmp_path / "run"
    with StubOpenAIServer(script) as srv:
        teacher = OpenAITeacher(TeacherConfig(kind="openai", endpoint=endpoint(srv.base_url)))
        res = generate_rationales(samples, teacher, out, shard_size=3, concurrency=4, progress=False)
        n_first = len(srv.requests)

        # every scripted transient failure was retried exactly as often as scripted, then succeeded
        assert {s.sample_id for s in res.records} == {f"iqa-{i}" for i in (0, 1, 2, 3, 4, 5, 8)}
        for i, plan in plans.items():
            if isinstance(plan, list):
                assert script.attempts[i] == len(plan) + 1, i
        assert script.attempts[6] == 4 and script.attempts[7] == 1  # 1 + max_retries; auth is not retried
        failed = {f.sample_id: f for f in read_records(out / "failed.parquet", FailedRecord)}
        assert set(failed) == {"iqa-6", "iqa-7"}
        assert failed["iqa-6"].attempts == 4 and "HTTP 500" in failed["iqa-6"].error
        assert failed["iqa-7"].attempts == 1 and "HTTP 401" in failed["iqa-7"].error
        assert [f.sample_id for f in res.failed] == ["iqa-6", "iqa-7"]
        rows = read_records(out / "rationales.parquet", RationaleRecord)
        assert len(rows) == 7 and all(r.teacher == teacher.teacher_id for r in rows)
        for r in rows:
            assert r.target.endswith(f"<answer>{r.score:.2f}</answer>") and r.n_words == len(r.rationale.split())
            assert 0 < r.n_words <= 50 and "<" not in r.rationale

        # the server is healthy now: a second run does only the failed rows
        script.plans = {}
        res2 = generate_rationales(samples, teacher, out, shard_size=3, concurrency=4, progress=False)
        assert len(srv.requests) - n_first == 2
    assert res2.n_resumed == 7 and res2.n_new == 2 and not res2.failed
    rows = read_records(out / "rationales.parquet", RationaleRecord)
    assert [r.sample_id for r in rows] == [s.sample_id for s in samples]
    assert read_records(out / "failed.parquet", FailedRecord) == []


def test_requests_carry_image_decoding_and_bounded_concurrency(tmp_path):
    attrs = '{"Composition & Structure": "Centred subject.", "Visual Elements": "Warm tones.", "extra_note": "x"}'
    iqa = make_samples(tmp_path, 6)
    iaa = [
        s.model_copy(update={"sample_id": f"iaa-{i}", "task": "iaa", "attributes": attrs if i % 2 else ""})
        for i, s in enumerate(make_samples(tmp_path, 6))
    ]
    cfg = TeacherConfig(kind="openai", endpoint=endpoint("http://127.0.0.1:1/v1", concurrency=3))
    with StubOpenAIServer(latency_s=0.15) as srv:
        cfg = cfg.model_copy(update={"endpoint": endpoint(srv.base_url, concurrency=3)})
        teacher = make_teacher(cfg)
        assert isinstance(teacher, OpenAITeacher)
        res = generate_rationales(iqa + iaa, teacher, tmp_path / "run", shard_size=100, concurrency=8, progress=False)
        reqs = list(srv.requests)
        assert srv.max_in_flight <= 3 and teacher.client.max_in_flight <= 3
        assert srv.max_in_flight >= 2  # requests do overlap
    assert len(res.records) == 12 and not res.failed
    by_kind = defaultdict(list)
    for r in reqs:
        parts = r["messages"][1]["content"]
        has_img = any(p["type"] == "image_url" for p in parts)
        if has_img:
            url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
            assert url.startswith("data:image/png;base64,")
            import base64  # noqa: E401
            import io

            w, h = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size
            assert max(w, h) == 48  # downscaled to image_max_side
        text = request_text(r)
        kind = "iqa" if "quality score" in text else ("iaa-notes" if "Expert notes" in text else "iaa-image")
        by_kind[kind].append((r, has_img))
    assert len(by_kind["iqa"]) == 6 and len(by_kind["iaa-notes"]) == 3 and len(by_kind["iaa-image"]) == 3
    assert all(img for _, img in by_kind["iqa"] + by_kind["iaa-image"])
    assert not any(img for _, img in by_kind["iaa-notes"])  # notes present: text only
    r, _ = by_kind["iqa"][0]
    assert (r["temperature"], r["top_p"], r["max_tokens"]) == (0.3, 0.8, 140) and "</answer>" in r["stop"]
    r, _ = by_kind["iaa-notes"][0]
    assert (r["temperature"], r["top_p"], r["max_tokens"]) == (0.2, 0.9, 500)
    notes = request_text(r)
    assert notes.index("Visual elements: Warm tones.") < notes.index("Composition and structure: Centred subject.")
    assert "extra_note: x" in notes
    iaa_rows = [x for x in res.records if x.task == "iaa"]
    assert all(60 <= x.n_words <= 160 for x in iaa_rows)


def test_teacher_id_tracks_settings_not_secrets(monkeypatch):
    cfg = TeacherConfig(kind="openai", endpoint=EndpointConfig(model="m1"))
    tid = teacher_id_for(cfg)
    assert tid.startswith("openai:m1:")
    assert (
        teacher_id_for(
            cfg.model_copy(update={"endpoint": EndpointConfig(model="m1", base_url="http://x/v1", concurrency=2)})
        )
        == tid
    )
    iqa2 = cfg.iqa.model_copy(update={"temperature": 0.7})
    assert teacher_id_for(cfg.model_copy(update={"iqa": iqa2})) != tid
    assert teacher_id_for(cfg.model_copy(update={"same_style": True})) != tid
    assert teacher_id_for(cfg.model_copy(update={"endpoint": EndpointConfig(model="m2")})) != tid


def test_same_style_sends_slow_prompt_for_iqa(tmp_path):
    s = make_samples(tmp_path, 1)[0]
    fast = teacher_messages(s, TeacherConfig())
    slow = teacher_messages(s, TeacherConfig(same_style=True))
    assert "two sentences" in fast[1]["content"][1]["text"]
    assert "about 100 words" in slow[1]["content"][-1]["text"]


def test_fast_iaa_style_sends_two_sentence_aesthetic_prompt(tmp_path):
    s = make_samples(tmp_path, 1, task="iaa")[0]
    fast = teacher_messages(s, TeacherConfig(style={"iaa": "fast"}))
    assert "two sentences" in fast[1]["content"][-1]["text"] and "aesthetic" in fast[0]["content"]
    assert "about 100 words" in teacher_messages(s, TeacherConfig())[1]["content"][-1]["text"]
    cfg = TeacherConfig(kind="openai")
    assert teacher_id_for(cfg.model_copy(update={"style": RationaleStyles(iaa="fast")})) != teacher_id_for(cfg)
    assert teacher_id_for(TeacherConfig(kind="openai", style={"iqa": "slow", "iaa": "slow"})) == teacher_id_for(
        cfg.model_copy(update={"same_style": True})
    )
