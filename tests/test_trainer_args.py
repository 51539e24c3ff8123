"""trl's own arguments pass through (`sft.trainer_args`, `grpo.trainer_args`, `model.load_args`), checked when the
config loads: an unknown key or one the project sets fails before any work, naming the key and the file."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from data_contracts import ConfigError
from data_contracts.config import load_config
from data_contracts.config.trainer_fields import trainer_fields


def _config(tmp_path, **sections):
    base = yaml.safe_load(open("configs/demo.yaml"))
    for name, value in sections.items():
        base[name] = {**base[name], **value}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def test_field_names_are_trls():
    import trl

    assert trainer_fields("sft") == {f.name for f in dataclasses.fields(trl.SFTConfig)}
    assert trainer_fields("grpo") == {f.name for f in dataclasses.fields(trl.GRPOConfig)}


def test_a_spurious_ast_systemerror_from_a_concurrent_parse_is_retried(monkeypatch):
    """CPython 3.11 can fail an `ast.parse` that overlaps another thread's with `SystemError: AST constructor
    recursion depth mismatch` (seen in a Prefect flow-run process: the stage crashed while loading its config). The
    race cannot be produced on demand, so the first parse of each file raises that error here."""
    import ast
    import types

    from data_contracts.config import trainer_fields as tf

    real_parse, failed = ast.parse, set()

    def parse_failing_once(source, filename="<unknown>", *args, **kwargs):
        if filename not in failed:
            failed.add(filename)
            raise SystemError("AST constructor recursion depth mismatch (before=60, after=75)")
        return real_parse(source, filename, *args, **kwargs)

    monkeypatch.setattr(
        tf, "ast", types.SimpleNamespace(**{**vars(ast), "parse": parse_failing_once})
    )  # only its parses
    tf._parse.cache_clear()
    tf.trainer_fields.cache_clear()
    try:
        import trl

        assert tf.trainer_fields("grpo") == {f.name for f in dataclasses.fields(trl.GRPOConfig)}
        assert len(failed) >= 2  # grpo_config.py and its bases' modules each failed once, then parsed
    finally:
        tf._parse.cache_clear()
        tf.trainer_fields.cache_clear()


def test_grpo_trainer_args_reach_grpoconfig(tmp_path):
    from tatar_core.training.grpo import batch_plan, grpo_args

    cfg = load_config(_config(tmp_path, grpo={"trainer_args": {"max_grad_norm": 0.5, "logging_steps": 3}}))
    args = grpo_args(cfg.grpo, batch_plan(cfg.grpo, 1), 5, tmp_path)
    assert args.max_grad_norm == 0.5 and args.logging_steps == 3
    assert args.max_steps == 5 and args.steps_per_generation == args.gradient_accumulation_steps  # project's own


def test_sft_trainer_args_reach_sftconfig(tmp_path):
    from tatar_core.training.sft import sft_args

    cfg = load_config(_config(tmp_path, sft={"trainer_args": {"max_grad_norm": 0.25, "optim": "adamw_torch"}}))
    args = sft_args(cfg.sft, tmp_path)
    assert args.max_grad_norm == 0.25 and args.optim == "adamw_torch" and args.max_length is None


@pytest.mark.parametrize(
    "section, key, message",
    [
        ("grpo", "max_grad_nrom", "unknown trl GRPOConfig field 'max_grad_nrom'"),
        ("sft", "learning_rate", "set sft.learning_rate, not trainer_args"),
        ("grpo", "steps_per_generation", "'steps_per_generation' is set by the project"),
        ("sft", "max_length", "'max_length' is set by the project"),
    ],
)
def test_bad_trainer_args_fail_naming_key_and_file(tmp_path, section, key, message):
    path = _config(tmp_path, **{section: {"trainer_args": {key: 1}}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and f"{section}.trainer_args" in text and message in text


def test_plan_refuses_a_typo_before_any_work(tmp_path, capsys):
    from tatar_core.cli.main import main

    path = _config(tmp_path, grpo={"trainer_args": {"max_grad_nrom": 0.5}})
    assert main(["plan", str(path)]) == 2
    assert "max_grad_nrom" in capsys.readouterr().err


def test_model_load_args_reach_from_pretrained(tiny_model_dir):
    from data_contracts.config.model import ModelConfig
    from tatar_core.models.loading import load_model_and_processor

    model, _ = load_model_and_processor(tiny_model_dir, ModelConfig(load_args={"attn_implementation": "eager"}))
    assert model.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="use model.dtype"):
        ModelConfig(load_args={"torch_dtype": "float16"})
