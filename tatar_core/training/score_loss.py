"""An optional SFT loss term on the answer's score token: a Gaussian soft label, as in DeQA-Score
(You et al., "Teaching Large Language Models to Regress Accurate Image Quality Scores using Score Distribution",
CVPR 2025).

Plain cross-entropy treats the score tokens as unordered classes: "83" is as wrong as "20" when the label is "84",
and the answer's number is one or two of the ≈ 25 completion tokens a row contributes. For each completion, with
d the answer's leading digit token (`tatar_core.method.digits.answer_digits`; "84" in "84.50" with the embedded
tokenizer, place value 10^e = 1), predicted at position j, and c over the digit tokens of d's length (values v_c):

    q_c = exp(−((v_c − v_d)·10^e)² / (2σ²)) / Σ_c' exp(…)      (σ in score points; σ = 0: q = one-hot on d)
    L_score = mean over the batch's completions of −Σ_c q_c · log p_j(c)   (p_j: softmax over the whole vocabulary)
    L = L_trl + w · L_score

w = `sft.score_loss_weight` (0: the paper's loss alone), σ = `sft.score_label_sigma`. The expected readout's
E[score] then averages over a distribution trained to be unimodal around the label. Only the leading token is
soft-labelled: with single-digit tokens (Qwen's vocabulary) that is the tens digit, where σ acts in tens of points.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from trl import SFTTrainer

from tatar_core.method.digits import answer_digits, digit_vocab


def soft_label(values: torch.Tensor, d: float, exp: int, sigma: float) -> torch.Tensor:
    """q over candidate digit tokens with `values` for the label token value d at place 10^exp (module formula)."""
    if sigma <= 0:
        return (values == d).to(torch.float32)
    z = -(((values - d) * 10.0**exp) ** 2) / (2.0 * sigma**2)
    return torch.softmax(z.to(torch.float32), dim=0)


class ScoreLossSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss adds w · L_score (module docstring); logs it as `score_loss`."""

    def __init__(self, *args, score_loss_weight: float, score_label_sigma: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.score_loss_weight, self.score_label_sigma = float(score_loss_weight), float(score_label_sigma)
        tok = getattr(self.processing_class, "tokenizer", self.processing_class)
        self._piece = functools.lru_cache(maxsize=None)(lambda i: tok.decode([i]))
        by_len: dict[int, list[tuple[int, float]]] = {}
        for i, text in digit_vocab(tok).items():
            by_len.setdefault(len(text), []).append((i, float(text)))
        self._cands = {
            n: (torch.tensor([i for i, _ in c]), torch.tensor([v for _, v in c])) for n, c in by_len.items()
        }

    def _targets(self, labels: torch.Tensor) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
        """(row, position of the hidden state that predicts the leading score token, candidate ids, q) per row."""
        out = []
        for b in range(labels.size(0)):
            idx = (labels[b] != -100).nonzero().flatten().tolist()
            found = answer_digits([self._piece(int(labels[b, j])) for j in idx])
            if found is None or not found[1]:
                continue
            k, exp, piece = found[1][0]
            ids, values = self._cands[len(piece)]
            if idx[k] > 0:
                out.append((b, idx[k] - 1, ids, soft_label(values, float(piece), exp, self.score_label_sigma)))
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        captured: dict[str, torch.Tensor] = {}

        def keep(_module, _args, output):  # the decoder's last hidden state (the LM head's input), first forward only
            captured.setdefault("h", output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

        handle = unwrapped.get_decoder().register_forward_hook(keep)
        try:
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        finally:
            handle.remove()
        loss, outputs = result if return_outputs else (result, None)
        term = self.score_term(captured["h"], inputs["labels"], unwrapped.get_output_embeddings())
        if term is not None:
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["score_loss"].append(self.accelerator.gather_for_metrics(term.detach()).mean().item())
            # as trl's MoE aux loss: with num_items_in_batch the Trainer leaves gradient accumulation to the loss
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + self.score_loss_weight * term / steps
        return (loss, outputs) if return_outputs else loss

    def score_term(self, hidden: torch.Tensor, labels: torch.Tensor, lm_head) -> Optional[torch.Tensor]:
        """L_score of one micro-batch (None when no completion has a score token)."""
        targets = self._targets(labels)
        if not targets:
            return None
        h = torch.stack([hidden[b, j] for b, j, _, _ in targets])
        logp = torch.log_softmax(lm_head(h.to(lm_head.weight.dtype)).float(), dim=-1)
        return torch.stack(
            [-(q.to(logp.device) * logp[n, ids.to(logp.device)]).sum() for n, (_, _, ids, q) in enumerate(targets)]
        ).mean()
