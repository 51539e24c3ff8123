"""Batched greedy decoding with retrieval-drafted speculation: the greedy tokens, in fewer forward passes.

Every step feeds each row its pending token (the last one chosen, not yet in the KV cache) plus up to k draft
tokens. One forward pass gives the greedy (argmax) token after each of those positions; row i keeps the
longest draft prefix d_1..d_a with d_j = argmax after d_{j-1}, then the model's own next token, so a step
emits 1 ≤ a + 1 ≤ k + 1 tokens, all equal to what one-token-at-a-time greedy decoding chooses (up to
floating-point ties). With no drafts (k = 0) it is plain greedy decoding, one token per pass.

Drafts come from an n-gram model of the indexed texts (`NgramIndex`): k times the most frequent token that
followed the longest known context (n ≤ `max_n` tokens). The texts: a corpus (the checkpoint's training
targets, `draft_corpus`), the rows of earlier batches and every row of this batch, its own text included. A per-step
cost that barely depends on the tokens fed (small models, or memory-bound
GPUs) makes each accepted draft token nearly free.

Cache layout: all rows share one rectangular KV cache; each step appends 1 + K positions to every row
(K = the longest draft this step) and then masks (attention mask 0) the positions of rejected drafts; when
holes fill more than a quarter of every row the cache is compacted. Rotary positions are tracked per row
(prompt length + the model's `rope_deltas` for Qwen-VL mrope), so a masked hole shifts nothing. Rows that
reach a stop token or `max_new_tokens` are done and leave the batch; the batch ends when all are.

Prefill: the prompt prefix every row shares (system prompt, start of the user turn, up to the image) can be
computed once and reused across batches (`_prefill`, `prefixes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch


class NgramIndex:
    """An n-gram model of the indexed texts that drafts by following its most frequent next tokens.

    For every context of n = 1..max_n tokens it counts the tokens that followed; `draft(seq, k)` extends seq
    k times by the most frequent follower of its longest known context (ties: the latest seen), and stops
    early when no context is known. `add(seq, start)` counts the tokens at positions ≥ start, so a row being
    decoded is added as it grows. `layer()` gives an index that reads this one and writes only to itself
    (copy on write), so a call can add its own completions without touching the shared corpus index.
    """

    def __init__(self, max_n: int = 4, base: Optional["NgramIndex"] = None):
        self.max_n = max_n
        self.base = base.table if base is not None else None
        # context -> [follower counts, most frequent follower, its count]
        self.table: dict[tuple[int, ...], list] = {}

    def layer(self) -> "NgramIndex":
        if self.base is not None:
            raise ValueError("layer() of a layer: build layers on the corpus index itself")
        return NgramIndex(self.max_n, base=self)

    def _entry(self, key: tuple[int, ...]):
        e = self.table.get(key)
        if e is None and self.base is not None:
            e = self.base.get(key)
        return e

    def add(self, seq: list[int], start: int = 0) -> None:
        table, base = self.table, self.base
        for q in range(max(start, 1), len(seq)):
            nxt = seq[q]
            for n in range(1, min(self.max_n, q) + 1):
                key = tuple(seq[q - n : q])
                e = table.get(key)
                if e is None:
                    b = base.get(key) if base is not None else None
                    e = table[key] = [dict(b[0]), b[1], b[2]] if b is not None else [{}, nxt, 0]
                c = e[0][nxt] = e[0].get(nxt, 0) + 1
                if c >= e[2]:
                    e[1], e[2] = nxt, c

    def draft(self, seq: Sequence[int], k: int) -> list[int]:
        """Up to k tokens predicted after seq; [] when its last token was never seen."""
        ctx, out = list(seq[-self.max_n :]), []
        for _ in range(k):
            for n in range(min(self.max_n, len(ctx)), 0, -1):
                e = self._entry(tuple(ctx[-n:]))
                if e is not None:
                    break
            else:
                break
            out.append(e[1])
            ctx.append(e[1])
        return out


@dataclass
class Decoded:
    tokens: list[list[int]]  # per row: the generated ids, up to and including the stop token
    forwards: int  # decoding forward passes after the prefill
    digit_logits: Optional[list[list[torch.Tensor]]] = field(default=None)  # per row, per token: logits[record_ids]


def _stop_at(before: list[int], new: list[int], stop_ids: set[int], stop_seqs: Sequence[list[int]]) -> Optional[int]:
    """Index in `new` of the token that ends the completion (a stop id, or the last token of a stop sequence)."""
    for j, t in enumerate(new):
        if t in stop_ids:
            return j
        for s in stop_seqs:
            if t == s[-1] and (before + new[: j + 1])[-len(s) :] == s:
                return j
    return None


def _compact(cache, mask: torch.Tensor) -> torch.Tensor:
    """Drop the masked cache positions (rows right-aligned, shorter rows left-padded); returns the new mask.

    Only for caches whose layers are plain `DynamicLayer`s; others are left as they are.
    """
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer or layer.keys is None for layer in layers):
        return mask
    valid = mask.bool()
    width = int(valid.sum(-1).max())
    idx = torch.sort(valid.to(torch.int8), dim=1, stable=True).indices[
        :, mask.shape[1] - width :
    ]  # valid columns last
    for layer in layers:
        i = idx[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
        layer.keys, layer.values = torch.gather(layer.keys, 2, i), torch.gather(layer.values, 2, i)
    return torch.gather(mask, 1, idx)


def _prepared_mask(model):
    """A function (2-D mask, query width) -> the mask to pass: a ready 4-D additive mask for the text model's
    full-attention layers under sdpa/eager (skips transformers' per-call mask building), else the 2-D mask."""
    cfg = getattr(model.config, "text_config", model.config)
    layers = set(getattr(cfg, "layer_types", None) or ["?"])
    if layers != {"full_attention"} or getattr(cfg, "_attn_implementation", None) not in ("sdpa", "eager"):
        return lambda mask, width: mask
    dtype = model.dtype

    def build(mask: torch.Tensor, width: int):
        total = mask.shape[1]
        kv = torch.arange(total, device=mask.device)
        q = torch.arange(total - width, total, device=mask.device)
        allowed = (kv[None, :] <= q[:, None])[None, None] & mask.bool()[:, None, None, :]
        additive = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
        return {"full_attention": additive.masked_fill_(~allowed, torch.finfo(dtype).min)}

    return build


MIN_SHARED_PREFIX = 16  # tokens; shorter common prefixes are prefilled with the rest


def _shared_prefix_len(model, ids: torch.Tensor, pads: list[int]) -> int:
    """Length of the token prefix all rows share (left padding aside), ending before the first image/video token."""
    cfg = model.config
    media = {getattr(cfg, a, None) for a in ("image_token_id", "video_token_id")} - {None}
    rows = [ids[i, p:].tolist() for i, p in enumerate(pads)]
    n = 0
    for column in zip(*rows):
        if column[0] in media or any(t != column[0] for t in column):
            break
        n += 1
    return n


def _prefill(model, inputs: dict, prefixes: Optional[dict]):
    """Prefill the prompts: (last-position logits, cache, 2-D cache mask, next rotary position per row).

    With `prefixes` (a dict the caller keeps: prefix tokens -> cache) and a Qwen-VL model, the prefix that all
    rows share (system prompt and the start of the user turn, up to the image) is computed once and reused by
    every later batch; only the rest of each prompt is run. A row's left padding then sits between the shared
    prefix and its own tokens (masked), and its rotary positions are those of the whole unpadded prompt.
    """
    import copy

    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    bsz, length = ids.shape
    inner = getattr(model, "model", None)
    pads = (length - mask.sum(-1)).tolist()
    shared = _shared_prefix_len(model, ids, pads) if prefixes is not None and hasattr(inner, "get_rope_index") else 0
    if shared < MIN_SHARED_PREFIX or "mm_token_type_ids" not in inputs:
        out = model(**inputs, use_cache=True, logits_to_keep=1)
        deltas = getattr(inner, "rope_deltas", None)
        pos = mask.sum(-1).long() + (deltas.view(-1).long().to(ids.device) if deltas is not None else 0)
        return out.logits[:, -1:], out.past_key_values, mask, pos
    key = tuple(ids[0, pads[0] : pads[0] + shared].tolist())
    if key not in prefixes:
        prefix = torch.tensor([key], device=ids.device)
        prefixes[key] = model(
            input_ids=prefix,
            position_ids=torch.arange(shared, device=ids.device)[None],
            use_cache=True,
            logits_to_keep=1,
        ).past_key_values
    cache = copy.deepcopy(prefixes[key])
    cache.batch_repeat_interleave(bsz)
    position_ids, deltas = inner.get_rope_index(
        ids,
        inputs["mm_token_type_ids"],
        image_grid_thw=inputs.get("image_grid_thw"),
        video_grid_thw=inputs.get("video_grid_thw"),
        attention_mask=mask,
    )
    own = torch.arange(length - shared, device=ids.device)[None, :] >= torch.tensor(pads, device=ids.device)[:, None]
    cache_mask = torch.cat([torch.ones(bsz, shared, dtype=mask.dtype, device=ids.device), own.to(mask.dtype)], dim=1)
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    out = model(
        input_ids=ids[:, shared:],
        attention_mask=_prepared_mask(model)(cache_mask, length - shared),
        position_ids=position_ids[:, :, shared:],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
        **rest,
    )
    pos = mask.sum(-1).long() + deltas.view(-1).long().to(ids.device)
    return out.logits[:, -1:], out.past_key_values, cache_mask, pos


def greedy_decode(
    model,
    inputs: dict,
    *,
    max_new_tokens: int,
    stop_ids: set[int],
    pad_id: int,
    stop_seqs: Sequence[list[int]] = (),
    index: Optional[NgramIndex] = None,
    draft_tokens: int = 0,
    record_ids: Optional[torch.Tensor] = None,
    prefixes: Optional[dict] = None,
) -> Decoded:
    """Greedy completions for a left-padded batch `inputs` (processor output, on the model's device).

    stop_ids / stop_seqs: a row is done after a stop token or a stop token sequence (kept in its tokens).
    index: drafts come from it; the rows' texts (their prompt's last `index.max_n` tokens + generated ids)
    are added to it as they grow, so it holds this batch's completions afterwards.
    record_ids: token ids whose logits are kept for every generated token (the expected-score readout).
    prefixes: a dict kept by the caller across batches: the shared prompt prefix is computed once (`_prefill`).
    Call under torch.inference_mode(), one call at a time per model (Qwen-VL keeps `rope_deltas` on the module).
    """
    ids = inputs["input_ids"]
    bsz, device = ids.shape[0], ids.device
    logits, cache, mask, pos = _prefill(model, inputs, prefixes)  # pos: each row's next rotary position
    k = draft_tokens if index is not None else 0
    tail = index.max_n if index is not None else 0
    seqs = [ids[i, -tail:].tolist() if tail else [] for i in range(bsz)]  # prompt tail + generated, indexed
    gen: list[list[int]] = [[] for _ in range(bsz)]
    rec = [[] for _ in range(bsz)] if record_ids is not None else None
    done = [False] * bsz
    pending = [0] * bsz
    drafts: list[list[int]] = [[] for _ in range(bsz)]
    live = list(range(bsz))  # batch position -> row; finished rows leave the batch
    forwards = 0
    prepare = _prepared_mask(model)
    while True:
        # accept: each row's drafts vs the argmax after each fed position
        best = logits.argmax(-1).tolist()
        digits = logits[..., record_ids].float().cpu() if rec is not None else None
        keep = []
        for b, i in enumerate(live):
            d, g = drafts[i], best[b]
            a = 0
            while a < len(d) and d[a] == g[a]:
                a += 1
            new = d[:a] + [g[a]]
            stop = _stop_at(gen[i], new, stop_ids, stop_seqs)
            if stop is not None:
                new = new[: stop + 1]
            new = new[: max_new_tokens - len(gen[i])]
            keep.append(a + 1)
            gen[i] += new
            if rec is not None:
                rec[i] += [digits[b, j] for j in range(len(new))]
            start = len(seqs[i])
            seqs[i] += new
            if index is not None:
                index.add(seqs[i], start)
            pending[i] = new[-1]
            done[i] = stop is not None or len(gen[i]) >= max_new_tokens
        if forwards:  # mask the cache positions of rejected drafts
            width = logits.shape[1]
            accepted = torch.arange(width, device=device)[None, :] < torch.tensor(keep, device=device)[:, None]
            mask = torch.cat([mask[:, :-width], accepted.to(mask.dtype)], dim=1)
            pos = pos + torch.tensor(keep, device=device)
        still = [b for b, i in enumerate(live) if not done[i]]
        if not still:
            break
        if len(still) < len(live):
            sel = torch.tensor(still, device=device)
            cache.batch_select_indices(sel)
            mask, pos, live = mask[sel], pos[sel], [live[b] for b in still]
        if 4 * int((mask == 0).sum(-1).min()) > mask.shape[1]:  # holes are > 1/4 of every row: compact
            mask = _compact(cache, mask)
        # draft, then verify [pending, d_1..d_K] of every live row in one pass
        for i in live:
            drafts[i] = index.draft(seqs[i], k) if k else []
        width = 1 + max(len(drafts[i]) for i in live)
        x = torch.tensor(
            [[pending[i]] + drafts[i] + [pad_id] * (width - 1 - len(drafts[i])) for i in live], device=device
        )
        mask = torch.cat([mask, torch.ones(len(live), width, dtype=mask.dtype, device=device)], dim=1)
        position_ids = pos[:, None] + torch.arange(width, device=device)[None, :]
        out = model(
            input_ids=x,
            attention_mask=prepare(mask, width),
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        cache, logits = out.past_key_values, out.logits
        forwards += 1
    return Decoded(gen, forwards, rec)


__all__ = ["NgramIndex", "Decoded", "greedy_decode"]
