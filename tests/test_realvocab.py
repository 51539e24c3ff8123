"""The embedded real-vocabulary model (`embedded:tiny-qwen2.5-vl-realvocab`): Qwen2.5-VL-7B-Instruct's tokenizer
exactly (known ids and encodings), on which the tags are several tokens that merge with their neighbours; the
parser, the scorer (stop at the multi-token `</answer>`, drafts, batch vs one image, expected readout), SFT and
GRPO run on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_contracts.config.model import EMBEDDED_MODELS, EMBEDDED_REALVOCAB_MODEL, ModelConfig
from tatar_core.method.parsing import parse_answer
from tatar_core.method.prompts import make_target

KNOWN = {
    "Hello, world!": [9707, 11, 1879, 0],
    "The quick brown fox.": [785, 3974, 13876, 38835, 13],
    "Describe this image in detail.": [74785, 419, 2168, 304, 7716, 13],
}


def _images(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(112, 112), (64, 48), (96, 72), (40, 120)]  # several prompt lengths: left padding in a batch
    return [
        Image.fromarray(rng.integers(0, 255, (h, w, 3)).astype(np.uint8), "RGB")
        for w, h in (sizes[i % len(sizes)] for i in range(n))
    ]


@pytest.fixture(scope="module")
def processor(realvocab_model_dir):
    from tatar_core.models.loading import load_processor

    return load_processor(realvocab_model_dir)


def test_the_tokenizer_is_qwen2_5_vls(realvocab_model_dir, processor):
    from transformers import AutoConfig
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    tok = processor.tokenizer
    assert EMBEDDED_MODELS[EMBEDDED_REALVOCAB_MODEL] == "qwen2.5-vl"
    assert realvocab_model_dir.name.startswith("tiny-qwen2.5-vl-realvocab-seed0-")
    for text, ids in KNOWN.items():
        assert tok.encode(text, add_special_tokens=False) == ids, text
    assert len(tok) == 151_665
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|file_sep|>")
    }
    assert ids == {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<|image_pad|>": 151655,
        "<|file_sep|>": 151664,
    }
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    config = AutoConfig.from_pretrained(realvocab_model_dir)
    assert config.text_config.vocab_size == 152_064
    assert (config.image_token_id, config.vision_start_token_id, config.eos_token_id) == (151655, 151652, 151645)
    assert tok.chat_template == qwen2_5_vl_chat_template
    # the tags are not single tokens here, and they merge with what follows them
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert len(tok.encode(tag, add_special_tokens=False)) > 1, tag
    assert len(tok.encode("><", add_special_tokens=False)) == 1
    assert tok.tokenize("</think>\n<answer>") == ["</", "think", ">Ċ", "<", "answer", ">"]
    assert tok.tokenize("73.42") == ["7", "3", ".", "4", "2"]


def test_parser_reads_what_the_tokenizer_decodes(processor):
    tok = processor.tokenizer
    for think, score in (("", 73.42), ("Sharp and clean; no visible noise.", 5.0), ("Mood: calm.\nLight: soft.", 100)):
        target = make_target(think, score)
        ids = tok.encode(target + "<|im_end|>", add_special_tokens=False)
        text = tok.decode(ids, skip_special_tokens=True)
        assert text == target
        p = parse_answer(text)
        assert p.status == "strict" and p.score == pytest.approx(float(score)) and p.think == think
        assert "".join(tok.decode([i]) for i in ids[:-1]) == target  # every piece decodes on its own (ASCII)


def test_cached_prompt_inputs_equal_the_processor_outputs(processor):
    from tatar_core.models.loading import build_inputs, chat_texts

    images = _images(4, seed=3)
    cache: dict = {}
    for tasks in (["iqa"] * 4, ["iqa", "iaa", "iaa", "iqa"]):
        ours = build_inputs(processor, images, tasks, prompt_cache=cache)
        ref = processor(
            text=chat_texts(processor, tasks),
            images=[[im] for im in images],
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )
        assert set(ours.keys()) == set(ref.keys())
        for key in ref.keys():
            assert torch.equal(ours[key], ref[key]), key
        assert torch.equal(build_inputs(processor, images, tasks)["input_ids"], ref["input_ids"])  # left padded


def test_sft_on_the_real_vocabulary(realvocab_sft_checkpoint):
    from tatar_core.models.draft_corpus import read_corpus

    result = json.loads((realvocab_sft_checkpoint.parent / "sft_result.json").read_text())
    assert result["steps"] == result["max_steps"] and result["last_logged_loss"] < 0.5 * result["first_logged_loss"]
    assert set(read_corpus(realvocab_sft_checkpoint)) == {"iqa"}


@pytest.fixture(scope="module")
def scorer(realvocab_sft_checkpoint):
    from tatar_core.scoring.scorer import Scorer

    return Scorer(realvocab_sft_checkpoint, batch_size=8, max_new_tokens=48)


def test_scorer_stops_after_the_multi_token_answer_close(realvocab_sft_checkpoint, scorer, synthetic_kept):
    """`</answer>` is 3 tokens and its ">" merges with what follows: the scorer stops on every such form and cuts
    after the tag; a batch of 8 = one image at a time = plain HF `generate` cut after `</answer>`. The fixture's
    own training image comes first: whether a few steps write `</answer>` for the noise images depends on the CPU's
    floating-point order (measured: yes on one machine, no on another); for the image it was trained on it does.
    """
    from tatar_core.images import load_rgb
    from tatar_core.models.loading import build_inputs, load_model_and_processor
    from tatar_core.scoring.scorer import Scorer

    tok = scorer.tokenizer
    close = tok.encode("</answer>", add_special_tokens=False)
    assert len(close) == 3 and scorer.stops.answer_close_id is None and close in scorer.stop_seqs
    merged = tok.convert_tokens_to_ids(">Ċ")  # "</answer>\n" ends in one token ">\n"
    assert close[:2] + [merged] in scorer.stop_seqs and all(s[:2] == close[:2] for s in scorer.stop_seqs)
    trained = next(k for k in synthetic_kept if k.task == "iqa")  # the fixture's one training row
    images = [load_rgb(trained.image_path)] + _images(5, seed=5)
    model, processor = load_model_and_processor(realvocab_sft_checkpoint)
    single = Scorer(realvocab_sft_checkpoint, batch_size=1, max_new_tokens=48, draft_tokens=0)
    closed = 0
    for task in ("iqa", "iaa"):
        batch = scorer.score(images, task)
        assert [r.completion for r in single.score(images, task)] == [r.completion for r in batch]
        for im, r in zip(images[:3], batch[:3]):
            inputs = build_inputs(processor, [im], [task])
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=48, do_sample=False)
            plain = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            if "</answer>" in plain:
                assert r.completion == plain[: plain.index("</answer>") + len("</answer>")]
            else:
                assert r.completion == plain
        for r in batch:
            assert r.completion.count("</answer>") <= 1 and (
                "</answer>" not in r.completion or r.completion.endswith("</answer>")
            )
            closed += r.completion.endswith("</answer>")
            p = parse_answer(r.completion, lenient=True)
            assert r.parse == p.status if r.score is not None else r.parse == "failed"
    assert closed > 0, "the fixture model never wrote </answer>"


def test_drafts_give_the_same_tokens(scorer):
    from tatar_core.models.loading import chat_texts
    from tatar_core.scoring.speculative import greedy_decode

    images = _images(5, seed=6)
    texts = chat_texts(scorer.processor, ["iaa"] * len(images))
    inputs = scorer.processor(
        text=texts, images=[[im] for im in images], padding=True, padding_side="left", return_tensors="pt"
    )
    runs = {}
    for k in (0, 6):
        with torch.inference_mode():
            runs[k] = greedy_decode(
                scorer.model,
                inputs,
                max_new_tokens=48,
                stop_ids=scorer.stop_ids,
                pad_id=scorer.pad_id,
                stop_seqs=scorer.stop_seqs,
                index=scorer._draft_index("iaa"),
                draft_tokens=k,
            )
    assert runs[6].tokens == runs[0].tokens
    assert runs[6].forwards <= runs[0].forwards
    for t in runs[0].tokens:
        assert len(t) == 48 or t[-3:] in scorer.stop_seqs or t[-1] in scorer.stop_ids  # cut, `</answer>` or eos


def test_expected_readout_over_single_digit_tokens(realvocab_model_dir):
    """Qwen writes "73.42" as five tokens; the readout weighs each digit token's distribution by its place value:
    E = 73.42 + Σ_k 10^{e_k}·(Σ_c p_k(c)·c − d_k), p_k over the ten digit tokens (teacher-forced logits here)."""
    from tatar_core.models.loading import build_inputs
    from tatar_core.scoring.readout import expected_score
    from tatar_core.scoring.scorer import Scorer

    s = Scorer(realvocab_model_dir, readout="expected", draft_tokens=0)
    assert sorted(s._digit_values) == [float(d) for d in range(10)]  # single-digit tokens only
    completion = make_target("", 73.42)
    im = _images(1, seed=7)[0]
    n = build_inputs(s.processor, [im], ["iqa"])["input_ids"].shape[1]
    full = build_inputs(s.processor, [im], ["iqa"], [completion])  # prompt + completion + <|im_end|>
    ids = s.tokenizer.encode(completion, add_special_tokens=False)
    assert full["input_ids"][0, n : n + len(ids)].tolist() == ids
    with torch.inference_mode():
        logits = s.model(**full).logits[0]
    digit_logits = [logits[n - 1 + k, s._digit_ids] for k in range(len(ids))]  # the step that wrote ids[k]
    pieces = [s.tokenizer.decode([t]) for t in ids]
    value = expected_score(
        pieces,
        73.42,
        lambda k, length: (
            list(zip(s._digit_values, digit_logits[k].tolist())) if k < len(digit_logits) and length == 1 else []
        ),
    )
    a = pieces.index("answer") + 2  # "<" "answer" ">" then the number
    assert pieces[a : a + 5] == ["7", "3", ".", "4", "2"]
    want, vals = 73.42, torch.tensor(s._digit_values)
    for k, e in zip((a, a + 1, a + 3, a + 4), (1, 0, -1, -2)):
        p = torch.softmax(digit_logits[k], 0)
        want += 10.0**e * (float((p * vals).sum()) - float(pieces[k]))
    assert value == pytest.approx(want, abs=1e-4) and value != 73.42


def test_grpo_on_the_real_vocabulary(realvocab_sft_checkpoint, synthetic_samples, tmp_path):
    from data_contracts.config.training import GrpoConfig
    from data_contracts.parquet_io import read_records
    from data_contracts.records import TrainLogRecord
    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.training.grpo import run_grpo

    cfg = GrpoConfig(
        num_generations=2,
        prompts_per_step=2,
        min_iaa_images_per_step=2,
        max_completion_length=24,
        learning_rate=1e-4,
        seed=0,
        max_steps=1,
        trainer_args={"logging_steps": 1, "save_steps": 100},
    )
    result = run_grpo(synthetic_samples, realvocab_sft_checkpoint, cfg, ModelConfig(), tmp_path)
    assert result["steps"] == 1
    log = read_records(tmp_path / "train_log.parquet", TrainLogRecord)
    assert {r.task for r in log} == {"iaa"} and all(r.n == 4 for r in log)
    model, processor = load_model_and_processor(tmp_path / "model")
    assert len(processor.tokenizer) == 151_665 and model.config.text_config.vocab_size == 152_064
