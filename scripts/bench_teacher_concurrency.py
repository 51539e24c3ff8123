#!/usr/bin/env python
"""Benchmark: teacher throughput vs. concurrency through generate_rationales + the real openai client.

A local stub OpenAI server (scripts/serve_openai.py, real sockets) answers every request after a fixed latency
(default 200 ms). We time N requests (default 200) at concurrency 1 and at 16 and print both times and the
speed-up ratio; the target is ratio ≥ 8.

    python scripts/bench_teacher_concurrency.py [--n 200] [--latency 0.2] [--high 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from PIL import Image  # noqa: E402
from serve_openai import StubOpenAIServer  # noqa: E402

from data_contracts.config.rationales import EndpointConfig, TeacherConfig  # noqa: E402
from data_contracts.records import SampleRecord  # noqa: E402
from tatar_core.rationales.openai_teacher import OpenAITeacher  # noqa: E402
from tatar_core.rationales.runner import generate_rationales  # noqa: E402


def run_once(n: int, latency: float, concurrency: int, work: Path) -> tuple[float, int, int]:
    img = work / "img.png"
    if not img.exists():
        Image.new("RGB", (256, 256), (90, 140, 60)).save(img)
    samples = [
        SampleRecord(
            sample_id=f"b{i:04d}",
            image_path=str(img),
            task="iqa",
            score=float(i % 100),
            split="train",
            source="bench",
            ref_id=f"r{i}",
        )
        for i in range(n)
    ]
    out = work / f"c{concurrency}"
    with StubOpenAIServer(latency_s=latency) as srv:
        ep = EndpointConfig(base_url=srv.base_url, model="bench", concurrency=concurrency, timeout_s=30)
        teacher = OpenAITeacher(TeacherConfig(kind="openai", endpoint=ep))
        t0 = time.perf_counter()
        res = generate_rationales(samples, teacher, out, shard_size=32, concurrency=concurrency, progress=False)
        dt = time.perf_counter() - t0
        n_req, peak = len(srv.requests), srv.max_in_flight
    if len(res.records) != n or res.failed:
        raise SystemExit(f"concurrency {concurrency}: {len(res.records)} rows, {len(res.failed)} failed")
    return dt, n_req, peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per request at the server")
    ap.add_argument("--high", type=int, default=16, help="the high concurrency")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t1, r1, p1 = run_once(args.n, args.latency, 1, work)
        print(
            f"concurrency 1:  {args.n} requests in {t1:.2f} s ({args.n / t1:.1f} req/s, peak in flight {p1})",
            flush=True,
        )
        th, rh, ph = run_once(args.n, args.latency, args.high, work)
        print(
            f"concurrency {args.high}: {args.n} requests in {th:.2f} s ({args.n / th:.1f} req/s, peak in flight {ph})",
            flush=True,
        )
    ratio = t1 / th
    ideal = args.n * args.latency
    print(
        f"ratio {ratio:.2f} (target >= 8); ideal serial time {ideal:.1f} s, ideal parallel {ideal / args.high:.2f} s"
    )
    return 0 if ratio >= 8 else 1


if __name__ == "__main__":
    sys.exit(main())
