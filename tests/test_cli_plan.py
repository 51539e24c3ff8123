"""`tatar plan` validates a config on CPU without loading weights and prints the plan; `tatar summary` reads a run."""

import subprocess
import sys

from data_contracts.config import STAGES, load_config
from tatar_core.pipeline.keys import stage_keys


def _tatar(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tatar_core.cli.main", *args], capture_output=True, text=True, cwd=cwd
    )


def test_plan_paper_profile_prints_stages_keys_launch_and_missing_paths():
    p = _tatar("plan", "configs/paper.yaml")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    keys = stage_keys(load_config("configs/paper.yaml"))
    for stage in STAGES:
        assert f"{stage}  [" in out and keys[stage][:16] in out
    assert out.count("accelerate launch") == 2 and "--deepspeed_config_file configs/zero3.json" in out
    assert "effective batch 128" in out and "16 prompts x G=8" in out and "score-token loss" not in out
    assert "model.path: /models/Qwen2.5-VL-7B-Instruct" in out
    assert "samples.datasets[0].root: /data/koniq10k" in out
    assert _tatar("plan", "configs/paper.yaml", "--strict").returncode == 1


def test_plan_names_the_sft_score_token_loss_when_it_is_on():
    p = _tatar("plan", "configs/paper.yaml", "--set", "sft.score_loss_weight=0.5", "--set", "sft.score_label_sigma=3")
    assert p.returncode == 0, p.stderr
    assert "score-token loss w 0.5, soft label sigma 3 points" in p.stdout


def test_plan_does_not_import_torch():
    code = (
        "import sys; from tatar_core.cli.main import main; main(['plan', 'configs/paper.yaml']); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.strip().endswith("NO-TORCH"), p.stdout[-500:] + p.stderr[-500:]


def test_bad_config_fails_with_the_key_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo:\n  num_generation: 8\n")
    p = _tatar("plan", str(bad))
    assert p.returncode == 2 and "unknown key 'grpo.num_generation'" in p.stderr and "Traceback" not in p.stderr


def test_summary_before_any_run(tmp_path):
    p = _tatar("summary", "configs/demo.yaml", "--set", f"run_dir={tmp_path}")
    assert p.returncode == 0 and "has not finished" in p.stdout and "not finished" in p.stdout


def test_score_defaults_to_the_newest_finished_grpo_model(tmp_path):
    import os
    import time

    from tatar_core.cli.score import latest_trained_model

    assert latest_trained_model(tmp_path) is None
    for i, name in enumerate(("old", "new")):
        d = tmp_path / name / "grpo" / f"key{i}"
        (d / "model").mkdir(parents=True)
        (d / "manifest.json").write_text("{}")
        os.utime(d / "manifest.json", (time.time() + i, time.time() + i))
    (tmp_path / "newest-unfinished" / "grpo" / "k").mkdir(parents=True)  # no manifest: not finished
    assert latest_trained_model(tmp_path) == tmp_path / "new" / "grpo" / "key1" / "model"
