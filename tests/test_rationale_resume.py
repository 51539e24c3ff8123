"""Resumable generation: a real SIGKILL mid-run, then a rerun that finishes with exactly one row per sample."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from PIL import Image

from data_contracts.parquet_io import read_records
from data_contracts.records import FailedRecord, RationaleRecord, SampleRecord
from tatar_core.method.prompts import make_target
from tatar_core.rationales.runner import generate_rationales
from tatar_core.rationales.shards import read_shards, shard_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from serve_openai import StubOpenAIServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N = 200

CHILD = textwrap.dedent("""
    import json, sys
    from data_contracts.config.rationales import EndpointConfig, TeacherConfig
    from data_contracts.records import SampleRecord
    from tatar_core.rationales.runner import generate_rationales
    from tatar_core.rationales.openai_teacher import OpenAITeacher
    base_url, samples_file, out_dir = sys.argv[1:4]
    samples = [SampleRecord.model_validate(r) for r in json.load(open(samples_file))]
    ep = EndpointConfig(base_url=base_url, model="stub", concurrency=4, timeout_s=5, image_max_side=32)
    teacher = OpenAITeacher(TeacherConfig(kind="openai", endpoint=ep))
    print("teacher", teacher.teacher_id, flush=True)
    generate_rationales(samples, teacher, out_dir, shard_size=10, concurrency=4, progress=False)
    print("finished", flush=True)
