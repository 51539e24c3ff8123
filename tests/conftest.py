"""Shared session fixtures: the embedded tiny model, synthetic image sets, and a briefly SFT-trained checkpoint.

- `tiny_model_dir`: the tiny Qwen2.5-VL folder (random init, seed 0), built once per session.
- `synthetic_samples`: 32 SampleRecords (16 IQA + 16 IAA) over solid / noise / gradient / stripe PNGs, scores
  spread over 5..95, split "train".
- `synthetic_kept`: KeptRecords for those samples (short fixed IQA rationales, ~130-word IAA narratives).
- `sft_checkpoint`: `run_sft` on `synthetic_kept` (lr 3e-3, 120 steps, batch 4, ≈60 s); the folder out_dir/"model"
  (run_sft's result dict is next to it in sft_result.json). With greedy decoding it writes
  `<think>…</think><answer>NN.NN</answer>` for (measured) 32/32 prompts.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from filelock import FileLock
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: the tiny model's matrices are too small to gain from two, and when other processes share the
# cores OpenMP spin-waiting makes 2-thread runs 5-20x slower (measured: GRPO 3 steps 82 s -> 11 s). Subprocesses
# (accelerate launch) inherit it. Override with TATAR_TEST_THREADS.
os.environ["OMP_NUM_THREADS"] = os.environ.get("TATAR_TEST_THREADS", "1")
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Test files that take minutes run first: `make test` hands whole files to 2 processes (pytest-xdist --dist loadfile
# --no-loadscope-reorder keeps this order), and a long file started last keeps one process busy while the other idles.
LONG_FILES_FIRST = (
    "test_e2e_prefect.py",
    "test_learning.py",
    "test_train_kill.py",
    "test_realvocab.py",
    "test_gpu_check_script.py",
    "test_stage_keys.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the other files keep their order


N_SYNTHETIC = 32

IQA_RATIONALES = {
    "high": "The image is sharp and clean, with fine detail preserved. Noise and compression artifacts are barely "
    "visible.",
    "mid": "Moderate blur softens the edges and some noise is visible. Overall technical quality is acceptable.",
    "low": "Heavy noise and strong blur destroy fine detail. Blocky compression artifacts dominate the frame.",
}
_IAA_COMMON = (
    "The composition places the main shapes with a clear structure, and the balance between the left and right "
    "sides guides the eye across the frame. Colour and lighting shape the mood: the palette and contrast decide "
    "how the viewer feels about the scene. Technical execution matters too, since clarity and clean edges support "
    "the theme. The concept is simple, and the story it tells is direct rather than layered. Originality is "
    "limited, but the image still has a coherent gestalt where the elements work together. "
)
IAA_RATIONALES = {
    "high": _IAA_COMMON + "Here the harmony of colour and the calm, even light create a pleasant and inviting "
    "feeling, the balance is strong and the overall aesthetic appeal is high, so the rating is good.",
    "mid": _IAA_COMMON + "Here the colour harmony is ordinary and the light is flat, so the emotional impact is "
    "modest; the balance is acceptable and the overall aesthetic appeal is moderate, so the rating is fair.",
    "low": _IAA_COMMON + "Here the clashing colour, harsh light and cluttered structure create an unpleasant and "
    "awkward feeling, the balance is weak and the overall aesthetic appeal is low, so the rating is poor.",
}


def _band(score: float) -> str:
    return "high" if score >= 65 else ("mid" if score >= 35 else "low")


def _synthetic_image(kind: str, i: int, size: int = 112) -> Image.Image:
    rng = np.random.default_rng(1000 + i)
    base = np.array([(37 * i) % 256, (91 * i) % 256, (151 * i) % 256], dtype=np.float32)
    if kind == "solid":
        arr = np.broadcast_to(base, (size, size, 3)).copy()
    elif kind == "noise":
        arr = base + rng.normal(0, 60, (size, size, 3))
    elif kind == "gradient":
        ramp = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
        arr = ramp * base[None, None, :] + (1 - ramp) * (255 - base)[None, None, :]
        arr = np.broadcast_to(arr, (size, size, 3)).copy()
    else:  # stripes
        stripes = ((np.arange(size) // (4 + i % 8)) % 2).astype(np.float32)[:, None, None]
        arr = stripes * base[None, None, :] + (1 - stripes) * 30.0
        arr = np.broadcast_to(arr, (size, size, 3)).copy()
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_synthetic_samples(image_dir: Path, n: int = N_SYNTHETIC):
    """n SampleRecords (alternating iqa/iaa) with PNGs written to image_dir; scores spread over 5..95."""
    from data_contracts.records import SampleRecord

    image_dir.mkdir(parents=True, exist_ok=True)
    kinds = ("solid", "noise", "gradient", "stripes")
    out = []
    for i in range(n):
        task = "iqa" if i % 2 == 0 else "iaa"
        score = round(5.0 + 90.0 * ((i * 7) % n) / (n - 1), 2)
        kind = kinds[i % 4]
        path = image_dir / f"syn_{i:03d}_{kind}.png"
        _synthetic_image(kind, i).save(path)
        out.append(
            SampleRecord(
                sample_id=f"syn/{task}/{i:03d}",
                image_path=str(path.resolve()),
                task=task,
                score=score,
                split="train",
                source=f"synthetic-{task}",
                ref_id=f"syn{i:03d}",
                meta=f'{{"kind": "{kind}"}}',
            )
        )
    return out


def make_kept(samples):
    """KeptRecords with the fixed rationales above (target built by tatar_core.prompts.make_target)."""
    from data_contracts.records import KeptRecord
    from tatar_core.method.parsing import count_words
    from tatar_core.method.prompts import make_target

    kept = []
    for s in samples:
        table = IQA_RATIONALES if s.task == "iqa" else IAA_RATIONALES
        rationale = table[_band(s.score)]
        kept.append(
            KeptRecord(
                sample_id=s.sample_id,
                image_path=s.image_path,
                task=s.task,
                score=s.score,
                rationale=rationale,
                target=make_target(rationale, s.score),
                teacher="synthetic-fixed",
                n_words=count_words(rationale),
            )
        )
    return kept


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from data_contracts.config.model import ModelConfig
    from tatar_core.models.loading import resolve_model

    return resolve_model(ModelConfig(), tmp_path_factory.mktemp("model_cache"))


@pytest.fixture(scope="session")
def synthetic_samples(tmp_path_factory):
    return make_synthetic_samples(tmp_path_factory.mktemp("synthetic_images"))


@pytest.fixture(scope="session")
def synthetic_kept(synthetic_samples):
    return make_kept(synthetic_samples)


SFT_FIXTURE_CFG = dict(
    learning_rate=3e-3,
    max_steps=120,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    trainer_args={"logging_steps": 10, "save_steps": 1000, "warmup_steps": 0.05},
    thought_dropout_iqa=0.0,
    thought_dropout_iaa=0.0,
    seed=0,
)


def built_once_per_run(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder `build` fills once for the whole test run: under pytest-xdist the first worker that asks builds it
    (holding a file lock in the run's shared temp folder), the others wait for it and reuse it. Read-only for tests."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-<user>/pytest-<n>/, shared by the workers' popen-gw<k>/ folders
    out = root / name
    with FileLock(str(out) + ".lock"):
        if not (out / ".built").exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            build(out)
            (out / ".built").touch()
    return out


@pytest.fixture(scope="session")
def sft_checkpoint(tiny_model_dir, synthetic_kept, tmp_path_factory) -> Path:
    from data_contracts.config.model import ModelConfig
    from data_contracts.config.training import SftConfig
    from tatar_core.training.sft import run_sft

    def build(out: Path) -> None:
        result = run_sft(synthetic_kept, tiny_model_dir, SftConfig(**SFT_FIXTURE_CFG), ModelConfig(), out)
        (out / "sft_result.json").write_text(json.dumps(result))  # read by tests/test_train_sft.py

    return built_once_per_run(tmp_path_factory, "sft_fixture", build) / "model"


# ---------------------------------------------------------------- the real Qwen2.5-VL vocabulary
@pytest.fixture(scope="session")
def realvocab_model_dir(tmp_path_factory) -> Path:
    """`embedded:tiny-qwen2.5-vl-realvocab`: the tiny architecture with Qwen2.5-VL-7B-Instruct's tokenizer (152,064
    embedding rows, 39.5 M parameters), built once per session."""
    from data_contracts.config.model import EMBEDDED_REALVOCAB_MODEL, ModelConfig
    from tatar_core.models.loading import resolve_model

    return resolve_model(ModelConfig(path=EMBEDDED_REALVOCAB_MODEL), tmp_path_factory.mktemp("realvocab_cache"))


REALVOCAB_SFT_CFG = dict(
    learning_rate=3e-3,
    max_steps=48,
    per_device_train_batch_size=1,
    gradient_accumulation_steps=1,
    thought_dropout_iqa=1.0,
    iqa_fraction=1.0,
    seed=0,
    trainer_args={"logging_steps": 2, "save_steps": 1000, "lr_scheduler_type": "constant"},
)


@pytest.fixture(scope="session")
def realvocab_sft_checkpoint(synthetic_kept, tmp_path_factory) -> Path:
    """`run_sft` of the real-vocabulary model on one IQA row with an empty thought, 48 steps at lr 3e-3 (loss 11.7 ->
    0.01, smoothly): a model that writes tag-like text such as `</answer>` but not yet well-formed answers (every
    step pays for the 152k-row output layer). The scorer and GRPO tests check properties that hold whatever the
    model writes. (Higher rates diverged by CPU: 16 steps at lr 2e-2 wrote only "000…" on an AMD EPYC, 32 at 1e-2
    only "5.000…" and newlines on an Intel Xeon.)"""
    from data_contracts.config.model import ModelConfig
    from data_contracts.config.training import SftConfig
    from tatar_core.demo import qwen_vocab
    from tatar_core.demo.tiny import build_tiny_model
    from tatar_core.training.sft import run_sft

    # The random-init tower, trained (measured: behind the frozen analytic tower the tests' noise images sit far
    # from the one training image and 16-24 steps never write `</answer>` for them).
    base = build_tiny_model(
        tmp_path_factory.mktemp("realvocab_random_tower"),
        seed=0,
        analytic_tower=False,
        tokenizer=qwen_vocab.build_tokenizer(),
        vocab_size=qwen_vocab.CONFIG_VOCAB_SIZE,
    )
    rows = [next(k for k in synthetic_kept if k.task == "iqa")]
    out = tmp_path_factory.mktemp("realvocab_sft")
    result = run_sft(rows, base, SftConfig(**REALVOCAB_SFT_CFG), ModelConfig(freeze_vision=False), out)
    (out / "sft_result.json").write_text(json.dumps({**result, "max_steps": REALVOCAB_SFT_CFG["max_steps"]}))
    return out / "model"
