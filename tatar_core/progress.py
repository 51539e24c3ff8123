"""Progress of long work: ETA, progress lines, a terminal reporter, and the event lines of launched jobs.

A stage reports through its `StageContext`: `ctx.log(line)` and `ctx.progress(stage, done, total, unit=..., **info)`
(`info`: a few headline numbers, e.g. loss=0.52). Who listens decides what is shown: the Prefect flows keep a progress
artifact and log to the flow run (flows/artifacts.py); `tatar run` uses `TerminalReporter` (a tqdm bar per stage on a
terminal, a plain line every `every_s` seconds otherwise).

    ETA = (total − done) / rate,   rate = (done − done₀) / (t − t₀)   (units per second since the first report,
                                                                       so a resumed run is not credited with old work)

A launched job (`accelerate launch`, another interpreter) has no context: its main process prints *event lines*
`EVENT_PREFIX + JSON` on stdout (`EventEmitter`), and the parent, which reads the job's output line by line, hands
them to its own log/progress (`dispatch_event`). Nothing here imports Prefect.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, TextIO

if TYPE_CHECKING:  # the scorer imports this module on machines without pydantic (scripts/gpu_check.py)
    from data_contracts.manifest import ProgressFn

EVENT_PREFIX = "@tatar-event "
LINE_EVERY_S = 10.0  # a plain progress line at least this often (and at the end)

__all__ = [
    "Meter",
    "format_duration",
    "progress_line",
    "ProgressLines",
    "TerminalReporter",
    "PlainBar",
    "progress_bar",
    "EventEmitter",
    "dispatch_event",
    "parse_event",
    "EVENT_PREFIX",
]


def format_duration(seconds: Optional[float]) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`; `?` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class Meter:
    """Rate and ETA of one counter (see the module docstring for the formula)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.t0: Optional[float] = None
        self.done0 = 0

    def eta(self, done: int, total: int) -> Optional[float]:
        """Seconds left, or None before any measurable progress."""
        now = self.clock()
        if self.t0 is None:
            self.t0, self.done0 = now, done
            return None
        rate = (done - self.done0) / (now - self.t0) if now > self.t0 else 0.0
        return (total - done) / rate if rate > 0 else None

    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else self.clock() - self.t0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def progress_line(stage: str, done: int, total: int, unit: str = "", eta: Optional[float] = None, **info) -> str:
    """`[sft] 120/300 steps (40%) · ETA 45 s · loss 0.52` (info items as `key value`)."""
    pct = 100.0 * done / total if total else 100.0
    parts = [f"[{stage}] {done}/{total}{' ' + unit if unit else ''} ({pct:.0f}%)"]
    if done < total and eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    parts += [f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in info.items() if v is not None]
    return " · ".join(parts)