""")


def _samples(tmp_path: Path) -> list[SampleRecord]:
    img = tmp_path / "img.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(img)
    return [
        SampleRecord(
            sample_id=f"s{i:03d}",
            image_path=str(img),
            task="iqa" if i % 3 else "iaa",
            score=round(i * 0.5, 2),
            split="train",
            source="test",
            ref_id=f"r{i}",
        )
        for i in range(N)
    ]


def test_sigkill_midrun_then_resume(tmp_path):
    samples = _samples(tmp_path)
    (tmp_path / "samples.json").write_text(json.dumps([s.model_dump() for s in samples]))
    (tmp_path / "child.py").write_text(CHILD)
    out = tmp_path / "run"
    with StubOpenAIServer(latency_s=0.04) as srv:  # 200 rows / 4 in flight × 40 ms ≈ 2 s of work
        child = subprocess.Popen(
            [sys.executable, str(tmp_path / "child.py"), srv.base_url, str(tmp_path / "samples.json"), str(out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ | {"PYTHONPATH": str(REPO)},
        )
        deadline = time.monotonic() + 60
        while len(shard_paths(out / "shards")) < 4:
            assert child.poll() is None, child.stdout.read()
            assert time.monotonic() < deadline, "no shards appeared"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        log = child.stdout.read()
        assert child.returncode == -signal.SIGKILL and "finished" not in log
        teacher_id = log.split("teacher ", 1)[1].split()[0]

        saved = read_shards(out / "shards", RationaleRecord)
        assert 40 <= len(saved) < N and len({r.sample_id for r in saved}) == len(saved)
        assert not (out / "rationales.parquet").exists()
        n_before = len(srv.requests)
        assert n_before >= len(saved)
        # a crash between a shard write and its bookkeeping can leave duplicates: simulate one
        first = shard_paths(out / "shards")[0]
        shutil.copy(first, first.with_name("shard-99999999999999999999-1-000000.parquet"))
        # and a kill during a shard write leaves a half-written temp file (ignored, then cleaned up)
        (out / "shards" / ".shard-x.parquet.999999999.tmp").write_bytes(b"PAR1 half")

        from data_contracts.config.rationales import EndpointConfig, TeacherConfig
        from tatar_core.rationales.openai_teacher import OpenAITeacher

        ep = EndpointConfig(base_url=srv.base_url, model="stub", concurrency=4, timeout_s=5, image_max_side=32)
        teacher = OpenAITeacher(TeacherConfig(kind="openai", endpoint=ep))
        assert teacher.teacher_id == teacher_id
        res = generate_rationales(samples, teacher, out, shard_size=10, concurrency=4, progress=False)
        n_rerun = len(srv.requests) - n_before

    assert res.n_resumed == len(saved) and res.n_new == N - len(saved) and not res.failed
    assert n_rerun == N - len(saved)  # nothing already saved was asked for again
    rows = read_records(out / "rationales.parquet", RationaleRecord)
    assert [r.sample_id for r in rows] == [s.sample_id for s in samples]  # one per sample, none lost, in order
    for r, s in zip(rows, samples):
        assert r.score == s.score and r.target.endswith(f"<answer>{s.score:.2f}</answer>")
    assert read_records(out / "failed.parquet", FailedRecord) == []
    assert not list((out / "shards").glob(".*"))  # no temp files left by the finished run


class _SlowTeacher:
    """A sync teacher (thread pool path) that fails on selected samples."""

    teacher_id = "slow-sync-v1"

    def __init__(self, fail: set[str], delay: float = 0.0):
        self.fail, self.delay, self.calls = fail, delay, []

    def generate(self, s: SampleRecord) -> RationaleRecord:
        self.calls.append(s.sample_id)
        time.sleep(self.delay)
        if s.sample_id in self.fail:
            raise RuntimeError(f"cannot do {s.sample_id}")
        text = f"Rationale for {s.sample_id}."
        return RationaleRecord(
            sample_id=s.sample_id,
            image_path=s.image_path,
            task=s.task,
            score=s.score,
            rationale=text,
            target=make_target(text, s.score),
            teacher=self.teacher_id,
            n_words=len(text.split()),
        )


def test_sync_teacher_time_flush_failed_rows_and_teacher_key(tmp_path):
    samples = _samples(tmp_path)[:12]
    samples = samples + samples[:2]  # duplicate sample ids in the input are done once
    out = tmp_path / "run"
    t = _SlowTeacher(fail={"s003", "s007"}, delay=0.05)
    res = generate_rationales(samples, t, out, shard_size=1000, concurrency=2, progress=False, flush_every_s=0.1)
    assert len(res.records) == 10 and [f.sample_id for f in res.failed] == ["s003", "s007"]
    assert "cannot do s003" in res.failed[0].error and res.failed[0].teacher == "slow-sync-v1"
    assert len(shard_paths(out / "shards")) >= 2  # time-based flushes, not one shard at the end
    assert sorted(t.calls) == sorted({s.sample_id for s in samples})

    t2 = _SlowTeacher(fail=set())
    res2 = generate_rationales(samples, t2, out, shard_size=4, concurrency=2, progress=False)
    assert sorted(t2.calls) == ["s003", "s007"] and res2.n_resumed == 10 and not res2.failed

    # another teacher id does not reuse these rows
    t3 = _SlowTeacher(fail=set())
    t3.teacher_id = "other-teacher"
    res3 = generate_rationales(samples[:3], t3, out, shard_size=4, concurrency=2, progress=False)
    assert res3.n_resumed == 0 and len(t3.calls) == 3


def test_teacher_returning_wrong_record_is_a_failure(tmp_path):
    class Wrong(_SlowTeacher):
        def generate(self, s):
            r = super().generate(s)
            return r.model_copy(update={"sample_id": "zzz"})

    res = generate_rationales(_samples(tmp_path)[:2], Wrong(set()), tmp_path / "w", progress=False)
    assert not res.records and len(res.failed) == 2 and "TeacherOutputError" in res.failed[0].error


def test_offline_teacher_through_runner_and_filter(synthetic_samples, tmp_path):
    from data_contracts.config.rationales import FilterConfig, TeacherConfig
    from tatar_core.demo.teacher import OfflineTeacher
    from tatar_core.filtered.stage import filter_rationales
    from tatar_core.rationales.openai_teacher import make_teacher

    teacher = make_teacher(TeacherConfig())
    assert isinstance(teacher, OfflineTeacher)
    res = generate_rationales(synthetic_samples, teacher, tmp_path, shard_size=8, concurrency=2, progress=False)
    assert [r.sample_id for r in res.records] == [s.sample_id for s in synthetic_samples] and not res.failed
    assert len(shard_paths(tmp_path / "shards")) == len(synthetic_samples) // 8
    again = generate_rationales(synthetic_samples, teacher, tmp_path, shard_size=8, concurrency=2, progress=False)
    assert again.n_resumed == len(synthetic_samples) and again.n_new == 0 and again.records == res.records
    kept, rejected = filter_rationales(
        res.records, {s.sample_id: s for s in synthetic_samples}, FilterConfig(), progress=False
    )
    assert len(kept) == len(synthetic_samples) and not rejected
