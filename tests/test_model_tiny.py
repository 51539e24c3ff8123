"""The embedded tiny model: deterministic build, processor type (not a bare tokenizer), inputs with pixels,
tokenizer facts (tags kept on decode, an IAA answer fits in 256 tokens), resolve_model caching and errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from data_contracts.config.model import EMBEDDED_MODEL, ModelConfig
from tatar_core.method.prompts import make_target
from tatar_core.models.loading import (
    build_inputs,
    embedded_model_dir,
    load_model_and_processor,
    load_processor,
    resolve_model,
)
from tatar_core.processor import ImageOnlyQwen2_5_VLProcessor


def _img(size=128, colour=(120, 60, 30)):
    return Image.new("RGB", (size, size), colour)


def test_same_seed_gives_identical_weights_and_files(tiny_model_dir, tmp_path):
    from tatar_core.demo.tiny import build_tiny_model

    again = build_tiny_model(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name


def test_other_seed_gives_other_weights(tiny_model_dir, tmp_path):
    from tatar_core.demo.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "seed1", seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny_model_dir / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()


def test_bpe_training_is_deterministic(tiny_model_dir):
    """A fresh (uncached) BPE training reproduces the saved tokenizer's vocabulary and merges."""
    from tatar_core.demo.tiny import train_bpe

    fresh = json.loads(train_bpe())
    saved = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    assert fresh["model"]["vocab"] == saved["model"]["vocab"]
    assert fresh["model"]["merges"] == saved["model"]["merges"]


def test_processor_is_multimodal_and_inputs_carry_pixels(tiny_model_dir):
    from transformers import AutoProcessor, ProcessorMixin

    model, processor = load_model_and_processor(tiny_model_dir)
    assert isinstance(processor, ProcessorMixin) and isinstance(processor, ImageOnlyQwen2_5_VLProcessor)
    auto = AutoProcessor.from_pretrained(tiny_model_dir)  # registration: not a bare tokenizer
    assert isinstance(auto, ImageOnlyQwen2_5_VLProcessor)
    batch = build_inputs(processor, [_img(), _img(96, (10, 200, 30))], ["iqa", "iaa"])
    assert "pixel_values" in batch and "image_grid_thw" in batch
    image_id = model.config.image_token_id
    # the quality view (8x8 native 14-px fragments) and the global view (112 px): 2 x 16 tokens after the 2x2 merge
    assert int((batch["input_ids"][0] == image_id).sum()) == 32
    assert type(processor.image_processor).__name__ == "QualityViewImageProcessor"
    out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert out.logits.shape[-1] == model.config.text_config.vocab_size


def test_pixel_range_from_model_config(tiny_model_dir):
    small = load_processor(tiny_model_dir, ModelConfig(min_pixels=28 * 28, max_pixels=56 * 56))
    batch = build_inputs(small, [_img()], ["iqa"])
    image_id = small.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch["input_ids"][0] == image_id).sum()) == 8  # 56 px views: 2 x (4x4 patches -> 4 tokens)


def test_tags_survive_decoding_and_iaa_answer_fits(tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    tok = processor.tokenizer
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    narrative = " ".join(
        [
            "The composition balances the subject against a calm background, and warm light gives the scene a gentle"
            " mood while colour harmony and texture support the theme."
        ]
        * 5
    )
    target = make_target(narrative, 73.42)
    assert 120 <= len(narrative.split()) <= 140
    ids = tok(target + "<|im_end|>")["input_ids"]
    assert len(ids) <= 256
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert len(tok(tag)["input_ids"]) == 1
    assert tok.decode(ids, skip_special_tokens=True) == target
    assert tok.tokenize("73.42") == ["73", ".", "42"]


def test_chat_template_and_generation_prompt(tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    from tatar_core.models.loading import chat_texts

    text = chat_texts(processor, ["iqa"])[0]
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 1
    assert text.endswith("<|im_start|>assistant\n")
    full = chat_texts(processor, ["iaa"], ["<think>\nx\n</think>\n<answer>50.00</answer>"])[0]
    assert full.endswith("<answer>50.00</answer><|im_end|>\n")


def test_resolve_model_builds_once_and_reuses(tmp_path):
    cfg = ModelConfig(path=EMBEDDED_MODEL, seed=3)
    first = resolve_model(cfg, tmp_path)
    assert first == embedded_model_dir(tmp_path, 3) and (first / "config.json").exists()
    assert first.name.startswith("tiny-qwen2.5-vl-seed3-")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(cfg, tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_resolve_model_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        resolve_model(ModelConfig(path=str(missing)), tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve_model(ModelConfig(path=str(empty)), tmp_path)
    with pytest.raises(ValueError, match="unknown embedded model"):
        resolve_model(ModelConfig(path="embedded:other"), tmp_path)


def test_local_folder_is_used_as_is(tiny_model_dir, tmp_path):
    assert resolve_model(ModelConfig(path=str(tiny_model_dir)), tmp_path) == tiny_model_dir
    with pytest.raises(ValueError, match="dtype"):
        load_model_and_processor(tiny_model_dir, ModelConfig(dtype="float64"))
