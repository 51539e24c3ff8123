"""GPU check: time and peak memory of the recipe's workloads on a random-init Qwen2.5-VL of the real shape.

    python scripts/gpu_check.py [--shape 7b|3b|tiny] [--steps 3] [--images 32] [--out summary.json]

Nothing is downloaded: the model is built with random weights in the chosen shape and Qwen2.5-VL-7B-Instruct's
real tokenizer (tatar_core.demo.qwen_vocab), saved once to a work folder (bf16) and loaded from there by every
phase, the way the pipeline loads a checkpoint:

- sft_full / sft_lora: trl SFTTrainer, fp32 master weights + bf16 autocast (`model.train_dtype` float32,
  `sft.bf16`), gradient checkpointing, LoRA on the language model only (tatar_core.models.lora);
- grpo_hf / grpo_vllm: trl GRPOTrainer with LoRA (the KL reference is the adapter-disabled model), HF `generate`
  or vLLM colocate (skipped, with the reason, where vLLM is not importable);
- score_iqa / score_iaa: the project's Scorer (batched greedy, speculative drafts, stop at </answer>) on
  1024×768 images.

Shapes: 7b = Qwen2.5-VL-7B-Instruct (text hidden 3584, 28 layers, 28/4 heads, intermediate 18944; vision depth 32,
hidden 1280, intermediate 3420, 16 heads, out 3584, full attention in blocks 7/15/23/31), 3b = Qwen2.5-VL-3B,
tiny = the embedded tiny model's shape with the real vocabulary (runs on CPU in a minute; CI runs it).
A random model never writes </answer>, so every completion runs to its token limit: the timings are upper bounds.
A phase that fails (e.g. CUDA out of memory) is recorded with its error and the others still run. Prints one JSON
summary (and writes it to --out). Imports only torch, transformers, trl, peft, datasets and the project modules
above (no pydantic, polars or Prefect): see scripts/gpu_check.md for running it on a machine without them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VISION_QWEN25 = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
    hidden_act="silu",
)
ROPE = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
SHAPES = {
    "7b": dict(
        text=dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            use_sliding_window=False,
            rope_parameters=ROPE,
        ),
        vision=dict(VISION_QWEN25, out_hidden_size=3584),
        tie=False,
    ),
    "3b": dict(
        text=dict(
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            use_sliding_window=False,
            rope_parameters=ROPE,
        ),
        vision=dict(VISION_QWEN25, out_hidden_size=2048),
        tie=True,
    ),
}
REAL_PIXELS = (3136, 1572864)  # configs/paper.yaml model.min_pixels / max_pixels


def model_config(shape: str, tokenizer):
    """Qwen2_5_VLConfig of `shape` with the real vocabulary (152,064 rows) and the tokenizer's special ids."""
    from transformers import Qwen2_5_VLConfig

    from tatar_core.demo import qwen_vocab, tiny

    if shape == "tiny":
        return tiny.build_model_config(tokenizer, qwen_vocab.CONFIG_VOCAB_SIZE)
    s = SHAPES[shape]
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in (
            "<|endoftext|>",
            "<|im_end|>",
            "<|image_pad|>",
            "<|video_pad|>",
            "<|vision_start|>",
            "<|vision_end|>",
        )
    }
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            s["text"],
            vocab_size=qwen_vocab.CONFIG_VOCAB_SIZE,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(s["vision"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=s["tie"],
    )
    cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id = (
        ids["<|im_end|>"],
        ids["<|endoftext|>"],
        ids["<|endoftext|>"],
    )
    return cfg


def pixels(shape: str) -> tuple[int, int]:
    from tatar_core.demo import tiny

    return (tiny.DEFAULT_MIN_PIXELS, tiny.DEFAULT_MAX_PIXELS) if shape == "tiny" else REAL_PIXELS


def build_model_folder(shape: str, out: Path, device: str) -> dict:
    """Random-init model of `shape` + real tokenizer + processor, saved (bf16) to `out`; returns facts."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from tatar_core.demo import qwen_vocab, tiny

    tok = qwen_vocab.build_tokenizer()
    cfg = model_config(shape, tok)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(
        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id, bos_token_id=cfg.bos_token_id, do_sample=False
    )
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    tiny.build_processor(tok, *pixels(shape)).save_pretrained(out)
    del model
    return {"parameters": n_params, "vocab": len(tok), "config_vocab": cfg.text_config.vocab_size}


def images(n: int, size: tuple[int, int], seed: int = 0):
    """n noise-textured RGB images of `size` (w, h)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    out = []
    for _ in range(n):
        base = rng.integers(0, 255, 3)
        arr = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(arr, "RGB"))
    return out


