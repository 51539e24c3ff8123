"""Progress reporting without Prefect: ETA, progress lines, the terminal reporter's plain mode, the bar chooser,
and the event lines a launched job sends its parent."""

from __future__ import annotations

import io

from tatar_core.progress import (
    EventEmitter,
    Meter,
    PlainBar,
    ProgressLines,
    TerminalReporter,
    dispatch_event,
    format_duration,
    progress_bar,
    progress_line,
)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_eta_is_measured_from_the_first_report_so_resumed_work_does_not_count():
    clock = Clock()
    meter = Meter(clock)
    assert meter.eta(40, 100) is None  # resumed at 40: no rate yet
    clock.t = 10.0
    assert meter.eta(60, 100) == 20.0  # 20 done in 10 s -> 2/s -> 40 left = 20 s
    assert format_duration(20.0) == "20 s" and format_duration(185) == "3 min 05 s"
    assert format_duration(7620) == "2 h 07 min" and format_duration(None) == "?"
    line = progress_line("sft", 60, 100, "steps", 20.0, loss=0.52341)
    assert line == "[sft] 60/100 steps (60%) · ETA 20 s · loss 0.523"
    assert progress_line("sft", 100, 100, "steps", None) == "[sft] 100/100 steps (100%)"


def test_terminal_reporter_prints_a_line_every_ten_seconds_of_silence_and_at_the_end():
    clock, out = Clock(), io.StringIO()
    rep = TerminalReporter(stream=out, tty=False, clock=clock, tick=False)
    for step in range(0, 31):  # one step per second
        clock.t = float(step)
        if step == 15:
            rep.log("[sft] step 15/30 · loss 1.0")  # any line restarts the 10 s
        rep.progress("sft", step, 30, unit="steps")
    lines = out.getvalue().splitlines()
    assert lines == [
        "[sft] 10/30 steps (33%) · ETA 20 s",
        "[sft] step 15/30 · loss 1.0",
        "[sft] 25/30 steps (83%) · ETA 5 s",
        "[sft] 30/30 steps (100%)",
    ]


def test_a_step_slower_than_ten_seconds_still_gets_a_line_every_ten_seconds():
    clock, out = Clock(), []
    lines = ProgressLines(out.append, every_s=10.0, clock=clock)
    lines.progress("grpo", 0, 20, "steps")
    clock.t = 30.0
    lines.progress("grpo", 1, 20, "steps", iaa_reward=0.5)  # 30 s per step: ETA 9 min 30 s
    for t in (35.0, 40.0, 45.0, 52.0):
        clock.t = t
        lines.tick()
    lines.saw_line()  # e.g. the step's own log line
    clock.t = 61.0
    assert lines.tick() is None  # only 9 s since that line
    clock.t = 60.0 + 30.0
    lines.progress("grpo", 20, 20, "steps")
    clock.t = 200.0
    assert lines.tick() is None  # finished: nothing left to wait for
    assert out == [
        "[grpo] 1/20 steps (5%) · ETA 9 min 30 s · iaa reward 0.5",  # none at 0: 10 s had not passed
        "[grpo] 1/20 steps (5%) · ETA 9 min 20 s · iaa reward 0.5 · 10 s since the last step",
        "[grpo] 1/20 steps (5%) · ETA 9 min 08 s · iaa reward 0.5 · 22 s since the last step",
        "[grpo] 20/20 steps (100%)",
    ]


def test_plain_bar_off_a_terminal_and_tqdm_on_one():
    out = io.StringIO()
    assert isinstance(progress_bar(10, "score iqa", "images", stream=out), PlainBar)
    assert progress_bar(10, "x", disable=True) is None
    clock = Clock()
    bar = PlainBar(64, "score iqa", "images", stream=out, clock=clock)
    for i in range(8):
        clock.t = 3.0 * (i + 1)
        bar.update(8)
    assert out.getvalue().splitlines() == [
        "[score iqa] 32/64 images (50%) · ETA 12 s",
        "[score iqa] 64/64 images (100%)",
    ]

    class Tty(io.StringIO):
        def isatty(self):
            return True

    from tqdm import tqdm

    tty = Tty()
    bar = progress_bar(10, "score iqa", "images", stream=tty)
    assert isinstance(bar, tqdm)
    bar.update(10)
    bar.close()
    assert "10/10" in tty.getvalue() and "\r" in tty.getvalue()


def test_event_lines_carry_log_and_progress_to_the_parent():
    clock, out = Clock(), io.StringIO()
    child = EventEmitter(stream=out, every_s=1.0, clock=clock)
    child.log("[grpo] step 1/3 · kl 0.001")
    for step, t in ((1, 0.2), (2, 0.5), (3, 0.6)):  # the second is within 1 s of the first: not sent
        clock.t = t
        child.progress("grpo", step, 3, unit="steps", iaa_reward=0.5)
    sent = out.getvalue().splitlines()
    assert len(sent) == 3
    lines, progress = [], []
    for line in sent + ["an ordinary line of the job", "@tatar-event {not json"]:
        if not dispatch_event(line, lines.append, lambda *a, **kw: progress.append((a, kw))):
            lines.append("printed: " + line)
    assert lines == [
        "[grpo] step 1/3 · kl 0.001",
        "printed: an ordinary line of the job",
        "printed: @tatar-event {not json",
    ]
    assert progress == [
        (("grpo", 1, 3), {"unit": "steps", "iaa_reward": 0.5}),
        (("grpo", 3, 3), {"unit": "steps", "iaa_reward": 0.5}),
    ]


def test_no_tick_while_updates_come_often():
    clock, out = Clock(), []
    lines = ProgressLines(out.append, every_s=10.0, clock=clock)
    for step in range(0, 5):  # a step every 3 s; the ticker looks every second
        clock.t = 3.0 * step
        lines.progress("sft", step, 100, "steps")
        for dt in (1.0, 2.0):
            clock.t = 3.0 * step + dt
            assert lines.tick() is None  # at 10 s and 11 s a line is due, but the next update is close
    assert out == ["[sft] 4/100 steps (4%) · ETA 4 min 48 s"]  # printed by the update at 12 s
