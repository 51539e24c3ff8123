"""The embedded model learns, measured on images it never saw.

(a) SFT of the embedded model (hand-set vision tower, frozen; random-init language side) on the demo's train
    images for a CI budget of steps ranks the held-out demo photos' distortions well above chance (expected-score
    readout), and far above the same SFT on a random-init tower (the control, ≈ 0).
(b) GRPO from that SFT checkpoint: the rewards and advantages are not all zero, the weights change, and the mean
    score reward over a fixed set of prompts rises over the run.

Thresholds were measured over seeds 0, 1, 2 (see the constants).
"""

from __future__ import annotations

import pytest
from scipy.stats import spearmanr

from data_contracts.config.model import ModelConfig
from data_contracts.config.samples import DemoDataConfig
from data_contracts.config.training import GrpoConfig, SftConfig
from data_contracts.records import KeptRecord

pytestmark = pytest.mark.slow

SFT_STEPS = 200
# held-out SRCC after SFT_STEPS steps (this recipe), measured with seeds 0 / 1 / 2: analytic tower 0.581 / 0.559 /
# 0.580; random-init tower (seed 0) -0.021
MIN_SRCC = 0.45
MIN_MARGIN_OVER_CONTROL = 0.3


@pytest.fixture(scope="module")
def demo_iqa(tmp_path_factory):
    from tatar_core.demo.data import build_demo_samples

    cfg = DemoDataConfig(iaa_manipulations=[], generated_refs=30)
    samples = build_demo_samples(cfg, tmp_path_factory.mktemp("demo_iqa"))
    return [s for s in samples if s.split == "train"], [s for s in samples if s.split == "test"]


def _sft(tmp_path, samples, analytic: bool, seed: int = 0):
    from tatar_core.demo.tiny import build_tiny_model
    from tatar_core.method.prompts import make_target
    from tatar_core.training.sft import run_sft

    base = build_tiny_model(tmp_path / "base", seed=seed, analytic_tower=analytic)
    kept = [
        KeptRecord(
            sample_id=s.sample_id,
            image_path=s.image_path,
            task="iqa",
            score=s.score,
            rationale="",
            target=make_target("", s.score),
            teacher="none",
            n_words=0,
        )
        for s in samples
    ]
    cfg = SftConfig(
        learning_rate=3e-3,
        max_steps=SFT_STEPS,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        iqa_fraction=1.0,
        seed=seed,
        trainer_args={"logging_steps": 50, "save_steps": 10_000},
    )
    run_sft(kept, base, cfg, ModelConfig(), tmp_path / "sft")
    return tmp_path / "sft" / "model"


def _held_out_srcc(model_dir, test) -> float:
    from tatar_core.scoring.scorer import Scorer

    res = Scorer(model_dir, batch_size=32, readout="expected", max_new_tokens=24).score(
        [s.image_path for s in test], "iqa"
    )
    pairs = [(r.score, s.score) for r, s in zip(res, test) if r.score is not None]
    assert len(pairs) >= 0.9 * len(test), f"only {len(pairs)}/{len(test)} answers parsed"
    return float(spearmanr(*zip(*pairs)).statistic)


@pytest.fixture(scope="module")
def sft_model(demo_iqa, tmp_path_factory):
    return _sft(tmp_path_factory.mktemp("sft_analytic"), demo_iqa[0], analytic=True)


def test_sft_ranks_held_out_images_and_beats_the_random_tower(demo_iqa, sft_model, tmp_path):
    train, test = demo_iqa
    assert {s.ref_id for s in train}.isdisjoint({s.ref_id for s in test})
    learned = _held_out_srcc(sft_model, test)
    control = _held_out_srcc(_sft(tmp_path, train, analytic=False), test)
    print(f"held-out SRCC after {SFT_STEPS} SFT steps: analytic tower {learned:.3f}, random tower {control:.3f}")
    assert learned >= MIN_SRCC
    assert learned - control >= MIN_MARGIN_OVER_CONTROL


GRPO_STEPS = 16
GRPO_LR = 3e-4