class Phase:
    """Wall time and peak device memory of one workload; errors are recorded, not raised."""

    def __init__(self, name: str, summary: dict, device: str):
        self.name, self.summary, self.device = name, summary, device
        self.info: dict = {}

    def __enter__(self):
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.time()
        return self.info

    def __exit__(self, kind, err, tb):
        import torch

        self.info["seconds"] = round(time.time() - self.t0, 2)
        if self.device == "cuda":
            self.info["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if err is not None:
            self.info["error"] = f"{kind.__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
            traceback.print_exception(kind, err, tb, limit=3)
        self.summary[self.name] = self.info
        print(f"[gpu_check] {self.name}: {json.dumps(self.info)}", flush=True)
        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
        return err is None or isinstance(err, Exception)  # record and go on (not on Ctrl-C)


def model_cfg(args):
    """The fields of data_contracts' ModelConfig that loading reads (no pydantic here): score in bf16, train on
    fp32 master weights, train the vision tower too (the project's defaults for a real backbone)."""
    return SimpleNamespace(
        dtype="bfloat16",
        train_dtype="float32",
        vision_frozen=False,
        min_pixels=args.pixels[0],
        max_pixels=args.pixels[1],
        load_args={"attn_implementation": "sdpa"},
    )


def sft_rows(n: int, size, long: bool):
    from datasets import Dataset

    from tatar_core.method.prompts import completion_message, make_target, prompt_messages

    think = (
        (
            "The composition balances the subject against a calm background, and warm light gives the scene a "
            "gentle mood while colour harmony and texture support the theme. " * 5
        )
        if long
        else "The image is sharp and clean, with fine detail preserved. Noise is barely visible."
    )
    ims = images(n, size, seed=1)
    task = "iaa" if long else "iqa"
    return Dataset.from_dict(
        {
            "images": [[im] for im in ims],
            "prompt": [prompt_messages(task)] * n,
            "completion": [completion_message(make_target(think, 50.0 + i)) for i in range(n)],
        }
    )


def run_sft(folder: Path, work: Path, args, use_lora: bool, info: dict) -> None:
    from trl import SFTConfig, SFTTrainer

    from tatar_core.models import lora
    from tatar_core.models.loading import load_model_and_processor

    train = sft_rows(args.batch * args.steps, args.size, long=True)
    targs = SFTConfig(
        output_dir=str(work / "sft"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        learning_rate=2e-5,
        bf16=args.bf16,
        max_length=None,
        completion_only_loss=True,
        activation_checkpointing=args.gradient_checkpointing,
        remove_unused_columns=False,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        dataloader_pin_memory=False,
        use_cpu=args.device == "cpu",
    )
    model, processor = load_model_and_processor(folder, model_cfg(args), for_training=True)
    peft = lora.peft_config(SimpleNamespace(r=16, alpha=32, dropout=0.0, target_modules=None)) if use_lora else None
    trainer = SFTTrainer(model=model, args=targs, train_dataset=train, processing_class=processor, peft_config=peft)
    info["trainable_parameters"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.time()
    out = trainer.train()
    info["train_seconds"] = round(time.time() - t0, 2)
    info["s_per_step"] = round(info["train_seconds"] / args.steps, 3)
    info["loss"] = round(float(out.training_loss), 4)
    info["master_dtype"] = str(next(p for p in trainer.model.parameters() if p.requires_grad).dtype)


def run_grpo(folder: Path, work: Path, args, use_vllm: bool, info: dict) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tatar_core.method.parsing import parse_answer
    from tatar_core.method.prompts import prompt_messages
    from tatar_core.models import lora
    from tatar_core.models.loading import load_model_and_processor

    if use_vllm:
        try:
            import vllm  # noqa: F401
        except Exception as e:  # not installed / no GPU build
            info["skipped"] = f"vllm not importable: {type(e).__name__}: {str(e)[:200]}"
            return
    G, prompts = args.generations, args.prompts
    n = prompts * args.steps
    ds = Dataset.from_dict(
        {
            "images": [[im] for im in images(n, args.size, seed=2)],
            "prompt": [prompt_messages("iqa" if i % 2 == 0 else "iaa") for i in range(n)],
        }
    )

    def format_reward(completions, **_):  # the run is about time and memory; the TATAR rewards need pydantic
        return [1.0 if parse_answer(c[0]["content"]).status == "strict" else 0.0 for c in completions]

    vllm_args = (
        dict(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=0.3,
            vllm_importance_sampling_correction=False,
        )
        if use_vllm
        else {}
    )
    targs = GRPOConfig(
        output_dir=str(work / "grpo"),
        max_steps=args.steps,
        per_device_train_batch_size=prompts * G,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        shuffle_dataset=False,
        num_generations=G,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        beta=0.001,
        loss_type="grpo",
        learning_rate=1e-6,
        bf16=args.bf16,
        activation_checkpointing=args.gradient_checkpointing,
        remove_unused_columns=False,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        dataloader_pin_memory=False,
        use_cpu=args.device == "cpu",
        **vllm_args,
    )
    model, processor = load_model_and_processor(folder, model_cfg(args), for_training=True)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[format_reward],
        args=targs,
        train_dataset=ds,
        processing_class=processor,
        peft_config=lora.peft_config(SimpleNamespace(r=16, alpha=32, dropout=0.0, target_modules=None)),
    )
    info["reference_model"] = trainer.ref_model is not None
    t0 = time.time()
    trainer.train()
    info["train_seconds"] = round(time.time() - t0, 2)
    info["s_per_step"] = round(info["train_seconds"] / args.steps, 3)
    info["completions_per_step"] = prompts * G
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    info["mean_completion_tokens"] = round(sum(lengths) / len(lengths), 1) if lengths else None


def run_score(folder: Path, args, task: str, info: dict) -> None:
    from tatar_core.scoring.scorer import Scorer

    scorer = Scorer(
        folder,
        model_cfg=model_cfg(args),
        batch_size=args.score_batch,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
    )
    ims = images(args.images, args.size, seed=3 if task == "iqa" else 4)
    scorer.score(ims[:1], task)  # warm-up (prefix cache, kernels)
    t0 = time.time()
    res = scorer.score(ims, task)
    dt = time.time() - t0
    tokens = sum(len(scorer.tokenizer.encode(r.completion, add_special_tokens=False)) for r in res)
    info.update(
        images=len(ims),
        image_size=list(args.size),
        batch=args.score_batch,
        score_seconds=round(dt, 2),
        images_per_s=round(len(ims) / dt, 3),
        completion_tokens_per_s=round(tokens / dt, 1),
        parsed=sum(r.score is not None for r in res),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=["7b", "3b", "tiny"], default="7b")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per training phase")
    p.add_argument("--batch", type=int, default=None, help="SFT per-device batch (default: 8, tiny 2)")
    p.add_argument("--prompts", type=int, default=2, help="GRPO prompts per device per step (paper: 2 on 8 GPUs)")
    p.add_argument("--generations", type=int, default=8, help="GRPO G")
    p.add_argument("--images", type=int, default=32, help="images per scoring task")
    p.add_argument("--score-batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=256, help="scorer and GRPO completion limit")
    p.add_argument(
        "--size",
        type=lambda s: tuple(int(x) for x in s.split("x")),
        default=None,
        help="image WxH (default 1024x768; tiny 112x112)",
    )
    p.add_argument("--phases", default="sft_full,sft_lora,grpo_hf,grpo_vllm,score_iqa,score_iaa")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one, removed at the end)")
    p.add_argument("--out", default=None, help="also write the JSON summary here")
    args = p.parse_args(argv)

    import torch

    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.batch = args.batch or (2 if args.shape == "tiny" else 8)
    args.size = args.size or ((112, 112) if args.shape == "tiny" else (1024, 768))
    args.bf16 = args.device == "cuda"  # bf16 autocast on GPU; fp32 on CPU (CI)
    args.gradient_checkpointing = args.shape != "tiny"
    args.pixels = pixels(args.shape)
    phases = [x for x in args.phases.split(",") if x]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tatar-gpu-check-"))
    folder = work / "model"
    summary: dict = {"shape": args.shape, "device": args.device, "phases": {}}
    if args.device == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(0)
        summary["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    import peft
    import transformers
    import trl

    summary["versions"] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }
    try:
        with Phase("build", summary["phases"], args.device) as info:
            info.update(build_model_folder(args.shape, folder, args.device))
        if "error" in summary["phases"]["build"]:
            return _finish(summary, args, work, 1)
        jobs = {
            "sft_full": lambda info: run_sft(folder, work, args, False, info),
            "sft_lora": lambda info: run_sft(folder, work, args, True, info),
            "grpo_hf": lambda info: run_grpo(folder, work, args, False, info),
            "grpo_vllm": lambda info: run_grpo(folder, work, args, True, info),
            "score_iqa": lambda info: run_score(folder, args, "iqa", info),
            "score_iaa": lambda info: run_score(folder, args, "iaa", info),
        }
        for name in phases:
            with Phase(name, summary["phases"], args.device) as info:
                jobs[name](info)
        failed = [n for n, v in summary["phases"].items() if "error" in v]
        return _finish(summary, args, work, 1 if failed else 0)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def _finish(summary: dict, args, work: Path, rc: int) -> int:
    text = json.dumps(summary, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
