"""Scorer (batched greedy, stop at </answer>, shared parser, expected readout) and `tatar score`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tatar_core.method.parsing import parse_answer


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Images of several sizes (so sorting by size changes the batch composition)."""
    rng = np.random.default_rng(seed)
    sizes = [(112, 112), (64, 48), (96, 72), (40, 120), (128, 80)]
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        base = rng.integers(0, 255, 3)
        noise = rng.normal(0, 10 + 12 * (i % 5), (h, w, 3))
        out.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB"))
    return out


@pytest.fixture(scope="module")
def sft_scorers(sft_checkpoint):
    from tatar_core.scoring.scorer import Scorer

    return {b: Scorer(sft_checkpoint, batch_size=b) for b in (1, 8)}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["iqa", "iaa"])
def test_batch_size_does_not_change_scores(sft_scorers, task):
    images = _images(9, seed=1 if task == "iqa" else 2)
    r1 = sft_scorers[1].score(images, task)
    r8 = sft_scorers[8].score(images, task)
    assert len(r1) == len(r8) == 9
    for a, b in zip(r1, r8):
        assert a.parse == b.parse
        if a.score is None:
            assert b.score is None
        else:
            assert abs(a.score - b.score) <= 0.5
    assert sum(r.score is not None for r in r8) >= 5, [r.completion[-60:] for r in r8]


@pytest.mark.slow
def test_scorer_matches_plain_generate_and_stops_at_answer(sft_checkpoint, sft_scorers):
    """Same greedy tokens as a plain one-image `generate`, cut right after </answer>; parse via the shared parser."""
    from tatar_core.models.loading import generate, load_model_and_processor

    images = _images(5, seed=3)
    ours = sft_scorers[8].score(images, "iqa")
    model, processor = load_model_and_processor(sft_checkpoint)
    for im, r in zip(images, ours):
        plain = generate(model, processor, [im], ["iqa"], max_new_tokens=256)[0]
        if "</answer>" in plain:
            assert r.completion == plain[: plain.index("</answer>") + len("</answer>")]
        else:
            assert r.completion == plain
        p = parse_answer(r.completion, lenient=True)
        assert r.parse == p.status
        assert (r.score is None) == (p.score is None)
        if r.score is not None:
            assert r.score == pytest.approx(min(100.0, max(0.0, p.score)))
        assert r.n_words == len(r.completion.split())


@pytest.mark.slow
def test_expected_readout(sft_checkpoint, sft_scorers):
    from tatar_core.scoring.scorer import Scorer

    images = _images(6, seed=4)
    greedy = sft_scorers[8].score(images, "iqa")
    exp = Scorer(sft_checkpoint, batch_size=8, readout="expected").score(images, "iqa")
    assert [g.completion for g in greedy] == [e.completion for e in exp]  # same decoding, different readout
    assert [g.parse for g in greedy] == [e.parse for e in exp]
    parsed = [(g, e) for g, e in zip(greedy, exp) if g.score is not None]
    assert parsed
    for g, e in parsed:
        assert 0.0 <= e.score <= 100.0 and math.isfinite(e.score)
    assert any(abs(g.score - e.score) > 1e-6 for g, e in parsed)  # the digit distributions are used


def test_failures_are_never_given_a_default_score(tiny_model_dir):
    """A random (untrained) model: whatever it writes, score is None exactly when the shared parser fails."""
    from tatar_core.scoring.scorer import Scorer

    scorer = Scorer(tiny_model_dir, batch_size=4, max_new_tokens=12)
    res = scorer.score(_images(4, seed=5), "iaa")
    assert len(res) == 4
    for r in res:
        p = parse_answer(r.completion, lenient=True)
        assert r.parse == p.status and (r.score is None) == (p.score is None)
        if r.parse == "failed":
            assert r.score is None
    with pytest.raises(ValueError, match="task"):
        scorer.score(_images(1), "aesthetics")


# ------------------------------------------------------------------------------------------------- tatar score