@pytest.mark.xfail(
    reason="since the quality view (issue 32) the score reward of this 16-step run falls (seed 0: 0.368 -> 0.312); "
    "its lr and steps need re-measuring, see issue 33",
    strict=False,
)
def test_grpo_from_sft_has_signal_changes_weights_and_raises_the_score_reward(demo_iqa, sft_model, tmp_path):
    """The same 8 training images every step (so steps are comparable): rewards and advantages are not all zero,
    the language side's weights change, and the mean score reward of the second half of the run beats the first's."""
    import json

    from safetensors.torch import load_file

    from data_contracts.parquet_io import read_records
    from data_contracts.records import TrainLogRecord
    from tatar_core.training.grpo import run_grpo

    train = sorted(demo_iqa[0], key=lambda s: s.sample_id)
    fixed = train[:: len(train) // 8][:8]
    cfg = GrpoConfig(
        num_generations=4,
        prompts_per_step=8,
        min_iaa_images_per_step=2,
        max_completion_length=24,
        learning_rate=GRPO_LR,
        beta=0.0,
        temperature=1.0,
        max_steps=GRPO_STEPS,
        seed=0,
        trainer_args={"logging_steps": 1, "save_steps": 10_000},
    )
    run_grpo(fixed, sft_model, cfg, ModelConfig(), tmp_path)
    log = sorted(read_records(tmp_path / "train_log.parquet", TrainLogRecord), key=lambda r: r.step)
    scores = [r.reward_score for r in log if r.task == "iqa"]
    assert len(scores) == GRPO_STEPS and min(r.parse_rate for r in log) > 0.5
    assert sum(scores) > 0
    history = json.loads((tmp_path / "log_history.json").read_text())
    zero_std = [h["frac_reward_zero_std"] for h in history if "frac_reward_zero_std" in h]
    assert zero_std and min(zero_std) < 1.0  # some groups have different rewards: non-zero advantages
    before, after = load_file(sft_model / "model.safetensors"), load_file(tmp_path / "model" / "model.safetensors")
    changed = [k for k in before if "visual" not in k and not (before[k] == after[k]).all()]
    assert changed, "GRPO left every language-side weight unchanged"
    assert all((before[k] == after[k]).all() for k in before if "visual" in k)  # the frozen tower stays
    k = GRPO_STEPS // 2
    first, last = sum(scores[:k]) / k, sum(scores[k:]) / k
    print(f"GRPO mean score reward: first {k} steps {first:.3f}, last {k} steps {last:.3f}")
    assert last > first  # measured (seed 0): 0.243 -> 0.304


# the same held-out photo distorted at 128 x 128 and at 384 x 288 (the quality view cuts native-resolution fragments,
# so the distortions look alike to the tower): mean |score difference| over the photo's 51 versions, measured with
# seed 0: 2.6 points; SRCC 0.890 at 128 px vs 0.830 at 384 x 288 (a downscale-only view loses most of the ranking at
# the larger size: SRCC 0.19 at 512 x 384 in issue 32's table)
MAX_SIZE_GAP = 6.0
MAX_SRCC_DROP = 0.12


def test_the_same_photo_at_two_sizes_gets_close_scores(demo_iqa, sft_model):
    from tatar_core.demo.data import PHOTOS, fit, iqa_versions
    from tatar_core.scoring.scorer import Scorer

    scorer = Scorer(sft_model, batch_size=32, readout="expected", max_new_tokens=24)
    photo = next(p for p in PHOTOS if p.name == "chelsea")  # a test photo: never trained on
    from PIL import Image

    img = Image.fromarray(photo.load())
    scores, labels = {}, None
    for w, h in ((128, 128), (384, 288)):
        versions = iqa_versions(fit(img, w, h), f"chelsea@{w}x{h}", 0)
        res = scorer.score([v.image for v in versions], "iqa")
        assert all(r.score is not None for r in res)
        scores[w] = [r.score for r in res]
        labels = [v.score for v in versions]
    gap = sum(abs(a - b) for a, b in zip(scores[128], scores[384])) / len(labels)
    srcc = {w: spearmanr(s, labels).statistic for w, s in scores.items()}
    print(f"chelsea at 128 vs 384x288: mean |score difference| {gap:.1f}; SRCC {srcc[128]:.3f} vs {srcc[384]:.3f}")
    assert gap <= MAX_SIZE_GAP
    assert srcc[384] >= srcc[128] - MAX_SRCC_DROP


RANK_STEPS = 16
RANK_LR = 3e-4
# held-out SRCC after GRPO with the rank reward alone (grpo.ablation: rank_only, IQA ranked across the step's
# images), right labels minus shuffled labels, measured with seed 0: SFT 0.716, right 0.774, shuffled 0.744 (+0.030); a
# zeroed rank reward would make the two runs identical (gain 0)
MIN_RANK_GAIN = 0.015


def _rank_grpo(tmp_path, sft_model, train, shuffle: bool):
    import random

    from tatar_core.training.grpo import run_grpo

    rows = sorted(train, key=lambda s: s.sample_id)[::20][:32]
    if shuffle:  # the same images, their labels permuted: the ranking signal is gone, everything else is equal
        labels = [s.score for s in rows]
        random.Random(0).shuffle(labels)
        rows = [s.model_copy(update={"score": v}) for s, v in zip(rows, labels)]
    cfg = GrpoConfig(
        num_generations=4,
        prompts_per_step=8,
        max_completion_length=24,
        learning_rate=RANK_LR,
        beta=0.0,
        temperature=1.0,
        max_steps=RANK_STEPS,
        seed=0,
        ablation="rank_only",
        trainer_args={"logging_steps": 1, "save_steps": 10_000},
    )
    run_grpo(rows, sft_model, cfg, ModelConfig(), tmp_path)
    return tmp_path / "model"


def test_the_rank_reward_teaches_ranking_and_shuffled_labels_do_not(demo_iqa, sft_model, tmp_path):
    """GRPO with only the ranking reward (Thurstone-style, across the images of each step): with the right labels
    the held-out ranking ends above the same run with the labels shuffled among the images."""
    train, test = demo_iqa
    right = _held_out_srcc(_rank_grpo(tmp_path / "right", sft_model, train, shuffle=False), test)
    wrong = _held_out_srcc(_rank_grpo(tmp_path / "shuffled", sft_model, train, shuffle=True), test)
    before = _held_out_srcc(sft_model, test)
    print(f"held-out SRCC: SFT {before:.3f}, rank-only GRPO {right:.3f}, with shuffled labels {wrong:.3f}")
    assert right - wrong >= MIN_RANK_GAIN
