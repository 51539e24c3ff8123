"""The optional SFT score-loss term (tatar_core.training.score_loss): the soft label, where it reads the score token,
and the loss it adds, against a hand computation from the model's full logits."""

from __future__ import annotations

import math

import pytest
import torch

from data_contracts.config.training import SftConfig
from tatar_core.method.digits import answer_digits
from tatar_core.training.score_loss import soft_label


def test_answer_digits_locates_the_number_after_the_answer_tag():
    pieces = ["<think>", "7", " blur", "</think>", "<answer>", "73", ".", "42", "</answer>"]
    assert answer_digits(pieces) == (73.42, [(5, 0, "73"), (7, -2, "42")])
    assert answer_digits(["<answer>", "-", "3", "</answer>"]) is None
    assert answer_digits(["<answer>", "high", "</answer>"]) is None


def test_soft_label_is_a_gaussian_in_score_points():
    values = torch.arange(10.0, 100.0)
    q = soft_label(values, 84.0, 0, 3.0)
    assert q.sum().item() == pytest.approx(1.0)
    assert values[q.argmax()].item() == 84.0
    i = int((values == 84).nonzero())
    assert q[i + 1].item() == pytest.approx(q[i - 1].item())
    assert (q[i + 3] / q[i]).item() == pytest.approx(math.exp(-9 / 18))
    # tens digit (place 10): sigma 3 points = 0.3 digits, almost all mass on the digit itself
    assert soft_label(torch.arange(0.0, 10.0), 8.0, 1, 3.0)[8].item() > 0.99
    assert soft_label(values, 84.0, 0, 0.0).tolist() == (values == 84).float().tolist()


def test_sigma_needs_a_weight():
    with pytest.raises(ValueError, match="score_label_sigma .* needs score_loss_weight > 0"):
        SftConfig(score_label_sigma=3.0)


def test_trainer_adds_w_times_the_soft_label_cross_entropy_of_the_score_token(
    tiny_model_dir, synthetic_kept, tmp_path
):
    from trl import SFTTrainer

    from tatar_core.models.loading import image_dataset, load_model_and_processor
    from tatar_core.training.score_loss import ScoreLossSFTTrainer
    from tatar_core.training.sft import build_sft_rows, sft_args

    w, sigma = 2.0, 3.0
    cfg = SftConfig(
        max_steps=1,
        per_device_train_batch_size=6,
        gradient_accumulation_steps=1,
        seed=0,
        score_loss_weight=w,
        score_label_sigma=sigma,
        thought_dropout_iqa=0.5,
    )
    kept = synthetic_kept[:12]
    rows, _ = build_sft_rows(kept, cfg)
    model, processor = load_model_and_processor(tiny_model_dir)
    model.train()  # as in training (the tiny model has no dropout)
    trainer = ScoreLossSFTTrainer(
        model=model,
        args=sft_args(cfg, tmp_path),
        processing_class=processor,
        train_dataset=image_dataset(rows, ("prompt", "completion")),
        score_loss_weight=w,
        score_label_sigma=sigma,
    )
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    tok = processor.tokenizer
    targets = trainer._targets(batch["labels"])
    assert len(targets) == batch["labels"].size(0)  # every completion has a score
    scores = {round(r.score, 2) for r in kept}
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        expected = []
        for b, j, ids, q in targets:
            # the hidden state at j predicts token j + 1: the answer's integer part, right after the answer tag
            piece = tok.decode([int(batch["input_ids"][b, j + 1])])
            answer = tok.decode(batch["input_ids"][b, j + 1 : j + 4])
            assert piece.isdigit() and tok.decode(batch["input_ids"][b, : j + 1]).endswith("<answer>")
            assert float(answer) in scores
            assert q[(trainer._cands[len(piece)][1] == float(piece)).nonzero()].item() == q.max().item()
            expected.append(-(q * torch.log_softmax(logits[b, j], -1)[ids]).sum())
        plain = SFTTrainer.compute_loss(trainer, model, dict(batch))
        total = trainer.compute_loss(model, dict(batch))
    assert total.item() == pytest.approx(plain.item() + w * torch.stack(expected).mean().item(), rel=1e-5)
    assert trainer._metrics["train"]["score_loss"][-1] == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