class PlainBar:
    """tqdm's `update`/`close` for output that is not a terminal: a line at most every `every_s` s, and at the end."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "",
        initial: int = 0,
        stream: TextIO | None = None,
        every_s: float = LINE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream, self.every_s, self.clock = stream, every_s, clock
        self.meter = Meter(clock)
        self.meter.eta(initial, total)
        self.last = clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        eta = self.meter.eta(self.n, self.total)
        if self.n >= self.total or self.clock() - self.last >= self.every_s:
            self.last = self.clock()
            print(
                progress_line(self.desc, self.n, self.total, self.unit, eta),
                file=self.stream or sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        pass


def progress_bar(
    total: int, desc: str, unit: str = "", initial: int = 0, disable: bool = False, stream: TextIO | None = None
):
    """A tqdm bar when `stream` (default stderr) is a terminal, else a `PlainBar`; None when disabled."""
    if disable:
        return None
    stream = stream or sys.stderr
    if stream.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit or "it", initial=initial, file=stream, dynamic_ncols=True)
    return PlainBar(total, desc, unit, initial, stream)


class ProgressLines:
    """The plain-text side of progress, shared by the terminal and the Prefect reporters.

    `progress(...)` emits `progress_line` when `every_s` seconds passed since the last line of any kind (`saw_line()`
    notes one), and when a stage finishes. `tick()` (a daemon thread calls it every second after `start()`) emits the
    last line of an unfinished stage again when `every_s` passed without any line and `every_s / 2` without any
    update, its ETA counted down by the time since, and `· 25 s since the last step`: a step slower than `every_s`
    still shows that the work goes on.
    """

    def __init__(
        self, emit: Callable[[str], None], every_s: float = LINE_EVERY_S, clock: Callable[[], float] = time.monotonic
    ):
        self.emit, self.every_s, self.clock = emit, every_s, clock
        self._meters: dict[str, Meter] = {}
        self._waiting: Optional[dict] = None  # the last progress of an unfinished stage
        self._last_line = clock()
        self._lock = threading.RLock()
        self._stop = threading.Event()

    def saw_line(self) -> None:
        with self._lock:
            self._last_line = self.clock()

    def progress(self, stage: str, done: int, total: int, unit: str = "", **info) -> str:
        """Record the progress (emit its line when due); return the line."""
        with self._lock:
            now = self.clock()
            eta = self._meters.setdefault(stage, Meter(self.clock)).eta(done, total)
            line = progress_line(stage, done, total, unit, eta, **info)
            self._waiting = (
                None
                if done >= total
                else dict(stage=stage, done=done, total=total, unit=unit, eta=eta, info=info, at=now)
            )
            if done >= total or now - self._last_line >= self.every_s:
                self._last_line = now
                self.emit(line)
            return line

    def tick(self) -> Optional[str]:
        with self._lock:
            w, now = self._waiting, self.clock()
            if w is None or now - self._last_line < self.every_s or now - w["at"] < self.every_s / 2:
                return None  # a line is not due, or the next update is close (it prints its own line)
            since = now - w["at"]
            eta = max(0.0, w["eta"] - since) if w["eta"] is not None else None
            what = w["unit"][:-1] if w["unit"].endswith("s") else (w["unit"] or "update")
            line = (
                progress_line(w["stage"], w["done"], w["total"], w["unit"], eta, **w["info"])
                + f" · {format_duration(since)} since the last {what}"
            )
            self._last_line = now
            self.emit(line)
            return line

    def start(self, poll_s: float = 1.0) -> "ProgressLines":
        def run():
            while not self._stop.wait(poll_s):
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - a reporting hiccup must never stop the work
                    pass

        threading.Thread(target=run, name="progress-lines", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


class TerminalReporter:
    """`log` and `progress` for a terminal (`tatar run`): a tqdm bar per stage on a tty, else `ProgressLines`
    (a line every `every_s` seconds of work, also while one step takes longer; `tick=False`: no thread)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every_s: float = LINE_EVERY_S,
        tty: Optional[bool] = None,
        clock: Callable[[], float] = time.monotonic,
        tick: bool = True,
    ):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.lines = ProgressLines(lambda line: print(line, file=self.stream, flush=True), every_s, clock)
        if tick and not self.tty:
            self.lines.start()

    def log(self, line: str) -> None:
        with self._lock:
            self.lines.saw_line()
            if self.tty and self._bars:
                from tqdm import tqdm

                tqdm.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)

    def progress(self, stage: str, done: int, total: int, unit: str = "", **info) -> None:
        with self._lock:
            if self.tty:
                self._bar(stage, done, total, unit, info)
            else:
                self.lines.progress(stage, done, total, unit, **info)

    def _bar(self, stage: str, done: int, total: int, unit: str, info: dict) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(
                total=total, desc=stage, unit=unit or "it", initial=done, file=self.stream, dynamic_ncols=True
            )
        bar.total = total
        bar.n = done
        bar.set_postfix({k: _fmt(v) for k, v in info.items() if v is not None}, refresh=False)
        bar.refresh()
        if done >= total:
            bar.close()
            del self._bars[stage]


# ---------------------------------------------------------------- launched jobs
class EventEmitter:
    """`log` / `progress` of a launched job's main process: event lines on `stream` (stdout) for the parent.

    Progress events are sent at most every `every_s` seconds (and always when done == total).
    """

    def __init__(
        self, stream: TextIO | None = None, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ):
        self.stream, self.every_s, self.clock = stream, every_s, clock
        self._last = -math.inf

    def _emit(self, event: dict) -> None:
        print(EVENT_PREFIX + json.dumps(event, default=float), file=self.stream or sys.stdout, flush=True)

    def log(self, line: str) -> None:
        self._emit({"log": line})

    def progress(self, stage: str, done: int, total: int, **info) -> None:
        now = self.clock()
        if done >= total or now - self._last >= self.every_s:
            self._last = now
            self._emit({"progress": {"stage": stage, "done": done, "total": total, **info}})


def parse_event(line: str) -> Optional[dict]:
    """The event of an event line, or None for any other line (also a malformed one)."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def dispatch_event(line: str, log: Callable[[str], None], progress: Optional["ProgressFn"] = None) -> bool:
    """Hand an event line to `log` / `progress` (None: progress is dropped); False when the line is not an event
    (print it as it is)."""
    event = parse_event(line)
    if event is None:
        return False
    if "log" in event:
        log(str(event["log"]))
    if progress is not None and isinstance(event.get("progress"), dict):
        p = dict(event["progress"])
        progress(str(p.pop("stage")), int(p.pop("done")), int(p.pop("total")), **p)
    return True
