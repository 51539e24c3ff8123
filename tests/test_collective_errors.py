"""One process fails, every process raises the same error at the next collective (no process waits forever):
the rank reward's gather and the GRPO log callback's gather carry an error flag with each process's data."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from data_contracts.config.model import ModelConfig
from data_contracts.config.training import GrpoConfig, LaunchConfig
from tatar_core.method.rewards import CollectiveError, gather_guarded, make_reward_funcs
from tatar_core.training import launch


class ThreadGather:
    """A real all-gather of python lists between threads; a process that never arrives breaks it after 10 s."""

    def __init__(self, world: int):
        self.slots, self.barrier, self.rank = [None] * world, threading.Barrier(world, timeout=10), threading.local()

    def __call__(self, items: list) -> list:
        self.slots[self.rank.value] = list(items)
        self.barrier.wait()
        out = [x for slot in self.slots for x in slot]
        self.barrier.wait()
        return out


def _in_threads(fn, world=2):
    results = [None] * world

    def worker(r):
        try:
            results[r] = fn(r)
        except Exception as e:  # noqa: BLE001 - compared below
            results[r] = e

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def _step(r: int, bad: bool):
    tasks = ["iqa", "iaa", "iaa", "iqa"]
    if bad:
        tasks[-1] = "bogus"  # a real validation failure of the task column, on this process only
    comps = [f"<think>x</think><answer>{40 + 10 * i + r}</answer>" for i in range(4)]
    return dict(
        completions=comps,
        task=tasks,
        score=[30.0, 50.0, 70.0, 90.0],
        sample_id=[f"{r}-{i}" for i in range(4)],
        prompts=[None] * 4,
        completion_ids=[[1]] * 4,
        trainer_state=None,
    )


def test_a_reward_error_on_one_process_is_raised_by_every_process_at_the_rank_gather():
    gather = ThreadGather(2)

    def proc(r):
        gather.rank.value = r
        funcs = {f.__name__: f for f in make_reward_funcs(GrpoConfig(), gather=gather)}
        cols = _step(r, bad=(r == 1))
        t0 = time.time()
        for name in ("score", "format", "rank"):  # trl's order
            funcs[name](**cols)
        return time.time() - t0

    got = _in_threads(proc)
    assert all(isinstance(e, CollectiveError) for e in got), got  # neither process is left waiting
    for r, e in enumerate(got):
        msg = str(e)
        assert (
            "rank reward failed on 1 of 2 process(es): process 1: reward 'score': ValueError: row 3: task must be"
            in msg
            and "'bogus'" in msg
            and f"this is process {r}" in msg
        )


def test_log_callback_gather_raises_everywhere():
    gather = ThreadGather(2)

    def proc(r):
        gather.rank.value = r

        def summary():
            if r == 0:
                raise KeyError("reward stats lost")
            return {"iqa": {"n": 1}}

        return gather_guarded(gather, "GRPO log callback", summary)

    got = _in_threads(proc)
    assert all(isinstance(e, CollectiveError) and "process 0: KeyError: 'reward stats lost'" in str(e) for e in got), (
        got
    )


FAULT_ENTRY = Path(__file__).parent / "faults" / "bad_task_entry.py"


@pytest.mark.slow
def test_two_processes_one_fails_in_the_reward_both_exit_with_its_error(
    sft_checkpoint, synthetic_samples, tmp_path, monkeypatch
):
    real = launch.launch_command

    def with_fault(*a, **kw):  # the same command, running the test's fault-injecting entry instead
        cmd = real(*a, **kw)
        i = cmd.index("tatar_core.training.entry")
        return cmd[: i - 1] + [str(FAULT_ENTRY)] + cmd[i + 1 :]

    monkeypatch.setattr(launch, "launch_command", with_fault)
    marker = tmp_path / "fault_at"
    monkeypatch.setenv("TATAR_FAULT_MARKER", str(marker))
    cfg = GrpoConfig(
        max_steps=2,
        num_generations=4,
        prompts_per_step=4,
        min_iaa_images_per_step=2,
        max_completion_length=32,
        seed=0,
        trainer_args={"save_steps": 100},
        launch=LaunchConfig(mode="accelerate", num_processes=2, cpu=True),
    )
    from tatar_core.training.grpo import run_grpo

    with pytest.raises(launch.LaunchError) as info:
        run_grpo(synthetic_samples, sft_checkpoint, cfg, ModelConfig(), tmp_path)
    ended = time.time()
    assert ended - float(marker.read_text()) < 20  # the job ended seconds after the fault, not at a timeout
    msg = str(info.value)
    said = msg.split("last output:")[0]  # the job's own exception lines, first in the stage's error
    assert (
        "CollectiveError: rank reward failed on 1 of 2 process(es): process 1: reward 'score': ValueError: row" in said
    )
    assert "'bogus'" in said
    for r in (0, 1):  # both processes raised it (process 0 no longer dies of "connection closed by peer")
        assert f"this is process {r})" in said
    assert "Connection closed by peer" not in said
    assert not (tmp_path / "model").exists()
