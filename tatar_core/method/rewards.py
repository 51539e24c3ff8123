"""TATAR GRPO rewards: Gaussian score shaping, Thurstone-style ranking across images, format.

The one place for the reward formulas (TATAR, arXiv 2603.19779, and its reference code; where the two disagree
the choice is stated below). Every reward is a plain function with trl's reward signature: `f(prompts=...,
completions=..., completion_ids=..., trainer_state=..., **columns)`, where the dataset columns `task` ("iqa" |
"iaa"), `score` (ground truth on 0–100) and `sample_id` arrive as lists aligned with `completions`. Completions
are str, or conversational `[{"role": "assistant", "content": str | [{"type": "text", "text": ...}, ...]}]`.
All rewards lie in [0, 1].

The registry `REWARDS` lists every reward: a function and its default weight per task (`register_reward`, at
the end of the formulas below). A new reward is one function plus one `register_reward(...)` line; its weights
(`grpo.rewards_iqa.<name>`, `grpo.rewards_iaa.<name>`), trl's reward_funcs / reward_weights, the `reward_<name>`
column of train_log.parquet, the log line and the reward curves follow from it. `make_reward_funcs(cfg)` builds the
trl callables ("score", "format", "rank" by default, in the order trl calls them) with the per-task weights and the
ablation switch applied inside (give trl `trl_reward_weights()`, 1.0 each).

Collectives never hang on one process's error: the rank reward's all-gather (and the GRPO log callback's, through
`gather_guarded`) carries an error flag with each process's data; each process computes its part inside a guard, and
when any process reports an error every process raises the same `CollectiveError` at that gather. An error in the
"score" or "format" callable (any non-collective one) is held until the "rank" call of the same step (the last one)
gathers it.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from data_contracts.config.rewards import RankRewardConfig, ScoreRewardConfig
from data_contracts.config.training import GrpoConfig
from tatar_core.method.parsing import SCORE_PARSERS, count_words, parse_strict
from tatar_core.method.prompts import TASKS
from tatar_core.method.scales import clamp_100

Gather = Callable[[list], list]


class CollectiveError(RuntimeError):
    """Work feeding a collective failed on some process; raised with the same message on every process."""


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def gather_guarded(
    gather: Optional[Gather], what: str, compute: Callable[[], Any], errors: Sequence[str] = ()
) -> tuple[list, int]:
    """All-gather this process's part `compute()` together with an error flag; return (the parts of all processes
    in process order, this process's index).

    `gather` receives `[payload]` (payload = {"token", "error", "data"}) and must return the payloads of all
    processes in process order (accelerate.utils.gather_object does); None = one process. An exception in `compute`
    (and any `errors` of earlier local work) is not raised before the gather but sent with it; when any process
    sent one, every process raises the same CollectiveError naming the failing process(es) and their messages.
    """
    token = uuid.uuid4().hex
    errs, data = list(errors), None
    try:
        data = compute()
    except Exception as e:  # noqa: BLE001 - every error must reach the gather, or the other processes wait forever
        errs.append(_describe(e))
    payload = {"token": token, "error": "; ".join(errs) or None, "data": data}
    parts = [payload] if gather is None else gather([payload])
    if not isinstance(parts, list) or not all(isinstance(p, dict) and "token" in p for p in parts):
        raise RuntimeError(f"{what}: gather must all-gather python lists (like accelerate.utils.gather_object)")
    mine = [i for i, p in enumerate(parts) if p["token"] == token]
    if len(mine) != 1:
        raise RuntimeError(f"{what}: this process's payload appears {len(mine)} times in the gathered list")
    failed = [f"process {k}: {p['error']}" for k, p in enumerate(parts) if p.get("error")]
    if failed:
        raise CollectiveError(
            f"{what} failed on {len(failed)} of {len(parts)} process(es): {'; '.join(failed)} "
            f"(raised on every process; this is process {mine[0]})"
        )
    return [p["data"] for p in parts], mine[0]


# --------------------------------------------------------------------------------------------- inputs
def completion_text(completion: Any) -> str:
    """The text of one completion: a str, or the assistant messages' content (str or text parts), joined."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    out = []
    for msg in completion:
        if isinstance(msg, str):
            out.append(msg)
            continue
        if msg.get("role", "assistant") != "assistant":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.append("".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"))
    return "\n".join(out)


def _column(name: str, values: Optional[Sequence], n: int) -> list:
    if values is None:
        raise ValueError(f"reward function needs the dataset column '{name}' (got none)")
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column '{name}' has {len(values)} values for {n} completions")
    return values


def _check_tasks(tasks: list) -> list[str]:
    for i, t in enumerate(tasks):
        if t not in TASKS:
            raise ValueError(f"row {i}: task must be one of {TASKS}, got {t!r}")
    return tasks


def _gt(x: Any) -> Optional[float]:
    """Ground truth as a float clamped to [0, 100], or None when missing/NaN."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else clamp_100(x)


def _pred(text: str, parse: Callable[[str], Optional[float]] = parse_strict) -> Optional[float]:
    """Parsed prediction (strict unless `parse` says otherwise) clamped to [0, 100], or None (unparsable / not
    finite)."""
    p = parse(text)
    if p is None or not math.isfinite(p):
        return None
    return clamp_100(p)


# --------------------------------------------------------------------------------------------- score
def gaussian_score(d: float, task: str, cfg: ScoreRewardConfig = ScoreRewardConfig()) -> float:
    """Gaussian score shaping of an absolute error d (points on 0–100), without the length gates:

    σ0 = thr / √(2 ln 2)              (exp(−thr²/2σ0²) = 0.5; thr = 8.75 → σ0 = 7.4316)
    σ  = σ0 · (1 + α · d/100)         α_iqa = 0.8, α_iaa = 2.0  ("adaptive σ")
    r  = min(1, s · exp(−d² / 2σ²))   s_iqa = 1.0, s_iaa = 1.5
    """
    alpha, scale = (cfg.alpha_iqa, cfg.scale_iqa) if task == "iqa" else (cfg.alpha_iaa, cfg.scale_iaa)
    sigma = cfg.threshold / math.sqrt(2.0 * math.log(2.0)) * (1.0 + alpha * d / 100.0)
    return min(1.0, scale * math.exp(-(d * d) / (2.0 * sigma * sigma)))


def passes_length_gate(words: int, task: str, cfg: ScoreRewardConfig = ScoreRewardConfig()) -> bool:
    """IQA: words ≤ iqa_max_words (65); IAA: words ≥ iaa_min_words (125); a None limit disables that gate."""
    if task == "iqa":
        return cfg.iqa_max_words is None or words <= cfg.iqa_max_words
    return cfg.iaa_min_words is None or words >= cfg.iaa_min_words


def score_reward(completions, task, score, cfg: ScoreRewardConfig = ScoreRewardConfig(), **kw) -> list[float]:
    """Gaussian score shaping per completion, in [0, 1].

    With p = the parsed prediction (`cfg.parse`: "reference" = first <answer> block even with text around the tags,
    the default; "strict" = the format reward's rule) and g = ground truth, both clamped to [0, 100], d = |p − g|:
        r = min(1, s_task · exp(−d² / 2σ²)),  σ = thr/√(2 ln 2) · (1 + α_task · d/100)
    thr = 8.75, α_iqa = 0.8, α_iaa = 2.0, s_iqa = 1, s_iaa = 1.5. Length gates on the whole completion's words
    (whitespace tokens): IQA > 65 words → 0, IAA < 125 words → 0. Unparsable or missing ground truth → 0.
    """
    n = len(completions)
    tasks = _check_tasks(_column("task", task, n))
    gts = _column("score", score, n)
    parse = SCORE_PARSERS[cfg.parse]
    out = []
    for c, t, g in zip(completions, tasks, gts):
        text = completion_text(c)
        p, g = _pred(text, parse), _gt(g)
        if p is None or g is None or not passes_length_gate(count_words(text), t, cfg):
            out.append(0.0)
        else:
            out.append(gaussian_score(abs(p - g), t, cfg))
    return out


# --------------------------------------------------------------------------------------------- format
def format_reward(completions, **kw) -> list[float]:
    """1.0 iff the strict parser accepts the completion (at most one <think>…</think> before exactly one
    <answer>…</answer> holding one number, nothing else around them), else 0.0. <think> is optional."""
    return [0.0 if parse_strict(completion_text(c)) is None else 1.0 for c in completions]


# --------------------------------------------------------------------------------------------- rank
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _soft_bce(p_gt: np.ndarray, p_pred: np.ndarray, eps: float) -> np.ndarray:
    q = np.clip(p_pred, eps, 1.0 - eps)
    return -(p_gt * np.log(q) + (1.0 - p_gt) * np.log1p(-q))


def _rank_score(bce: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """r = clip(1 − (Σ_j w·BCE / Σ_j w) / (−ln eps), 0, 1) along the last axis."""
    mean = (w * bce).sum(-1) / w.sum(-1)
    return np.clip(1.0 - mean / (-math.log(eps)), 0.0, 1.0)


def _thurstone(tasks, gts, sids, qs, ranked: Iterable[str], cfg: RankRewardConfig) -> list[float]:
    """The Thurstone ranking over one (global) set of completions; groups = (task, sample_id); see `rank_reward`."""
    n = len(tasks)
    out = np.zeros(n)
    for t in ranked:
        groups: dict[str, list[int]] = defaultdict(list)
        for i in range(n):
            if tasks[i] == t and gts[i] is not None:
                groups[sids[i]].append(i)
        for sid, idx in groups.items():
            if len({gts[i] for i in idx}) > 1:
                raise ValueError(
                    f"sample_id {sid!r} ({t}) has different ground-truth scores {sorted({gts[i] for i in idx})}"
                )
        # groups with at least one parseable completion; q and g on 0–1
        stats = {}
        for sid, idx in groups.items():
            q = np.array([qs[i] for i in idx if qs[i] is not None]) / 100.0
            if len(q):
                stats[sid] = (gts[idx[0]] / 100.0, float(q.mean()), float(q.var()))  # population variance
        if len(stats) < 2:
            continue
        keys = list(stats)
        g = np.array([stats[k][0] for k in keys])
        mu = np.array([stats[k][1] for k in keys])
        v = np.array([stats[k][2] for k in keys])
        for a, sid in enumerate(keys):
            other = np.arange(len(keys)) != a
            dg = g[a] - g[other]
            p_gt = _sigmoid(dg / cfg.tau)
            w = np.exp(-np.abs(dg) / cfg.margin)
            ks = [i for i in groups[sid] if qs[i] is not None]
            qk = np.array([qs[i] for i in ks])[:, None] / 100.0
            p_pred = _sigmoid((qk - mu[other]) / np.sqrt(v[a] + v[other] + cfg.eps))
            out[ks] = _rank_score(_soft_bce(p_gt, p_pred, cfg.eps), w, cfg.eps)
    return out.tolist()


def _sibling(tasks, gts, qs, ranked: Iterable[str], cfg: RankRewardConfig) -> list[float]:
    """The reference code's registered `rank_reward`: every parseable completion i of a ranked task against
    every other one j of that task in the call (S), p_gt = σ((g_i−g_j)/τ), p_pred = σ((q_i−q_j)/τ),
    w = exp(−|g_i−g_j|/m), eps = sibling_eps (1e-4); |S| < 2 → 0."""
    n = len(tasks)
    out = np.zeros(n)
    for t in ranked:
        s = [i for i in range(n) if tasks[i] == t and gts[i] is not None and qs[i] is not None]
        if len(s) < 2:
            continue
        g = np.array([gts[i] for i in s]) / 100.0
        q = np.array([qs[i] for i in s]) / 100.0
        dg = g[:, None] - g[None, :]
        p_gt = _sigmoid(dg / cfg.tau)
        p_pred = _sigmoid((q[:, None] - q[None, :]) / cfg.tau)
        w = np.exp(-np.abs(dg) / cfg.margin) * (1.0 - np.eye(len(s)))  # j ≠ i
        out[s] = _rank_score(_soft_bce(p_gt, p_pred, cfg.sibling_eps), w, cfg.sibling_eps)
    return out.tolist()


_RANK_COLUMNS = ("task", "score", "sample_id", "q")


def _all_gather(
    compute: Callable[[], dict], gather: Optional[Gather], errors: Sequence[str] = ()
) -> tuple[dict, int, list[dict]]:
    """All-gather this process's columns (`compute()`, guarded: see `gather_guarded`); return (global columns,
    local offset, per-process columns). The offset is the number of completions of the processes before ours."""
    parts, mine = gather_guarded(gather, "rank reward", compute, errors)
    offset = sum(len(p["task"]) for p in parts[:mine])
    merged = {k: [x for p in parts for x in p[k]] for k in _RANK_COLUMNS}
    return merged, offset, parts


def rank_reward(
    completions,
    task,
    score,
    sample_id,
    cfg: RankRewardConfig = RankRewardConfig(),
    gather: Optional[Gather] = None,
    tasks: Sequence[str] = ("iaa",),
    stats: Optional["RewardStats"] = None,
    errors: Sequence[str] = (),
    **kw,
) -> list[float]:
    """Ranking reward in [0, 1]; only completions whose task is in `tasks` (default IAA) are ranked, and only
    against completions of the same task. Scores are /100 (g ground truth, q strictly parsed prediction).

    variant "thurstone" (the paper, default): first ALL-GATHER (task, score, sample_id, q) of every completion of
    the step from all processes (`gather`; identity when None), rank the global set, return this process's slice.
    One image = one group (sample_id); per group i: μ_i, population variance v_i of its parseable q. For
    completion k of image i and every other group j of the task with ≥ 1 parseable completion:
        p_gt   = σ((g_i − g_j)/τ)                          τ = 0.08
        p_pred = σ((q_k − μ_j) / √(v_i + v_j + ε))          ε = 1e-6, σ = logistic
        w      = exp(−|g_i − g_j| / m)                      m = 0.12 (close-GT pairs weigh more)
        BCE    = −[p_gt ln p + (1 − p_gt) ln(1 − p)],  p = clip(p_pred, ε, 1 − ε)
        r_k    = clip(1 − (Σ_j w·BCE / Σ_j w) / (−ln ε), 0, 1)
    Unranked tasks, unparsable completions and missing ground truth → 0; fewer than 2 groups of a task with a
    parseable completion → 0 for that task. Every process must call this the same number of times (collective).

    This process's columns are computed inside the gather's guard: an error here, or one in `errors` (held from the
    step's earlier reward calls), makes every process raise the same CollectiveError at the gather.

    variant "sibling" (reference-code ablation): completion vs completion within THIS call only, no gather.
    With one image per call (the shipped reference config) p_gt = 0.5 and w = 1, so it rewards agreement with
    sibling completions, not ranking across images (0.925 when all agree): that is why it is not the default.
    """
    n = len(completions)

    def local() -> dict:
        return {
            "task": _check_tasks(_column("task", task, n)),
            "score": [_gt(x) for x in _column("score", score, n)],
            "sample_id": [str(x) for x in _column("sample_id", sample_id, n)],
            "q": [_pred(completion_text(c)) for c in completions],
        }

    if cfg.variant == "sibling":
        if errors:
            raise ValueError("; ".join(errors))
        cols = local()
        return _sibling(cols["task"], cols["score"], cols["q"], tasks, cfg)
    merged, offset, parts = _all_gather(local, gather, errors)
    if stats is not None:
        sids = merged["sample_id"][offset : offset + n]
        stats.note_gather(local_ids=sids, global_ids=merged["sample_id"], global_tasks=merged["task"])
    rewards = _thurstone(merged["task"], merged["score"], merged["sample_id"], merged["q"], tasks, cfg)
    return rewards[offset : offset + n]


# --------------------------------------------------------------------------------------------- registry
RESERVED_NAMES = ("total", "words", "parsed")  # train-log / stats columns that are not rewards


@dataclass(frozen=True)
class Reward:
    """One GRPO reward of the registry `REWARDS` (see `register_reward`)."""

    name: str
    fn: Callable[..., list[float]]
    weights: dict[str, float]  # default weight per task, {"iqa": w, "iaa": w}; grpo.rewards_<task> overrides it
    settings: Optional[str] = None  # the GrpoConfig field passed to `fn` as `cfg`, e.g. "score_reward"
    collective: bool = False  # `fn` all-gathers across processes (see `make_reward_funcs`)


REWARDS: dict[str, Reward] = {}


def register_reward(
    name: str,
    fn: Callable[..., list[float]],
    *,
    settings: Optional[str] = None,
    collective: bool = False,
    **weights: float,
) -> Reward:
    """Add a reward to the registry: `fn` with trl's reward signature (values in [0, 1]) and its default weight per
    task as keywords, e.g. `register_reward("length", length_reward, iqa=0.0, iaa=0.5)`.

    From the registry follow the config (grpo.rewards_iqa.<name> / grpo.rewards_iaa.<name> override the weights),
    trl's reward_funcs and reward_weights, the `reward_<name>` columns of train_log.parquet, the log line and the
    reward curves. `settings` names a GrpoConfig field handed to `fn` as `cfg`. A `collective` reward all-gathers
    across processes: trl calls it after the others, and it also receives gather=, tasks= (the tasks whose weight
    is > 0), stats= and errors= (errors held from the step's earlier rewards; it must send them with its gather,
    as `rank_reward` does through `gather_guarded`).
    """
    if not name.isidentifier() or name in RESERVED_NAMES:
        raise ValueError(f"reward name {name!r} must be a Python identifier and not one of {RESERVED_NAMES}")
    if name in REWARDS:
        raise ValueError(f"reward {name!r} is already registered")
    if set(weights) != set(TASKS) or any(w < 0 for w in weights.values()):
        raise ValueError(f"reward {name!r}: give a default weight >= 0 for each task {TASKS}, got {weights}")
    REWARDS[name] = Reward(name, fn, {t: float(weights[t]) for t in TASKS}, settings, collective)
    return REWARDS[name]


# The TATAR rewards (paper Eq. for the score and rank rewards; the format reward of the reference code).
register_reward("score", score_reward, iqa=1.0, iaa=1.0, settings="score_reward")
register_reward("rank", rank_reward, iqa=0.0, iaa=1.0, settings="rank_reward", collective=True)
register_reward("format", format_reward, iqa=1.0, iaa=1.0)


def trl_order() -> list[Reward]:
    """The registered rewards in the order trl calls them: registry order, the collective ones last (so that an
    error of an earlier reward reaches a gather of the same step)."""
    return [r for r in REWARDS.values() if not r.collective] + [r for r in REWARDS.values() if r.collective]


def trl_reward_weights() -> list[float]:
    """trl's `reward_weights`, one per callable of `make_reward_funcs`: 1.0 each, since trl's weights are per function
    and the per-task weights are applied inside the callables (trl's total = Σ callables = the weighted sum)."""
    return [1.0 for _ in trl_order()]


# --------------------------------------------------------------------------------------------- weights + stats
def check_weights(cfg: GrpoConfig) -> None:
    """Raise ValueError when grpo.rewards_iqa / rewards_iaa name a reward that is not registered."""
    for t in TASKS:
        unknown = sorted(set(getattr(cfg, f"rewards_{t}").model_dump()) - set(REWARDS))
        if unknown:
            raise ValueError(
                f"grpo.rewards_{t}: unknown reward(s) {', '.join(map(repr, unknown))} (registered: "
                f"{', '.join(REWARDS)}; see tatar_core/method/rewards.py)"
            )


def effective_weights(cfg: GrpoConfig) -> dict[str, dict[str, float]]:
    """Per task, the weight of every registered reward: grpo.rewards_<task>.<name> when set, else the registered
    default (IQA: score 1, rank 0, format 1; IAA: score 1, rank 1, format 1), then the ablation switch
    (weight 0 = that reward is off):

      ablation        IQA score / rank                   IAA score / rank       (format and others unchanged)
      none            as configured                      as configured
      rank_only       0 / (IQA rank, or IAA rank if 0)   0 / IAA rank
      pointwise_iaa   as configured                      IAA score / 0

    rank_only (paper Table 2's ablation) ranks IQA completions across IQA images, with the IQA rank weight when it
    is set (> 0), else the IAA one. A task with rank weight > 0 is ranked only against images of the same task.
    """
    check_weights(cfg)
    w = {
        t: {
            name: float(getattr(cfg, f"rewards_{t}").model_dump().get(name, r.weights[t]))
            for name, r in REWARDS.items()
        }
        for t in TASKS
    }
    if cfg.ablation == "rank_only":
        w["iqa"].update(score=0.0, rank=w["iqa"]["rank"] if w["iqa"]["rank"] > 0 else w["iaa"]["rank"])
        w["iaa"].update(score=0.0)
    elif cfg.ablation == "pointwise_iaa":
        w["iaa"].update(rank=0.0)
    return w


class RewardStats:
    """Per-task accumulator fed by the callables of `make_reward_funcs` (per process; thread-safe via a lock).

    Stores the WEIGHTED values each callable returned to trl (so reward_total = their sum = what GRPO optimizes),
    plus the completion word counts and strict-parse success (fed by the first callable trl calls).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            self.last_gather: dict[str, list[str]] = {}

    def add(self, name: str, tasks: Sequence[str], values: Sequence[float]) -> None:
        """Record one callable's values (name = a registered reward, "words" or "parsed") aligned with tasks."""
        with self._lock:
            for t, v in zip(tasks, values):
                self._values[t][name].append(float(v))

    def note_gather(self, local_ids: Sequence[str], global_ids: Sequence[str], global_tasks: Sequence[str]) -> None:
        """Remember the last rank call's local and gathered sample_ids (for logs and multi-process tests)."""
        with self._lock:
            self.last_gather = {
                "local": list(local_ids),
                "global": list(global_ids),
                "global_iaa": [s for s, t in zip(global_ids, global_tasks) if t == "iaa"],
            }

    def summary(self) -> dict[str, dict[str, float]]:
        """{task: {n, reward_<name> for every registered reward, reward_total, words, parse_rate}} (means since
        reset)."""

        def mean(x: list[float]) -> float:
            return float(np.mean(x)) if x else 0.0

        out = {}
        with self._lock:
            for t in TASKS:
                vals = self._values.get(t)
                if not vals:
                    continue
                comp = {f"reward_{k}": mean(vals.get(k, [])) for k in REWARDS}
                n = max(len(vals.get(k, [])) for k in (*REWARDS, "words"))
                out[t] = {
                    "n": n,
                    **comp,
                    "reward_total": sum(comp.values()),
                    "words": mean(vals.get("words", [])),
                    "parse_rate": mean(vals.get("parsed", [])),
                }
        return out


# --------------------------------------------------------------------------------------------- factory
def make_reward_funcs(cfg: GrpoConfig, gather: Optional[Gather] = None, stats: Optional[RewardStats] = None) -> list:
    """One trl reward callable per registered reward, in `trl_order()` ([score, format, rank] by default), named
    after it and returning weight[task][name] × reward (give trl `trl_reward_weights()`).

    Weights per task and ablation: see `effective_weights`. A reward whose weight is 0 for every task of a call
    returns zeros without computing. A collective reward ("rank") all-gathers across processes on every call
    whenever some task has weight > 0 for it (the same config on every process: all gather or none does). Then
    an error in an earlier callable is held (that call returns zeros) and sent with the collective's gather of the
    same step, so that every process raises it there (`gather_guarded`) instead of the others waiting forever.
    """
    weights = effective_weights(cfg)
    active = {name: tuple(t for t in TASKS if weights[t][name] > 0) for name in REWARDS}
    order = trl_order()
    holds = any(r.collective and active[r.name] for r in order)
    held: list[str] = []  # this process's errors of the step, sent with the collective gather

    def _weighted(name: str, tasks: list[str], raw: list[float]) -> list[float]:
        out = [weights[t][name] * r for t, r in zip(tasks, raw)]
        if stats is not None:
            stats.add(name, tasks, out)
        return out

    def _callable(r: Reward, first: bool) -> Callable[..., list[float]]:
        settings = {"cfg": getattr(cfg, r.settings)} if r.settings else {}

        def local(completions, task, kw) -> list[float]:
            tasks = _check_tasks(_column("task", task, len(completions)))
            if first and stats is not None:
                texts = [completion_text(c) for c in completions]
                stats.add("words", tasks, [count_words(x) for x in texts])
                stats.add("parsed", tasks, format_reward(texts))
            if not any(weights[t][r.name] > 0 for t in tasks):
                return _weighted(r.name, tasks, [0.0] * len(tasks))
            return _weighted(r.name, tasks, r.fn(completions=completions, task=tasks, **settings, **kw))

        def collective(completions, task, **kw):
            errors, held[:] = list(held), []
            if not active[r.name]:
                return local(completions, task, kw)
            raw = r.fn(
                completions=completions,
                task=task,
                **settings,
                gather=gather,
                tasks=active[r.name],
                stats=stats,
                errors=errors,
                **kw,
            )  # checks this process's columns inside the gather's guard
            return _weighted(r.name, list(task), raw)

        def pointwise(completions, task, **kw):
            if not holds:
                return local(completions, task, kw)
            try:
                return local(completions, task, kw)
            except Exception as e:  # noqa: BLE001 - raised on every process by the collective gather
                held.append(f"reward {r.name!r}: {_describe(e)}")
                return [0.0] * len(completions)

        f = collective if r.collective else pointwise
        f.__name__ = f.__qualname__ = r.name  # trl logs the reward under this name
        return f

    return [_callable(r, i == 0) for i, r in enumerate(order)]


__all__ = [
    "completion_text",
    "gaussian_score",
    "passes_length_gate",
    "score_reward",
    "format_reward",
    "rank_reward",
    "Reward",
    "REWARDS",
    "register_reward",
    "trl_order",
    "trl_reward_weights",
    "check_weights",
    "effective_weights",
    "RewardStats",
    "make_reward_funcs",
    "gather_guarded",
    "CollectiveError",
]
