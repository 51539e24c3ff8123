"""What vLLM's `LLM.generate` returns, as plain dataclasses with vLLM's attribute names (vllm.outputs.RequestOutput,
CompletionOutput; vllm.logprobs.Logprob), and a recorder that fills them from a real model's greedy decoding.

    RequestOutput(request_id, prompt, prompt_token_ids, outputs=[CompletionOutput], finished)
    CompletionOutput(index, text, token_ids, cumulative_logprob, logprobs, finish_reason, stop_reason)
    logprobs: one dict per generated token, {token_id: Logprob(logprob, rank, decoded_token)}: the top-k tokens and
              the chosen one (vLLM adds the sampled token when it is not among the top k)

`record_outputs` runs the transformers scorer's own greedy decoding (no drafts) keeping every step's full logits,
then writes what vLLM would return for the same tokens with `SamplingParams(logprobs=top_k)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence


@dataclass
class Logprob:
    logprob: float
    rank: Optional[int] = None
    decoded_token: Optional[str] = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: Optional[float]
    logprobs: Optional[list[dict[int, Logprob]]]
    finish_reason: Optional[str] = None
    stop_reason: Optional[int | str] = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


def record_outputs(
    scorer, images, task: str, top_k: Optional[int] = 20, include: Sequence[int] = ()
) -> list[RequestOutput]:
    """vLLM-shaped outputs for `images` from `scorer`'s model (a transformers `Scorer`): same greedy tokens, per-step
    log-probabilities of the top `top_k` tokens and of the tokens `include` (top_k None: no logprobs, as without
    `SamplingParams.logprobs`)."""
    import torch

    from tatar_core.models.loading import build_inputs, chat_texts
    from tatar_core.scoring.speculative import greedy_decode

    tok = scorer.tokenizer
    inputs = build_inputs(scorer.processor, images, [task] * len(images)).to(scorer.device)
    vocab = scorer.model.get_output_embeddings().weight.shape[0]
    with torch.inference_mode():
        dec = greedy_decode(
            scorer.model,
            inputs,
            max_new_tokens=scorer.max_new_tokens,
            stop_ids=scorer.stop_ids,
            pad_id=scorer.pad_id,
            stop_seqs=scorer.stop_seqs,
            record_ids=torch.arange(vocab),
        )
    prompt = chat_texts(scorer.processor, [task])[0]

    def text(i: int) -> Optional[str]:
        return tok.decode([i]) if i < len(tok) else None

    out = []
    for row, ids in enumerate(dec.tokens):
        steps, total = [], 0.0
        for t, logits in zip(ids, dec.digit_logits[row]):
            lp = torch.log_softmax(logits.float(), dim=-1)
            total += float(lp[t])
            if top_k is None:
                continue
            values, order = torch.sort(lp, descending=True)
            step = {
                int(i): Logprob(float(v), r + 1, text(int(i)))
                for r, (v, i) in enumerate(zip(values[:top_k].tolist(), order[:top_k].tolist()))
            }
            for i in {t, *include} - set(step):
                step[i] = Logprob(float(lp[i]), int((lp > lp[i]).sum()) + 1, text(i))
            steps.append(step)
        stopped = bool(ids) and ids[-1] in scorer.stop_ids
        out.append(
            RequestOutput(
                str(row),
                prompt,
                [],
                [
                    CompletionOutput(
                        0,
                        tok.decode(ids, skip_special_tokens=True),
                        list(ids),
                        total,
                        steps if top_k is not None else None,
                        "stop" if stopped else "length",
                        ids[-1] if stopped else None,
                    )
                ],
            )
        )
    return out
