"""Thurstone-style ranking across images (TATAR paper, arXiv 2603.19779) and the reference code's sibling variant."""

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.config.rewards import RankRewardConfig
from data_contracts.config.training import GrpoConfig
from tatar_core.method.rewards import RewardStats, make_reward_funcs, rank_reward

SIBLING = RankRewardConfig(variant="sibling")


def ans(x: float) -> str:
    return f"<think>balanced light</think><answer>{x:.2f}</answer>"


def step(gts, preds_per_image, task="iaa", prefix="img"):
    """Columns of a step: image i with ground truth gts[i] and one completion per prediction in preds_per_image[i]."""
    comps, tasks, scores, sids = [], [], [], []
    for i, (g, preds) in enumerate(zip(gts, preds_per_image)):
        for p in preds:
            comps.append(ans(p))
            tasks.append(task)
            scores.append(g)
            sids.append(f"{prefix}{i}")
    return comps, tasks, scores, sids


def manual_thurstone(g_i, q_k, others, v_i, tau=0.08, m=0.12, eps=1e-6):
    """The §6.5 formula written out for one completion, scalar by scalar (others: list of (g_j, mu_j, v_j))."""
    num = den = 0.0
    for g_j, mu_j, v_j in others:
        p_gt = 1 / (1 + math.exp(-(g_i - g_j) / tau))
        p = 1 / (1 + math.exp(-(q_k - mu_j) / math.sqrt(v_i + v_j + eps)))
        p = min(1 - eps, max(eps, p))
        bce = -(p_gt * math.log(p) + (1 - p_gt) * math.log(1 - p))
        w = math.exp(-abs(g_i - g_j) / m)
        num, den = num + w * bce, den + w
    return min(1.0, max(0.0, 1 - (num / den) / -math.log(eps)))


def test_matches_formula_written_out():
    gts = [20.0, 55.0, 60.0]
    preds = [[25.0, 18.0, 30.0], [50.0, 64.0], [58.0]]
    comps, tasks, scores, sids = step(gts, preds)
    got = rank_reward(comps, tasks, scores, sids)
    stats = [(g / 100, np.mean(p) / 100, np.var(np.array(p) / 100)) for g, p in zip(gts, preds)]
    k = 0
    for i, p in enumerate(preds):
        for q in p:
            others = [s for j, s in enumerate(stats) if j != i]
            assert got[k] == pytest.approx(manual_thurstone(gts[i] / 100, q / 100, others, stats[i][2]), abs=1e-12)
            k += 1


@settings(max_examples=60, deadline=None)
@given(
    gts=st.lists(st.integers(0, 100), min_size=3, max_size=8, unique=True),
    g=st.integers(1, 4),
    jitter=st.lists(st.floats(-0.4, 0.4), min_size=32, max_size=32),
)
def test_agreeing_order_beats_reversed(gts, g, jitter):
    gts = [float(x) for x in gts]
    order = np.argsort(gts)
    reversed_target = np.empty(len(gts))
    reversed_target[order] = np.array(gts)[order[::-1]]  # lowest image predicted as the highest, etc.
    agree = [[gts[i] + jitter[(i * g + k) % 32] for k in range(g)] for i in range(len(gts))]
    rev = [[reversed_target[i] + jitter[(i * g + k) % 32] for k in range(g)] for i in range(len(gts))]
    r_agree = rank_reward(*step(gts, agree))
    r_rev = rank_reward(*step(gts, rev))
    assert np.mean(r_agree) > np.mean(r_rev)


def test_iqa_rows_zero_and_too_few_images():
    comps, tasks, scores, sids = step([20.0, 70.0], [[20.0, 25.0], [70.0]], task="iqa")
    assert rank_reward(comps, tasks, scores, sids) == [0.0] * 3  # IQA is not ranked by default
    assert max(rank_reward(comps, tasks, scores, sids, tasks=("iqa",))) > 0  # unless asked
    one = step([40.0], [[40.0] * 8])
    assert rank_reward(*one) == [0.0] * 8  # one IAA image: nothing to rank against
    # two images, but one has no parseable completion: it cannot be a comparison group
    comps, tasks, scores, sids = step([40.0, 80.0], [[40.0, 42.0], [80.0]])
    comps[-1] = "<answer>eighty</answer>"
    assert rank_reward(comps, tasks, scores, sids) == [0.0] * 3


def test_mixed_batch_ranks_iaa_only_against_iaa():
    c1, t1, s1, i1 = step([20.0, 70.0], [[20.0], [70.0]], task="iqa", prefix="q")
    c2, t2, s2, i2 = step([30.0, 60.0, 90.0], [[31.0, 29.0], [60.0], [88.0]], task="iaa", prefix="a")
    mixed = rank_reward(c1 + c2, t1 + t2, s1 + s2, i1 + i2)
    assert mixed[:2] == [0.0, 0.0]
    assert mixed[2:] == pytest.approx(rank_reward(c2, t2, s2, i2), abs=1e-15)
    bad = list(c2)
    bad[1] = "<answer>29</answer> extra"
    r = rank_reward(bad, t2, s2, i2)
    assert r[1] == 0.0 and min(r[:1] + r[2:]) > 0


