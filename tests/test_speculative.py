"""Speculative greedy decoding (tatar_core.scoring.speculative) and the checkpoint's draft corpus
(tatar_core.models.draft_corpus)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tatar_core.models.draft_corpus import FILE_NAME, copy_corpus, read_corpus, write_corpus
from tatar_core.scoring.speculative import NgramIndex, _stop_at


# ---------------------------------------------------------------------------------------------- n-gram index
def test_index_drafts_the_most_frequent_followers_of_the_longest_known_context():
    idx = NgramIndex(max_n=2)
    idx.add([1, 2, 3, 4])
    idx.add([1, 2, 3, 4])
    idx.add([7, 2, 5, 6])
    assert idx.draft([1, 2], k=2) == [3, 4]  # context "1 2": followed by 3 (twice)
    assert idx.draft([7, 2], k=3) == [5, 6]  # context "7 2" beats the more frequent "2 -> 3"; stops when unknown
    assert idx.draft([9, 2], k=1) == [3]  # only "2" known: its most frequent follower (3: 2x, 5: 1x)
    assert idx.draft([42], k=4) == []  # never seen
    idx.add([8, 2, 5, 9])
    idx.add([0, 2, 5, 9])
    assert idx.draft([0, 2], k=2) == [5, 9]
    assert idx.draft([2], k=1) == [5]  # now 5 follows "2" three times, 3 twice


def test_index_layers_read_the_corpus_and_write_only_to_themselves():
    corpus = NgramIndex(max_n=2)
    corpus.add([1, 2, 3])
    row = [1, 2]
    layer = corpus.layer()
    assert layer.draft(row, k=3) == [3]
    start = len(row)
    row += [4, 1, 2, 4]
    layer.add(row, start)  # "2 -> 4" twice now, against "2 -> 3" once in the corpus
    assert layer.draft([1, 2], k=1) == [4]
    assert corpus.draft([1, 2], k=1) == [3]  # the corpus index is unchanged
    assert corpus.layer().draft([2, 4], k=2) == []
    with pytest.raises(ValueError):
        layer.layer()


def test_stop_at_finds_stop_ids_and_sequences_across_steps():
    assert _stop_at([5], [6, 0, 7], {0}, []) == 1
    assert _stop_at([5, 8], [9, 4], set(), [[8, 9, 4]]) == 1  # sequence begun in an earlier step
    assert _stop_at([5], [8, 9, 3], set(), [[8, 9, 4]]) is None
    assert _stop_at([], [8, 9, 4, 0], {0}, [[8, 9, 4]]) == 2


# ---------------------------------------------------------------------------------------------- draft corpus
def test_corpus_round_trip_cap_and_dedup(tmp_path, monkeypatch):
    import tatar_core.models.draft_corpus as dc

    monkeypatch.setattr(dc, "MAX_PER_TASK", 2)
    rows = [("s3", "iqa", "c"), ("s1", "iqa", "a"), ("s1", "iqa", "a"), ("s2", "iqa", "b"), ("t1", "iaa", "long")]
    write_corpus(tmp_path, rows)
    assert read_corpus(tmp_path) == {"iaa": ["long"], "iqa": ["a", "b"]}
    other = tmp_path / "other"
    other.mkdir()
    assert copy_corpus(tmp_path, other) and read_corpus(other) == read_corpus(tmp_path)
    assert not copy_corpus(tmp_path / "none", other)
    assert read_corpus(tmp_path / "none") == {}


def test_corpus_bad_line_names_file_and_line(tmp_path):
    (tmp_path / FILE_NAME).write_text(json.dumps({"task": "iqa", "text": "x"}) + "\n" + '{"task": "iqa"}\n')
    with pytest.raises(ValueError, match=rf"{FILE_NAME}: line 2"):
        read_corpus(tmp_path)


# ---------------------------------------------------------------------------------------------- decoding
def _images(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(112, 112), (64, 48), (96, 72), (40, 120)]  # different prompt lengths: left padding
    return [
        Image.fromarray(rng.integers(0, 255, (h, w, 3)).astype(np.uint8), "RGB")
        for w, h in (sizes[i % len(sizes)] for i in range(n))
    ]


def _decode(scorer, images, task, draft_tokens, prefixes=None):
    import torch

    from tatar_core.models.loading import chat_texts
    from tatar_core.scoring.speculative import greedy_decode

    texts = chat_texts(scorer.processor, [task] * len(images))
    inputs = scorer.processor(text=texts, images=[[im] for im in images], padding=True, return_tensors="pt")
    with torch.inference_mode():
        return greedy_decode(
            scorer.model,
            inputs,
            max_new_tokens=200,
            stop_ids=scorer.stop_ids,
            pad_id=scorer.pad_id,
            index=scorer._draft_index(task),
            draft_tokens=draft_tokens,
            prefixes=prefixes,
        )


@pytest.mark.slow
def test_sft_checkpoint_carries_the_training_targets_as_draft_corpus(sft_checkpoint, synthetic_kept):
    corpus = read_corpus(sft_checkpoint)
    assert set(corpus) == {"iqa", "iaa"}
    targets = {r.target for r in synthetic_kept}
    assert all(t in targets or t.startswith("<think>\n</think>") for task in corpus for t in corpus[task])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["iqa", "iaa"])
def test_drafted_decoding_gives_the_greedy_tokens_in_fewer_passes(sft_checkpoint, task):
    """Same tokens as HF `generate` (greedy, stop at </answer>), with and without drafts and the shared prompt
    prefix (computed once, then reused by a second batch); drafts save passes."""
    import torch

    from tatar_core.models.loading import build_inputs, load_model_and_processor
    from tatar_core.scoring.scorer import Scorer

    scorer = Scorer(sft_checkpoint)
    images = _images(5, seed=11 if task == "iqa" else 12)
    plain = _decode(scorer, images, task, draft_tokens=0)
    drafted = _decode(scorer, images, task, draft_tokens=6)
    assert drafted.tokens == plain.tokens
    prefixes: dict = {}
    assert _decode(scorer, images[:3], task, 6, prefixes).tokens == plain.tokens[:3]
    assert len(prefixes) == 1
    (prefix,) = prefixes
    assert 16 <= len(prefix) and scorer.model.config.image_token_id not in prefix
    assert _decode(scorer, images, task, 6, prefixes).tokens == plain.tokens  # the cached prefix, reused
    longest = max(len(t) for t in plain.tokens)
    assert plain.forwards == longest - 1  # one token per pass after the prefill's
    assert drafted.forwards <= 0.7 * plain.forwards, (drafted.forwards, plain.forwards)

    model, processor = load_model_and_processor(sft_checkpoint)
    processor.tokenizer.padding_side = "left"
    for im, toks in zip(images, plain.tokens):  # one image at a time: no padding at all
        inputs = build_inputs(processor, [im], [task])
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=200,
                do_sample=False,
                eos_token_id=sorted(scorer.stop_ids),
                pad_token_id=scorer.pad_id,
            )
        ref = out[0, inputs["input_ids"].shape[1] :].tolist()
        assert toks == ref[: len(toks)] and len(ref) == len(toks)


def test_compact_keeps_the_valid_cache_positions_in_order_right_aligned():
    import torch
    from transformers import DynamicCache

    from tatar_core.scoring.speculative import _compact

    keys = torch.arange(2 * 1 * 5 * 1, dtype=torch.float32).view(2, 1, 5, 1)  # rows 0..4 and 5..9
    cache = DynamicCache()
    cache.update(keys, -keys, 0)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]])
    new = _compact(cache, mask)
    assert new.tolist() == [[1, 1, 1], [0, 1, 1]]
    layer = cache.layers[0]
    assert layer.keys[0, 0, :, 0].tolist() == [0, 2, 3]
    assert layer.keys[1, 0, 1:, 0].tolist() == [7, 9]  # the left column is a masked filler
    assert torch.equal(layer.values, -layer.keys)
    assert cache.get_seq_length() == 3
