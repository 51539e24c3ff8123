#!/usr/bin/env python
"""Scoring speed: our `Scorer` vs a plain loop like the reference evaluation, on the same demo images.

    .venv/bin/python scripts/bench_scorer.py --model runs/demo/<grpo or sft stage>/model [--n 64] [--batch-size 32]

Builds the demo set (tatar_core.demo_data.build_demo_samples) in a temporary folder, takes a fixed subset of
`--n` images of its test split (IQA and IAA, each scored with its own task; no test image's rationale is in the
checkpoint's draft corpus, which holds training targets) and scores them four ways:

- ours: `Scorer(model, batch_size=B, draft_tokens=D)`: images sorted by size, left padding, greedy, each
  sequence stops at </answer>, the batch stops when all have; speculative verification of D drafted tokens per
  pass (drafts from the checkpoint's `draft_corpus.jsonl` and the completions so far);
- ours without drafts: the same with draft_tokens=0 (one token per pass);
- HF `generate`, fair: in input order, at OUR batch size, greedy, with the same stop ids as ours (`</answer>` as an
  eos id, or `stop_strings=["</answer>"]` where the tokenizer splits it): the same two knobs, set alike;
- reference-style: HF `generate` in input order, batch 4, greedy, max_new_tokens 256, no stop at </answer>
  (eos only), as the reference evaluation runs it.
All four use the same parser.

Prints images/s for each and the speed-up of ours over fair `generate` first (what our decoding itself adds:
speculative verification, the shared prompt prefix, finished rows leaving the batch), then over the reference-style
loop (which also counts batch size and stopping), and how often the completions / parsed scores agree. Model load
and one warm-up batch are excluded from every timing; image decoding is included in all. They run `--repeat` times
alternately (other processes share the CPU); the fastest round of each counts.
--model defaults to $TATAR_MODEL. Any trained checkpoint folder works (the demo pipeline's SFT/GRPO model; the
test-suite `sft_checkpoint` recipe in tests/conftest.py gives a quick one).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reference_loop(
    model, processor, paths: list[str], tasks: list[str], batch: int = 4, max_new_tokens: int = 256, stops=None
):
    """The reference evaluation's loop: input order, fixed batch, greedy, eos-only stopping; with `stops` (our
    `StopTokens`) every row also stops at `</answer>` like ours (then cut after it, as ours is)."""
    from tatar_core.images import load_rgb
    from tatar_core.method.prompts import ANSWER_CLOSE
    from tatar_core.models.loading import generate

    processor.tokenizer.padding_side = "left"
    kw = {}
    if stops is not None:
        kw = dict(eos_token_id=sorted(stops.stop_ids), pad_token_id=stops.pad_id)
        if stops.stop_seqs:
            kw.update(stop_strings=[ANSWER_CLOSE], tokenizer=processor.tokenizer)
    out = []
    for i in range(0, len(paths), batch):
        out += generate(
            model,
            processor,
            [load_rgb(p) for p in paths[i : i + batch]],
            tasks[i : i + batch],
            max_new_tokens=max_new_tokens,
            **kw,
        )
    if stops is not None:
        out = [t[: t.index(ANSWER_CLOSE) + len(ANSWER_CLOSE)] if ANSWER_CLOSE in t else t for t in out]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("TATAR_MODEL"), help="checkpoint folder (default $TATAR_MODEL)")
    ap.add_argument("--n", type=int, default=64, help="number of demo images")
    ap.add_argument("--batch-size", type=int, default=64, help="our Scorer's batch size")
    ap.add_argument("--draft-tokens", type=int, default=6, help="our Scorer's draft tokens per pass")
    ap.add_argument("--ref-batch", type=int, default=4, help="the reference loop's batch size")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds (alternating); the fastest counts")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if not args.model or not (Path(args.model) / "config.json").is_file():
        ap.error(f"--model must be a model folder with config.json (got {args.model!r})")

    import torch

    from data_contracts.config.samples import DemoDataConfig
    from tatar_core.demo.data import build_demo_samples
    from tatar_core.method.parsing import parse_answer
    from tatar_core.method.scales import clamp_100
    from tatar_core.models.draft_corpus import read_corpus
    from tatar_core.models.loading import load_model_and_processor
    from tatar_core.samples.readers import select_subset
    from tatar_core.scoring.scorer import Scorer

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_scorer_") as tmp:
        samples = [s for s in build_demo_samples(DemoDataConfig(), Path(tmp)) if s.split == "test"]
        samples = [samples[i] for i in select_subset([s.sample_id for s in samples], args.n)]
        by_task = {t: [s for s in samples if s.task == t] for t in ("iqa", "iaa")}
        print(
            f"{len(samples)} demo images: {len(by_task['iqa'])} iqa, {len(by_task['iaa'])} iaa; "
            f"torch threads {torch.get_num_threads()}; model {args.model}"
        )

        scorer = Scorer(
            args.model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, draft_tokens=args.draft_tokens
        )
        plain = Scorer(args.model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, draft_tokens=0)
        model, processor = load_model_and_processor(args.model)
        model.eval()
        corpus = read_corpus(Path(args.model))
        print(f"draft corpus: {', '.join(f'{len(v)} {k}' for k, v in sorted(corpus.items())) or 'none'}")
        for sc in (scorer, plain):  # warm-up
            sc.score([samples[0].image_path], samples[0].task)
        reference_loop(model, processor, [samples[0].image_path], [samples[0].task], 1, args.max_new_tokens)

        def run_ours(sc):
            out = {}
            for task, ss in by_task.items():  # each call starts from the corpus alone (nothing kept between calls)
                for s, r in zip(ss, sc.score([s.image_path for s in ss], task)):
                    out[s.sample_id] = r
            return out

        def run_ref(batch, stops=None):
            out = {}
            for task, ss in by_task.items():  # one benchmark (task) at a time, like the reference evaluation
                texts = reference_loop(
                    model, processor, [s.image_path for s in ss], [task] * len(ss), batch, args.max_new_tokens, stops
                )
                out.update({s.sample_id: t for s, t in zip(ss, texts)})
            return out

        reference_loop(
            model, processor, [samples[0].image_path], [samples[0].task], 1, args.max_new_tokens, scorer.stops
        )
        times_ours, times_plain, times_fair, times_ref = [], [], [], []
        for _ in range(args.repeat):  # alternate so that load from other processes hits all alike
            t0 = time.perf_counter()
            ours = run_ours(scorer)
            times_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours_plain = run_ours(plain)
            times_plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fair_text = run_ref(args.batch_size, scorer.stops)
            times_fair.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref_text = run_ref(args.ref_batch)
            times_ref.append(time.perf_counter() - t0)
        texts = [ref_text[s.sample_id] for s in samples]
        t_ours, t_plain, t_fair, t_ref = min(times_ours), min(times_plain), min(times_fair), min(times_ref)

    ref_scores = [parse_answer(t, lenient=True).score for t in texts]
    agree = sum(
        1
        for s, r in zip(samples, ref_scores)
        if (r is None and ours[s.sample_id].score is None)
        or (
            r is not None
            and ours[s.sample_id].score is not None
            and abs(clamp_100(r) - ours[s.sample_id].score) < 1e-6
        )
    )
    n = len(samples)
    same_plain = sum(ours[k].completion == ours_plain[k].completion for k in ours)
    same_fair = sum(ours[k].completion == fair_text[k] for k in ours)
    words_ours = sum(r.n_words for r in ours.values()) / n
    words_ref = sum(len(t.split()) for t in texts) / n
    print(
        f"ours      (batch {args.batch_size:>2}, stop at </answer>, {args.draft_tokens} draft tokens): "
        f"{n / t_ours:8.2f} img/s  ({t_ours:.2f} s, {words_ours:.1f} words/completion, "
        f"parsed {sum(r.score is not None for r in ours.values())}/{n})"
    )
    print(
        f"ours      (batch {args.batch_size:>2}, stop at </answer>, no drafts)     : {n / t_plain:8.2f} img/s  "
        f"({t_plain:.2f} s; same completions as with drafts on {same_plain}/{n})"
    )
    print(
        f"generate  (batch {args.batch_size:>2}, stop at </answer>, HF generate)   : {n / t_fair:8.2f} img/s  "
        f"({t_fair:.2f} s; same completions as ours {same_fair}/{n})"
    )
    print(
        f"reference (batch {args.ref_batch:>2}, eos only)                         : {n / t_ref:8.2f} img/s  "
        f"({t_ref:.2f} s, {words_ref:.1f} words/completion, parsed {sum(s is not None for s in ref_scores)}/{n})"
    )
    print(
        f"fair speed-up over HF generate at the same batch and stop ids: {t_fair / t_ours:.2f}x; "
        f"without drafts {t_fair / t_plain:.2f}x"
    )
    print(
        f"speed-up over the reference-style loop: {t_ref / t_ours:.2f}x; without drafts {t_ref / t_plain:.2f}x; "
        f"same parsed score as the reference on {agree}/{n} images"
    )
    print(
        "all rounds (s): ours "
        + " ".join(f"{t:.2f}" for t in times_ours)
        + " | no drafts "
        + " ".join(f"{t:.2f}" for t in times_plain)
        + " | generate "
        + " ".join(f"{t:.2f}" for t in times_fair)
        + " | reference "
        + " ".join(f"{t:.2f}" for t in times_ref)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
