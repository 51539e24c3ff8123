"""LoRA (peft) on the language model only, and merging a trained adapter into a full model folder.

Module names of `Qwen2_5_VLForConditionalGeneration` (transformers 5): the language model's projections are
`model.language_model.layers.N.self_attn.{q,k,v,o}_proj` and `…layers.N.mlp.{gate,up,down}_proj`; the vision
tower has `model.visual.blocks.N.mlp.{gate,up,down}_proj` too, so bare suffixes would also adapt it.
`LANGUAGE_MODEL_TARGETS` is a regex peft matches against whole module names (`re.fullmatch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LANGUAGE_MODEL_TARGETS = r".*language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"


def peft_config(lora: Any):
    """peft.LoraConfig from a `lora` section (r, alpha, dropout, target_modules; None -> LANGUAGE_MODEL_TARGETS)."""
    from peft import LoraConfig

    targets = lora.target_modules if lora.target_modules is not None else LANGUAGE_MODEL_TARGETS
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
    )


def adapted_modules(model) -> list[str]:
    """Names of the modules that carry a LoRA adapter (for checks and logs)."""
    from peft.tuners.lora import LoraLayer

    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path, load) -> None:
    """Write base + adapter merged (W + (alpha/r)·B·A) as a plain `from_pretrained` folder into `out_dir`.

    `load(base_dir)` returns the base model in the training dtype. Runs in one process, on weights read from disk:
    under ZeRO-3 the trainer's parameters are partitioned, so merging them on the main process alone would merge
    shards; the adapter the trainer saved is gathered, and the base is loaded here unpartitioned (the DeepSpeed
    config that training registered is dropped first, so `from_pretrained` does not partition it again).
    """
    from peft import PeftModel
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # training is over in this process
    merged = PeftModel.from_pretrained(load(base_dir), str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)


__all__ = ["LANGUAGE_MODEL_TARGETS", "peft_config", "adapted_modules", "merge_adapter"]
