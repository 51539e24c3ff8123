"""The API key is used for requests but appears in no byte of any file the rationale/filter code writes."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

from PIL import Image

from data_contracts.config.rationales import EndpointConfig, FilterConfig, JudgeConfig, TeacherConfig
from data_contracts.parquet_io import read_records, write_records
from data_contracts.records import FailedRecord, KeptRecord, RejectedRecord, SampleRecord
from tatar_core.cli.inspect_parquet import inspect_parquet
from tatar_core.filtered.stage import filter_rationales, reason_counts
from tatar_core.rationales.openai_teacher import make_teacher
from tatar_core.rationales.runner import generate_rationales

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from serve_openai import Reply, StubOpenAIServer, completion, default_reply, request_text  # noqa: E402

KEY = "sk-tatar-FAKEKEY-7f3a9c1e5b2d8046"
JUDGE_KEY = "jk-tatar-JUDGEKEY-0d9c8b7a6f5e4d3c"
SCORE = re.compile(r"score: ([0-9]+\.[0-9]+)")


def behaviour(req: dict, n: int):
    text = request_text(req)
    idx = int(float(SCORE.search(text).group(1))) - 30
    judge = "auditor" in text
    k = JUDGE_KEY if judge else KEY
    if idx % 4 == 1:  # auth failure echoing the key, as some servers do
        return Reply(401, {"error": {"message": f"Incorrect API key provided: {k}", "code": "invalid_api_key"}})
    if idx % 4 == 2:  # a 500 that echoes a partially masked key
        return Reply(500, {"error": {"message": f"upstream rejected key {k[:12]}...{k[-10:]}"}})
    if judge and idx % 4 == 0:  # a verdict whose notes quote the key back
        crit = (
            ["visual_fidelity", "technical_rigor", "score_consistency"]
            if "visual_fidelity" in text
            else ["attribute_coverage", "groundedness", "reasoning_cohesion", "score_derivation"]
        )
        v = {"decision": "keep", "scores": {c: 4 for c in crit}, "major_issues": [f"saw header Bearer {k}"]}
        return Reply(body=completion(json.dumps(v)))
    if judge:
        return Reply(body=completion(f"no verdict, but here is your key: {k}"))  # malformed
    return default_reply(req)


def test_key_never_written(tmp_path, monkeypatch, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TATAR_TEST_API_KEY", KEY)
    img = tmp_path / "img.png"
    Image.new("RGB", (48, 48), (5, 200, 90)).save(img)
    samples = [
        SampleRecord(
            sample_id=f"k{i}",
            image_path=str(img),
            task="iqa" if i % 2 else "iaa",
            score=30.0 + i,
            split="train",
            source="t",
            ref_id=f"r{i}",
        )
        for i in range(12)
    ]
    out = tmp_path / "out"
    with StubOpenAIServer(behaviour) as srv:
        ep = EndpointConfig(
            base_url=srv.base_url.replace("127.0.0.1", "localhost"),
            model="m",
            api_key_env="TATAR_TEST_API_KEY",
            max_retries=1,
            backoff_base_s=0.01,
            timeout_s=3,
        )
        teacher = make_teacher(TeacherConfig(kind="openai", endpoint=ep))
        res = generate_rationales(samples, teacher, out / "rationales", shard_size=2, concurrency=4)
        assert len(res.records) == 6 and len(res.failed) == 6  # idx % 4 in (1, 2) fail
        assert any("401" in f.error for f in res.failed) and any("500" in f.error for f in res.failed)

        # the judge gets its key from a (Prefect-like) secret resolver
        jep = ep.model_copy(update={"api_key_env": "UNSET_VAR_FOR_TEST", "api_key_secret": "judge-block"})
        cfg = FilterConfig(judge=JudgeConfig(enabled=True, endpoint=jep, max_attempts=2))
        cfg.rules.iaa_min_words = 1
        kept, rejected = filter_rationales(
            res.records,
            {s.sample_id: s for s in samples},
            cfg,
            secret_resolver=lambda name: JUDGE_KEY if name == "judge-block" else "",
        )
        auth = [h.get("authorization") for h in srv.headers]
    assert f"Bearer {KEY}" in auth and f"Bearer {JUDGE_KEY}" in auth  # the keys were really used
    assert kept and rejected
    write_records(kept, out / "filtered" / "kept.parquet", KeptRecord)
    write_records(rejected, out / "filtered" / "rejected.parquet", RejectedRecord)
    (out / "filtered" / "reasons.json").write_text(json.dumps(reason_counts(rejected)))
    for p in [
        out / "rationales" / "rationales.parquet",
        out / "rationales" / "failed.parquet",
        out / "filtered" / "rejected.parquet",
    ]:
        (p.parent / (p.stem + ".txt")).write_text(inspect_parquet(p, n_rows=20))
    assert read_records(out / "rationales" / "failed.parquet", FailedRecord)

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for secret in (KEY, JUDGE_KEY):
        for frag in (secret, secret[:12], secret[-10:]):
            for p in files:
                assert frag.encode() not in p.read_bytes(), f"{frag!r} found in {p}"
            captured = capfd.readouterr()
            assert frag not in captured.out + captured.err
            assert frag not in caplog.text
