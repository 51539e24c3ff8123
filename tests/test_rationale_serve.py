"""End to end against a REAL OpenAI-compatible server: `transformers serve` on the tiny model, via
    scripts/serve_openai.py.

The tiny model writes garbage: this checks the plumbing (requests reach the server through the real openai client,
every sample ends up as a row or a failed row, every rationale is kept or rejected with reasons), not quality.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from data_contracts.config.rationales import (
    Decoding,
    EndpointConfig,
    FilterConfig,
    JudgeConfig,
    RuleConfig,
    TeacherConfig,
)
from data_contracts.parquet_io import read_records
from data_contracts.records import FailedRecord, RationaleRecord, SampleRecord
from tatar_core.filtered.stage import filter_rationales
from tatar_core.method.prompts import make_target
from tatar_core.rationales.openai_teacher import make_teacher
from tatar_core.rationales.runner import generate_rationales

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_tiny_model(tiny_model_dir, tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "serve_openai.py"),
            str(tiny_model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy in 90 s"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", tmp_path / "server.log"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_teacher_and_judge_against_transformers_serve(served_tiny_model, tiny_model_dir, tmp_path):
    base_url, log_path = served_tiny_model
    img_a, img_b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (120, 90), (200, 40, 40)).save(img_a)
    Image.new("RGB", (90, 120), (40, 40, 200)).save(img_b)
    attrs = json.dumps({"Composition & Structure": "A centred subject.", "Visual Elements": "Strong reds."})
    samples = [
        SampleRecord(
            sample_id="q0", image_path=str(img_a), task="iqa", score=72.5, split="train", source="t", ref_id="a"
        ),
        SampleRecord(
            sample_id="q1", image_path=str(img_b), task="iqa", score=31.0, split="train", source="t", ref_id="b"
        ),
        SampleRecord(
            sample_id="a0",
            image_path=str(img_a),
            task="iaa",
            score=64.0,
            split="train",
            source="t",
            ref_id="a",
            attributes=attrs,
        ),
        SampleRecord(
            sample_id="a1", image_path=str(img_b), task="iaa", score=40.0, split="train", source="t", ref_id="b"
        ),
    ]
    ep = EndpointConfig(
        base_url=base_url,
        model=str(tiny_model_dir),
        concurrency=2,
        timeout_s=60,
        max_retries=1,
        backoff_base_s=0.1,
        image_max_side=112,
    )
    cfg = TeacherConfig(
        kind="openai",
        endpoint=ep,
        iqa=Decoding(temperature=0.3, top_p=0.8, max_tokens=40),
        iaa=Decoding(temperature=0.2, top_p=0.9, max_tokens=60),
    )
    teacher = make_teacher(cfg)
    out = tmp_path / "rationales"
    res = generate_rationales(samples, teacher, out, shard_size=2, concurrency=2, progress=False)

    rows = read_records(out / "rationales.parquet", RationaleRecord)
    failed = read_records(out / "failed.parquet", FailedRecord)
    assert sorted([r.sample_id for r in rows] + [f.sample_id for f in failed]) == sorted(s.sample_id for s in samples)
    assert len(rows) == len(res.records) and len({r.sample_id for r in rows}) == len(rows)
    assert rows, f"no row succeeded: {[f.error for f in failed]}"  # the garbage text still yields rationales
    for r in rows:
        assert r.teacher == teacher.teacher_id and r.target.endswith(f"<answer>{r.score:.2f}</answer>")
    assert all(f.error and f.attempts >= 1 for f in failed)
    n_teacher_requests = teacher.client.n_requests
    assert n_teacher_requests >= len(samples)

    # a clean hand-written row passes the rules, so the judge certainly gets asked about it
    text = "The frame is sharp with crisp edges throughout. Noise and compression artefacts are barely visible."
    clean = RationaleRecord(
        sample_id="q0",
        image_path=str(img_a),
        task="iqa",
        score=72.5,
        rationale=text,
        target=make_target(text, 72.5),
        teacher="hand",
        n_words=len(text.split()),
    )
    fcfg = FilterConfig(
        rules=RuleConfig(iqa_min_words=1, iaa_min_words=1, iaa_min_aspects=0),
        judge=JudgeConfig(enabled=True, endpoint=ep, max_tokens=40, max_attempts=2),
    )
    kept, rejected = filter_rationales(rows + [clean], {s.sample_id: s for s in samples}, fcfg, progress=False)
    assert len(kept) + len(rejected) == len(rows) + 1
    assert all(r.reasons for r in rejected)
    hand = [r for r in kept + rejected if r.teacher == "hand"][0]
    verdict = json.loads(hand.judge)
    assert verdict["judge"].startswith("judge:") and "request_failed" not in hand.judge
    if hand in rejected:  # the random model cannot write a verdict: retried, then recorded as malformed
        assert hand.reasons == [x for x in hand.reasons if x.startswith("judge: ")]
        assert any(x.startswith("judge: malformed verdict (after 2 attempts") for x in hand.reasons)

    served = log_path.read_text().count("POST /v1/chat/completions")
    assert served >= n_teacher_requests + 1  # teacher requests and at least one judge request reached the server