@pytest.mark.slow
def test_tatar_score_cli_writes_csv(sft_checkpoint, tmp_path, capsys):
    """One row per file, in order: images of every kind users have are scored (as RGB, EXIF orientation applied),
    files that do not decode get parse "unreadable" and their reason, and the rest is still scored."""
    from user_images import write_user_images

    from tatar_core.cli.score import main

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    ims = _images(4, seed=6)
    ims[0].save(folder / "a.png")
    ims[1].save(folder / "b.JPG", format="JPEG")
    ims[2].save(folder / "sub" / "c.png")
    (folder / "notes.txt").write_text("not an image")  # not an image extension: not a file to score
    (folder / "sub" / "broken.png").write_bytes(b"garbage" * 20)
    kinds = write_user_images(folder / "users")
    single = tmp_path / "single.png"
    ims[3].save(single)
    out = tmp_path / "res" / "scores.csv"
    rc = main(
        [
            str(folder),
            str(single),
            "--task",
            "iqa",
            "--model",
            str(sft_checkpoint),
            "--out",
            str(out),
            "--batch-size",
            "4",
            "--max-new-tokens",
            "48",
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "task", "score", "parse", "n_words", "error"]
    names = [Path(r["path"]).name for r in rows]
    assert sorted(names) == sorted({"a.png", "b.JPG", "c.png", "single.png", "broken.png", *kinds})
    assert len(names) == len(set(names)) and names[-1] == "single.png"  # one row per file, in input order
    by = {Path(r["path"]).name: r for r in rows}
    refused = {"broken.png": "not an image", **{n: w for n, (k, w) in kinds.items() if k == "error"}}
    for n, why in refused.items():
        assert by[n]["parse"] == "unreadable" and by[n]["score"] == "" and why in by[n]["error"], by[n]
    for n in set(by) - set(refused):
        r = by[n]
        assert r["task"] == "iqa" and r["parse"] in ("strict", "lenient", "failed") and r["error"] == "", r
        assert (r["score"] == "") == (r["parse"] == "failed")
        if r["score"]:
            assert 0.0 <= float(r["score"]) <= 100.0
        assert int(r["n_words"]) > 0
    printed = capsys.readouterr()
    assert "parsed" in printed.out and "broken.png" in printed.err and "truncated.jpg" in printed.err
    # not a terminal: plain progress lines, no tqdm bar (tqdm would write "\rscore iqa: 100%|…")
    n = len(rows) - len(refused)  # the images that decode
    assert f"[score iqa] {n}/{n} images (100%)" in printed.err.splitlines() and "score iqa:" not in printed.err


def test_tatar_score_cli_errors(tmp_path, capsys, monkeypatch):
    from tatar_core.cli.score import main

    monkeypatch.delenv("TATAR_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./runs here: no trained model to fall back on
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    model = tmp_path / "model"
    model.mkdir()
    assert main([str(empty), "--task", "iqa"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main([str(empty), "--task", "iqa", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(empty), "--task", "iqa", "--model", str(model)]) == 2
    assert "no config.json" in capsys.readouterr().err
    (model / "config.json").write_text("{}")
    monkeypatch.setenv("TATAR_MODEL", str(model))
    assert main([str(empty), "--task", "iqa"]) == 2
    assert "no images found" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.png"), "--task", "iqa"]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(empty), "--task", "quality"])


@pytest.mark.slow
def test_stop_sequence_path_for_multi_token_answer_close(sft_checkpoint, sft_scorers):
    """Real Qwen tokenizers split `</answer>` into several tokens: the stop-sequence path must end each sequence
    at the same place as the single-token stop id does (the sequence logic itself: tests/test_speculative.py)."""
    import dataclasses

    from tatar_core.scoring.scorer import Scorer

    s = Scorer(sft_checkpoint, batch_size=8)
    close_id = s.stops.answer_close_id
    assert close_id is not None and close_id in s.stop_ids and not s.stop_seqs  # the tiny tokenizer: one token
    s.stop_ids = s.stop_ids - {close_id}
    s.stops = dataclasses.replace(s.stops, answer_close_id=None, stop_seqs=((close_id,),))
    s.stop_seqs = [[close_id]]
    images = _images(6, seed=7)
    a = s.score(images, "iqa")
    b = sft_scorers[8].score(images, "iqa")
    assert [r.completion for r in a] == [r.completion for r in b]
    assert [r.score for r in a] == [r.score for r in b]


@pytest.mark.slow
def test_shared_scorer_is_thread_safe(sft_scorers):
    """A thread-pool task runner shares one Scorer across benchmarks: results equal the sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    scorer = sft_scorers[8]
    jobs = [(_images(n, seed=10 + k)[::-1], "iqa" if k % 2 == 0 else "iaa") for k, n in enumerate((2, 3, 5, 7))]
    sequential = [[r.completion for r in scorer.score(ims, task)] for ims, task in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda job: [r.completion for r in scorer.score(*job)], jobs))
    assert parallel == sequential


def test_cached_prompt_inputs_equal_the_processor_outputs(tiny_model_dir):
    """The cached-prompt path builds exactly what the processor builds (ids, padding, mask, token types, pixels)."""
    import torch

    from tatar_core.models.loading import build_inputs, chat_texts, load_processor

    processor = load_processor(tiny_model_dir)
    images = _images(5, seed=8)  # several sizes: the quality view gives each the same token count
    cache: dict = {}
    for tasks in (["iqa"] * 5, ["iaa"] * 5, ["iqa", "iaa", "iqa", "iaa", "iaa"]):
        for _ in range(2):  # the second time from the cache
            ours = build_inputs(processor, images, tasks, prompt_cache=cache)
            ref = processor(
                text=chat_texts(processor, tasks), images=[[im] for im in images], padding=True, return_tensors="pt"
            )
            assert set(ours.keys()) == set(ref.keys())
            for key in ref.keys():
                assert torch.equal(ours[key], ref[key]), key
    assert len({n for _, n in cache}) == 1  # fixed-size canvas: the cost does not grow with the image
    assert (ours["attention_mask"] == 0).any()  # mixed tasks: prompts of two lengths, left padding exercised


def test_expected_readout_equals_the_hand_computed_value(tiny_model_dir):
    """On a known distribution: "73.42" where the tens-and-units token is "73" or "80" with p = 1/2 each and the
    decimals are certain gives 73.42 + 10⁰·(0.5·73 + 0.5·80 − 73) = 76.92."""
    from tatar_core.models.loading import load_processor
    from tatar_core.scoring.readout import digit_vocab, expected_score

    tok = load_processor(tiny_model_dir).tokenizer
    ids = tok.encode("<answer>73.42</answer>", add_special_tokens=False)
    pieces = [tok.decode([t]) for t in ids]
    assert "73" in pieces and "42" in pieces  # digits grouped up to three by the embedded tokenizer
    texts = list(digit_vocab(tok).values())
    assert "80" in texts

    def scores(half):
        def digit_scores(k, length):
            piece = pieces[k]
            allowed = {"73", "80"} if (half and piece == "73") else {piece}
            return [(float(t), 0.0 if t in allowed else -1e9) for t in texts if len(t) == length]

        return digit_scores

    assert expected_score(pieces, 73.42, scores(True)) == pytest.approx(76.92, abs=1e-9)
    assert expected_score(pieces, 73.42, scores(False)) == pytest.approx(73.42, abs=1e-9)  # certain: the greedy value
