"""`tatar` command line: plan, run, summary, inspect, score.

tatar plan configs/paper.yaml        validate on CPU (no weights loaded); stages, inputs, keys, launch commands
tatar run configs/demo.yaml [--stage sft] [--set sft.learning_rate=1e-4]   run without Prefect (debugging)
tatar summary configs/demo.yaml      benchmark table + where every stage's files are
tatar verify configs/demo.yaml       check every finished stage's files against the sha256 in its manifest
tatar runs [runs]                    every run: each stage's key, status, time and headline numbers, newest first
tatar inspect PATH.parquet           schema, rows by task, rationale lengths, rejection reasons, samples
tatar score PATH... --task iqa|iaa --model DIR [--out results.csv]
tatar probes plan|run|report configs/probes.yaml [--set seeds=[0]] [--parallel N]   the paper's probes (docs/probes.md)
"""

from __future__ import annotations

import argparse
import sys

import yaml

from data_contracts import ConfigError, SchemaError
from data_contracts.config import STAGES, PipelineConfig, load_config


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ConfigError(f"--set expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def _config(args) -> PipelineConfig:
    return load_config(args.config, _overrides(args.set))


def cmd_plan(args) -> int:
    from tatar_core.pipeline.plan import format_plan

    text, missing = format_plan(_config(args), args.config)
    print(text)
    return 1 if (missing and args.strict) else 0


def cmd_run(args) -> int:
    from tatar_core.pipeline.runner import Pipeline
    from tatar_core.progress import TerminalReporter

    reporter = TerminalReporter()  # a bar per stage on a terminal, plain progress lines otherwise
    pipe = Pipeline(_config(args), log=reporter.log, progress=reporter.progress)
    stages = [args.stage] if args.stage else list(STAGES)
    for r in pipe.run_all(stages):
        print(f"{r.stage:<11} {'cached' if r.cached else 'ran   '} {r.dir}")
    return 0


def cmd_summary(args) -> int:
    from tatar_core.pipeline.plan import format_summary

    print(format_summary(_config(args), ui_url=args.ui))
    return 0


def cmd_verify(args) -> int:
    """Exit 0 when every finished stage matches its manifest, 1 when one did not (it is then moved aside)."""
    from tatar_core.pipeline.runner import Pipeline

    pipe = Pipeline(_config(args))
    bad = 0
    for stage in STAGES:
        verdict, detail = pipe.verify(stage)
        bad += verdict == "mismatch"
        print(f"{stage:<11} {verdict}{': ' + detail if detail else ''}")
    if bad:
        print(f"{bad} stage(s) did not match their manifest; the next run rebuilds them (old parts kept in *.stale-*)")
    return 1 if bad else 0


def cmd_runs(args) -> int:
    from pathlib import Path

    from tatar_core.pipeline.runs import format_runs

    print(format_runs(Path(args.root)))
    return 0


def cmd_probes(args) -> int:
    """plan: the grid's cost; run: every distinct stage run (in this process, or --parallel N child processes), then
    the report; report: the report of the cells finished so far."""
    from data_contracts.config.probes import load_probes
    from tatar_core.probes.grid import build_grid, plan_text
    from tatar_core.probes.report import write_probes_report
    from tatar_core.probes.run import InProcess, ProbesFailed, Subprocesses, run_probes

    grid = build_grid(load_probes(args.config, _overrides(args.set)))
    if args.action == "plan":
        print(plan_text(grid, args.config))
        return 0
    if args.action == "report":
        print(f"Report: {write_probes_report(grid)}")
        return 0
    print(plan_text(grid, args.config), flush=True)
    parallel = args.parallel or 1
    execute = InProcess(grid) if parallel == 1 else Subprocesses(grid, log=lambda m: print(m, flush=True))
    try:
        path = run_probes(grid, execute, log=lambda m: print(m, flush=True), parallel=parallel)
    except ProbesFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Report: {path}\n        {path.with_suffix('.md')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "inspect":
        from tatar_core.cli.inspect_parquet import main as inspect_main

        return _guard(lambda: inspect_main(argv[1:]))
    if argv and argv[0] == "score":
        from tatar_core.cli.score import main as score_main

        return _guard(lambda: score_main(argv[1:]))

    ap = argparse.ArgumentParser(
        prog="tatar", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn, helptext in (
        ("plan", cmd_plan, "validate a config and print the plan"),
        ("run", cmd_run, "run the pipeline in this process (no Prefect)"),
        ("summary", cmd_summary, "print results and file locations of a run"),
        ("verify", cmd_verify, "check finished stages' files against their manifests' sha256"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("config", help="a config YAML, e.g. configs/demo.yaml")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (dotted key)")
        p.set_defaults(fn=fn)
        if name == "plan":
            p.add_argument("--strict", action="store_true", help="exit 1 when a path the config names is missing")
        if name == "run":
            p.add_argument("--stage", choices=STAGES, help="run only this stage (its inputs must be finished)")
        if name == "summary":
            p.add_argument("--ui", default=None, help="Prefect UI address to print")
    p = sub.add_parser(
        "probes", help="the paper's controlled probes: plan / run / report a grid (configs/probes.yaml)"
    )
    p.add_argument("action", choices=("plan", "run", "report"))
    p.add_argument("config", nargs="?", default="configs/probes.yaml", help="a probes YAML (default: %(default)s)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a probes-config value (dotted key), e.g. seeds=[0] or scale.sft.max_steps=100",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="stage runs at once, each in a child process (default 1: in this process)",
    )
    p.set_defaults(fn=cmd_probes)
    p = sub.add_parser("runs", help="list the runs under a folder: stages, keys, status, time, headline numbers")
    p.add_argument("root", nargs="?", default="runs", help="the folder that holds the runs (default: runs)")
    p.set_defaults(fn=cmd_runs)
    sub.add_parser("inspect", help="inspect a Parquet dataset (tatar inspect PATH.parquet)")
    sub.add_parser("score", help="score images (tatar score PATH... --task iqa|iaa --model DIR)")
    args = ap.parse_args(argv)
    return _guard(lambda: args.fn(args))


def _guard(fn) -> int:
    """Known user errors print one clear message (no traceback) and exit 2."""
    from tatar_core.pipeline.runner import StageIncomplete, StageLocked, StageNotReady
    from tatar_core.samples.specs import DatasetError

    try:
        return int(fn() or 0)
    except (
        ConfigError,
        SchemaError,
        DatasetError,
        StageNotReady,
        StageIncomplete,
        StageLocked,
        FileNotFoundError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
