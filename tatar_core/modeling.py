"""Model folders: resolve (embedded tiny model or a local path), load (model + processor), build inputs.

Nothing is ever fetched: every load is `local_files_only=True`. Importing this module registers the
image-only Qwen2.5-VL processor with `AutoProcessor` (transformers 5 needs torchvision for every video
processor; without the registration `AutoProcessor` silently returns a bare tokenizer and images are ignored).
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from transformers import AutoProcessor, ProcessorMixin, Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

from data_contracts.config.model import EMBEDDED_MODEL, ModelConfig
from tatar_core.images import as_rgb
from tatar_core.prompts import completion_message, prompt_messages

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without a video processor (ProcessorMixin reads sub-processors from this signature)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.image_token
        )
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.video_token
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


_registered = False


def register_processor() -> None:
    """Register `ImageOnlyQwen2_5_VLProcessor` for Qwen2.5-VL configs with AutoProcessor (idempotent)."""
    global _registered
    if _registered:
        return
    AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)
    import transformers

    # AutoProcessor also resolves saved `processor_class` names through the transformers namespace
    if not hasattr(transformers, ImageOnlyQwen2_5_VLProcessor.__name__):
        setattr(transformers, ImageOnlyQwen2_5_VLProcessor.__name__, ImageOnlyQwen2_5_VLProcessor)
    _registered = True


register_processor()


def embedded_model_dir(cache_dir: Path, seed: int) -> Path:
    return Path(cache_dir) / f"tiny-qwen2.5-vl-seed{seed}"


def resolve_model(model_cfg: ModelConfig, cache_dir: Path) -> Path:
    """The model folder for `model_cfg.path`.

    `EMBEDDED_MODEL` -> built once into `cache_dir/tiny-qwen2.5-vl-seed{seed}` (built in a temporary folder, then
    renamed, so a folder that exists is complete); anything else must be a local folder with a config.json.
    """
    if model_cfg.path == EMBEDDED_MODEL:
        target = embedded_model_dir(cache_dir, model_cfg.seed)
        if (target / "config.json").exists():
            return target
        from tatar_core.tiny_model import build_tiny_model

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            build_tiny_model(tmp, seed=model_cfg.seed)
            try:
                tmp.rename(target)
            except OSError:
                if not (target / "config.json").exists():  # not a lost race: a real error
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target
    if model_cfg.path.startswith("embedded:"):
        raise ValueError(f"model.path: unknown embedded model {model_cfg.path!r} (known: {EMBEDDED_MODEL!r})")
    path = Path(model_cfg.path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model.path: model folder {path} does not exist (models are never downloaded)")
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"model.path: {path} has no config.json (not a from_pretrained model folder)")
    return path


def set_pixel_range(processor: ProcessorMixin, min_pixels: int, max_pixels: int) -> None:
    """Images are resized so that min_pixels <= h·w <= max_pixels (then to multiples of patch·merge)."""
    ip = processor.image_processor
    ip.size = {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(ip, name):
            setattr(ip, name, int(value))


def load_processor(path: Path | str, model_cfg: Optional[ModelConfig] = None) -> ProcessorMixin:
    """The multimodal processor of a local model folder; raises if only a tokenizer would load."""
    register_processor()
    path = Path(path)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if isinstance(config, Qwen2_5_VLConfig):
        processor = ImageOnlyQwen2_5_VLProcessor.from_pretrained(path, local_files_only=True)
    else:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    if not isinstance(processor, ProcessorMixin) or not hasattr(processor, "image_processor"):
        raise TypeError(
            f"{path}: AutoProcessor returned {type(processor).__name__}, not a multimodal processor; "
            "images would be ignored (is the processor registered / preprocessor_config.json present?)"
        )
    if model_cfg is not None:
        set_pixel_range(processor, model_cfg.min_pixels, model_cfg.max_pixels)
    return processor


def load_model_and_processor(path: Path | str, model_cfg: Optional[ModelConfig] = None, for_training: bool = False):
    """(model, processor) from a local folder; dtype and pixel range from `model_cfg` (defaults: ModelConfig())."""
    import torch
    from transformers import AutoModelForImageTextToText

    model_cfg = model_cfg or ModelConfig()
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json (not a model folder)")
    processor = load_processor(path, model_cfg)
    if model_cfg.dtype not in _DTYPES:
        raise ValueError(f"model.dtype: {model_cfg.dtype!r} is not one of {sorted(_DTYPES)}")
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=getattr(torch, _DTYPES[model_cfg.dtype]), local_files_only=True
    )
    model.train(for_training)
    return model, processor


def image_dataset(rows: Sequence[dict], columns: Sequence[str]):
    """A datasets.Dataset with `images` = [image] decoded lazily (RGB) from each row's image_path, plus `columns`.

    Only the paths live in memory (scales to large sets); a missing file raises ValueError naming the sample and
    the path. Used for the SFT and GRPO training datasets.
    """
    from datasets import Dataset, Image, List

    for r in rows:
        if not Path(r["image_path"]).is_file():
            raise ValueError(f"sample {r['sample_id']}: image file not found: {r['image_path']}")
    data = {"images": [[r["image_path"]] for r in rows], **{c: [r[c] for r in rows] for c in columns}}
    return Dataset.from_dict(data).cast_column("images", List(Image(mode="RGB")))


def chat_texts(processor, tasks: Sequence[str], completions: Optional[Sequence[str]] = None) -> list[str]:
    """Chat-template strings: prompt + generation cue, or prompt + assistant completion (training / scoring)."""
    texts = []
    for i, task in enumerate(tasks):
        if completions is None:
            msgs = prompt_messages(task)
            texts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        else:
            msgs = prompt_messages(task) + completion_message(completions[i])
            texts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False))
    return texts


def build_inputs(processor, images: Sequence[Any], tasks: Sequence[str], completions: Optional[Sequence[str]] = None):
    """Batch model inputs (`input_ids`, `attention_mask`, `pixel_values`, `image_grid_thw`, ...) as torch tensors.

    `images`: PIL images or paths, one per prompt; `tasks`: "iqa" | "iaa". Without `completions` the texts end in
    the assistant cue (for `generate`; the tiny tokenizer pads on the left); with them, the full conversations.
    """
    if len(images) != len(tasks) or (completions is not None and len(completions) != len(tasks)):
        raise ValueError(f"build_inputs: {len(images)} images, {len(tasks)} tasks"
                         + (f", {len(completions)} completions" if completions is not None else ""))
    texts = chat_texts(processor, tasks, completions)
    return processor(text=texts, images=[[as_rgb(im)] for im in images], padding=True, return_tensors="pt")


def generate(model, processor, images: Sequence[Any], tasks: Sequence[str], max_new_tokens: int = 256,
             do_sample: bool = False, **gen_kwargs) -> list[str]:
    """Decode completions for one batch (greedy by default); special tokens dropped, tags kept."""
    import torch

    inputs = build_inputs(processor, images, tasks)
    inputs = inputs.to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample, **gen_kwargs)
    new = out[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new, skip_special_tokens=True)


__all__ = [
    "ImageOnlyQwen2_5_VLProcessor", "register_processor", "resolve_model", "embedded_model_dir", "load_processor",
    "load_model_and_processor", "set_pixel_range", "build_inputs", "chat_texts", "generate",
    "image_dataset",
]