def test_inconsistent_ground_truth_for_one_image_raises():
    comps, tasks, scores, sids = step([30.0, 60.0], [[30.0, 31.0], [60.0]])
    scores[1] = 31.0
    with pytest.raises(ValueError, match="img0"):
        rank_reward(comps, tasks, scores, sids)


class ThreadGather:
    """A real all-gather of python lists between threads (a barrier-synchronised exchange)."""

    def __init__(self, world: int):
        self.world = world
        self.slots = [None] * world
        self.barrier = threading.Barrier(world)
        self.rank = threading.local()

    def __call__(self, items: list) -> list:
        r = self.rank.value
        self.slots[r] = list(items)
        self.barrier.wait()
        out = [x for slot in self.slots for x in slot]
        self.barrier.wait()  # nobody overwrites a slot before every process has read them all
        return out


def run_in_threads(world: int, fn):
    results, errors = [None] * world, []

    def worker(r):
        try:
            results[r] = fn(r)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_two_process_gather_equals_global_batch():
    # process 0 holds ONE IAA image (+ IQA rows); process 1 holds two others. Local-only ranking would give
    # process 0 zeros; the gathered ranking must equal the ranking of the concatenated step.
    c0, t0, s0, i0 = step([35.0], [[30.0, 41.0, 38.0]], prefix="a")
    q0 = step([50.0], [[50.0, 55.0]], task="iqa", prefix="q")
    c0, t0, s0, i0 = c0 + q0[0], t0 + q0[1], s0 + q0[2], i0 + q0[3]
    c1, t1, s1, i1 = step([62.0, 10.0], [[60.0, 70.0, 65.0], [12.0, 9.0]], prefix="b")
    local = [(c0, t0, s0, i0), (c1, t1, s1, i1)]
    want = rank_reward(c0 + c1, t0 + t1, s0 + s1, i0 + i1)
    assert rank_reward(c0, t0, s0, i0) == [0.0] * len(c0)  # the reference bug: local-only sees one image

    gather = ThreadGather(2)

    def proc(r):
        gather.rank.value = r
        return rank_reward(*local[r], gather=gather)

    got = run_in_threads(2, proc)
    assert got[0] == want[: len(c0)]
    assert got[1] == want[len(c0) :]
    assert max(got[0][:3]) > 0

    # the same through the factory, twice in a row (the collective is reusable), with stats per process
    cfg = GrpoConfig()
    stats = [RewardStats(), RewardStats()]

    def proc_factory(r):
        gather.rank.value = r
        rank_fn = make_reward_funcs(cfg, gather=gather, stats=stats[r])[2]
        c, t, s, i = local[r]
        kw = dict(prompts=[None] * len(c), completion_ids=[[1]] * len(c), trainer_state=None)
        return [rank_fn(completions=c, task=t, score=s, sample_id=i, **kw) for _ in range(2)]

    got = run_in_threads(2, proc_factory)
    for r, start, stop in ((0, 0, len(c0)), (1, len(c0), len(want))):
        assert got[r][0] == got[r][1] == want[start:stop]
    assert set(stats[0].last_gather["global_iaa"]) == {"a0", "b0", "b1"}
    assert set(stats[0].last_gather["local"]) == {"a0", "q0"}


def test_gather_must_return_all_payloads():
    comps, tasks, scores, sids = step([30.0, 60.0], [[30.0], [60.0]])
    with pytest.raises(RuntimeError, match="gather"):
        rank_reward(comps, tasks, scores, sids, gather=lambda items: [])


def test_sibling_variant_degenerates_on_one_image():
    """Why the reference's registered variant is not the default: with one image per call (its shipped config)
    p_gt = 0.5 and w = 1, so it scores agreement with sibling completions, whatever the ground truth is."""
    agree = step([40.0], [[55.0] * 8])
    assert rank_reward(*agree, SIBLING) == pytest.approx([0.925] * 8, abs=5e-4)
    for gt in (5.0, 95.0):  # ground truth has no effect
        assert rank_reward(*step([gt], [[50.0, 60.0]]), SIBLING) == pytest.approx([0.905, 0.905], abs=5e-4)
        assert rank_reward(*step([gt], [[50.0, 80.0]]), SIBLING) == pytest.approx([0.794, 0.794], abs=5e-4)
    assert rank_reward(*agree) == [0.0] * 8  # thurstone: nothing to rank on one image
    # local only: a gather is never called
    assert rank_reward(*agree, SIBLING, gather=lambda items: 1 / 0) == rank_reward(*agree, SIBLING)
