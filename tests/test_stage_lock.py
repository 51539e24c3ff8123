"""Two runs of one stage at once, as real `tatar run` processes on one run folder: the stage folder's lock makes the
second run of the same key wait and then report the stage as cached (or, with locking.wait=false, fail at once naming
the holder); a run of another key does not wait. The first run is frozen with SIGSTOP while it holds the lock, so the
overlap is certain, not a matter of timing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from e2e_support import TINY_SAMPLES  # tests/ is on the path

from data_contracts.config import load_config
from tatar_core.code_version import PROJECT_ROOT
from tatar_core.pipeline.locks import holder_path
from tatar_core.pipeline.runner import Pipeline


def _tatar(cfg: Path, *extra: str, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "tatar_core.cli.main", "run", str(cfg), "--stage", "samples", *extra]
    return subprocess.Popen(cmd, stdout=open(out, "w"), stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)


def _until(cond, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_second_run_of_a_key_waits_then_reports_cached_and_other_keys_do_not_wait(tmp_path):
    cfg = load_config("configs/demo.yaml", {**TINY_SAMPLES, "run_dir": str(tmp_path / "run")})
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    pipe = Pipeline(cfg, log=lambda _: None)
    stage_dir = pipe.dir("samples")

    first = _tatar(cfg_path, out=tmp_path / "first.log")
    try:
        _until(
            lambda: (
                json.loads(holder_path(stage_dir).read_text()).get("pid") == first.pid
                if holder_path(stage_dir).exists()
                else False
            ),
            "the first run to take the lock",
        )
        os.kill(first.pid, signal.SIGSTOP)  # it holds the stage, mid-work

        # locking.wait=false: fails at once, naming the holder
        t0 = time.time()
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "tatar_core.cli.main",
                "run",
                str(cfg_path),
                "--stage",
                "samples",
                "--set",
                "locking.wait=false",
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
            cwd=PROJECT_ROOT,
            timeout=120,
        )
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"is being run by pid {first.pid} on " in refused.stderr and "since 20" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
        assert time.time() - t0 < 60

        # another key (another samples config) runs while the first is frozen
        other = subprocess.run(
            [
                sys.executable,
                "-m",
                "tatar_core.cli.main",
                "run",
                str(cfg_path),
                "--stage",
                "samples",
                "--set",
                "samples.demo.seed=1",
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
            cwd=PROJECT_ROOT,
            timeout=120,
        )
        assert other.returncode == 0 and "samples     ran" in other.stdout, other.stdout + other.stderr

        # the same key waits ...
        second = _tatar(cfg_path, out=tmp_path / "second.log")
        _until(lambda: "waiting:" in (tmp_path / "second.log").read_text(), "the second run to wait")
        assert f"being run by pid {first.pid}" in (tmp_path / "second.log").read_text()
        time.sleep(1.0)
        assert second.poll() is None, "the second run did not wait"
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(120) == 0, (tmp_path / "first.log").read_text()
    assert second.wait(120) == 0, (tmp_path / "second.log").read_text()
    # ... and then reports it as cached: the stage ran once, its rows once
    assert "samples     ran" in (tmp_path / "first.log").read_text()
    log2 = (tmp_path / "second.log").read_text()
    assert "cached (finished by another run meanwhile)" in log2 and "samples     cached" in log2
    m = pipe.manifest("samples")
    rows = pl.read_parquet(stage_dir / "samples.parquet")
    assert m is not None and len(rows) == m.row_counts["samples"] and rows["sample_id"].is_unique().all()
    assert not holder_path(stage_dir).exists()
    leftovers = [p.name for p in stage_dir.rglob("*.tmp")]
    assert leftovers == []
