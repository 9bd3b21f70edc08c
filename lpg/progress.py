"""Live progress of a sweep: steps done inside a compiled call, shown while it runs.

:func:`lpg.sweep.sweep` opens a :class:`Tracker` around its compiled calls (runs of the
sweep, and the steps a run takes when its loops declare them with :func:`expect` while
``fn`` is traced). The training loops report the steps they have done from inside the
compiled program with a host callback, about :data:`REPORTS_PER_LOOP` times a loop:
:func:`lpg.train` every few log points (:func:`report_at_point`), :func:`lpg.pretrain`
at its end (:func:`report_done`) and :func:`lpg.hitting.run_until` every few checks
(:func:`report_done`), with the unused rest of its budget ``max_steps`` when it ends
(:func:`report_rest`): a hitting-time run counts its whole budget. A report nobody
listens to (no sweep running) does nothing, and a report never changes a computed number.

Under ``jax.vmap`` one callback reports for the whole batch: each report is a
:func:`jax.custom_batching.custom_vmap` whose rule multiplies the count by the batch
size, instead of JAX's default of one callback per batch element (a batched
``run_until`` counts its finished runs until the last one finishes, as it computes
them). A report cannot tell which run it belongs to, so steps are counted over all runs
of the sweep (padding runs of a last, partial chunk included): that is what the bar and
the ETA need.

What is shown, on stderr:

* **on a terminal**, a bar redrawn in place at most ten times a second;
* **off a terminal** (batch jobs, ``nohup``, cluster logs), one plain line every
  ``LPG_PROGRESS_EVERY`` seconds (default 10; the first after that long, so a short
  sweep prints nothing) and a last one when a sweep that printed a line ends;

each with runs done / total, steps done / total, the time spent computing (compile time
is reported apart), the ETA, runs/s and reward queries/s once a chunk of runs is done.
``LPG_PROGRESS=0`` turns it off.

:data:`CALLBACKS` (read when a loop is traced) leaves the callbacks out of the compiled
program when ``False``: ``benchmarks/progress_overhead.py`` measures their cost that way.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import jax
import jax.numpy as jnp

CALLBACKS = True
"""Compile the step reports into the training loops (read at trace time)."""

REPORTS_PER_LOOP = 10
"""About how many times one loop of one run reports: often enough for a bar, rarely
enough to cost nothing. A report is a host callback, which costs a compiled program
tens of microseconds on an idle CPU and up to about 0.5 ms on a loaded one (the
callback's Python, and the program's data evicted from the caches), so a run should
take about 25 ms per report for the reports to cost under 2%
(``benchmarks/progress_overhead.py``)."""


def compiled_settings() -> tuple:
    """What decides the reports compiled into a loop when it is traced (a cache key)."""
    return CALLBACKS, REPORTS_PER_LOOP


ENV_SWITCH = "LPG_PROGRESS"
ENV_EVERY = "LPG_PROGRESS_EVERY"
DEFAULT_EVERY = 10.0
BAR_EVERY = 0.1  # the terminal bar's shortest redraw interval, seconds
BAR_WIDTH = 24


# ---------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------


def format_time(s: float) -> str:
    """Seconds as ``m:ss`` or ``h:mm:ss`` (``?`` when not finite)."""
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def format_log_count(log_value: float) -> str:
    """A count given by its natural log, readable: ``1.23e+06`` or ``10^443.6``."""
    if not math.isfinite(log_value):
        return "0" if log_value < 0 else "inf"
    if log_value < math.log(1e15):
        return f"{math.exp(log_value):.3g}"
    return f"10^{log_value / math.log(10):.1f}"


def format_count(n: int) -> str:
    """An exact count, short: ``9999``, ``12.3k``, ``4.5M``."""
    n = int(n)
    if n < 10_000:
        return str(n)
    for div, unit in ((10**3, "k"), (10**6, "M"), (10**9, "G"), (10**12, "T")):
        if n / div < 999.5 or unit == "T":
            return f"{n / div:.3g}{unit}"


# ---------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------


def interval() -> float:
    """Seconds between two lines off a terminal: ``LPG_PROGRESS_EVERY`` (default 10)."""
    raw = os.environ.get(ENV_EVERY, "").strip()
    if not raw:
        return DEFAULT_EVERY
    try:
        every = float(raw)
    except ValueError:
        every = float("nan")
    if not (math.isfinite(every) and every > 0):
        raise ValueError(f"{ENV_EVERY} must be a number of seconds > 0, got {raw!r}")
    return every


def enabled() -> bool:
    """``False`` when ``LPG_PROGRESS=0``."""
    return os.environ.get(ENV_SWITCH, "").strip() != "0"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------------


class Tracker:
    """Progress of one sweep: runs and steps done, rendered on ``stream``.

    ``mode``: ``"bar"`` (a terminal), ``"lines"`` (one line every ``every`` seconds) or
    ``"off"``; by default chosen from ``show`` (``None``: on unless ``LPG_PROGRESS=0``;
    ``False``: off; ``True``: on, and off a terminal the last line is printed even for a
    short sweep) and whether ``stream`` is a terminal. ``clock`` (seconds) can be a fake
    one: rendering happens in :meth:`poll`, called by a ticker thread while the tracker
    is open (``with tracker:``) and by tests directly. Thread-safe."""

    def __init__(self, desc: str = "", runs: int = 0, *, show: bool | None = None, mode: str | None = None,
                 every: float | None = None, stream=None, clock: Callable[[], float] = time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        if mode is None:
            on = enabled() and show is not False
            mode = ("bar" if _isatty(self.stream) else "lines") if on else "off"
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"mode must be one of 'bar', 'lines', 'off', got {mode!r}")
        self.mode, self.desc, self.runs = mode, desc, int(runs)
        self.every = (interval() if mode == "lines" else DEFAULT_EVERY) if every is None else float(every)
        self.clock = clock
        self.last_line = show is True  # off a terminal: print the last line even if none came before
        self._lock = threading.RLock()  # the state
        self._out = threading.Lock()  # the stream (taken before _lock, never inside it)
        self.t_open = clock()
        self.t0: float | None = None  # when computing began (None: still compiling)
        self.runs_done = self.runs_start = 0
        self.steps_total = 0  # 0: unknown
        self.steps_done = self.steps_start = 0
        self.log_queries = -math.inf
        self._slot = 0  # lines mode: index of the last interval a line was printed in
        self._lines = 0
        self._drawn = -math.inf  # bar mode: when the bar was last drawn
        self._shown = ""  # bar mode: the line under the cursor, not ended yet
        self._ticker: tuple[threading.Thread, threading.Event] | None = None
        self._prev: Tracker | None = None

    # -- what the sweep and the callbacks tell it --------------------------------

    def begin(self, *, steps_total: int = 0, steps_done: int = 0, runs_done: int = 0) -> None:
        """Computing starts (compilation is over); ``*_done``: resumed from checkpoints."""
        with self._lock:
            self.t0 = self.clock()
            self.steps_total, self.steps_done, self.steps_start = int(steps_total), int(steps_done), int(steps_done)
            self.runs_done = self.runs_start = int(runs_done)

    def add_steps(self, n: int) -> None:
        with self._lock:
            self.steps_done += int(n)

    def chunk_done(self, runs_done: int, log_queries: float = -math.inf, steps_done: int = 0) -> None:
        """A chunk is stored: ``runs_done`` in all, ``log_queries`` (natural log) the reward
        queries of the runs computed so far, ``steps_done`` the steps those runs have made
        (a floor: a loop that reports nothing, or a batch that cannot be counted, still
        ends at its total)."""
        with self._lock:
            self.runs_done = int(runs_done)
            self.log_queries = float(log_queries)
            self.steps_done = max(self.steps_done, int(steps_done))
        self.poll(force=self.mode == "bar")

    # -- what it shows -----------------------------------------------------------

    def status(self, now: float | None = None) -> str:
        """The progress text (without the description)."""
        with self._lock:
            now = self.clock() if now is None else now
            if self.t0 is None:
                return f"compiling… {format_time(now - self.t_open)}"
            elapsed = max(now - self.t0, 0.0)
            total = self.steps_total
            done = min(self.steps_done, total) if total else self.steps_done
            new_steps, new_runs = done - self.steps_start, self.runs_done - self.runs_start
            if self.runs_done >= self.runs:
                eta = 0.0
            elif total and new_steps >= 0.01 * (total - self.steps_start) > 0:  # 1% done: a rate to go by
                eta = elapsed * (total - done) / new_steps
            elif new_runs > 0:
                eta = elapsed * (self.runs - self.runs_done) / new_runs
            else:
                eta = float("nan")
            parts = [f"{self.runs_done}/{self.runs} runs"]
            if total:
                parts.append(f"{format_count(done)}/{format_count(total)} steps")
            elif done:
                parts.append(f"{format_count(done)} steps")
            parts += [f"{format_time(elapsed)} elapsed", f"ETA {format_time(eta)}"]
            if new_runs > 0 and elapsed > 0:
                parts.append(f"{new_runs / elapsed:.3g} runs/s")
            if math.isfinite(self.log_queries) and elapsed > 0:
                parts.append(f"{format_log_count(self.log_queries - math.log(elapsed))} queries/s")
            text = "  ".join(parts)
            if self.mode == "bar":
                frac = done / total if total else self.runs_done / max(self.runs, 1)
                full = int(BAR_WIDTH * min(max(frac, 0.0), 1.0))
                text = f"[{'#' * full}{'.' * (BAR_WIDTH - full)}] {100 * frac:3.0f}%  {text}"
            return text

    def _line(self, now: float) -> str:
        text = self.status(now)
        return f"{self.desc}: {text}" if self.desc else text

    def poll(self, force: bool = False) -> None:
        """Render if it is time to: the bar every ``BAR_EVERY`` s, a line once per ``every`` s."""
        with self._out:
            with self._lock:
                now = self.clock()
                if self.mode == "bar" and (force or now - self._drawn >= BAR_EVERY):
                    self._drawn = now
                    text = self._draw(self._line(now))
                    if not text:
                        return
                elif self.mode == "lines" and (force or int((now - self.t_open) // self.every) > self._slot):
                    self._slot = max(self._slot, int((now - self.t_open) // self.every))
                    self._lines += 1
                    text = self._line(now) + "\n"
                else:
                    return
            self._write(text)

    def note(self, text: str, end: str = "") -> None:
        """A message in place of the bar (on a terminal only), e.g. compile time."""
        if self.mode == "bar":
            with self._out:
                with self._lock:
                    text = self._draw(f"{self.desc}: {text}" if self.desc else text, end)
                self._write(text)

    def _draw(self, line: str, end: str = "") -> str:
        """The text that redraws the bar's line as ``line`` then ``end`` (called under the
        lock): nothing, or ``end`` alone, when that line is already shown."""
        if line == self._shown:
            text = end
        else:
            text = "\r" + line + " " * max(0, len(self._shown) - len(line)) + end
        self._shown = "" if end else line
        return text

    def _write(self, text: str) -> None:
        """Write ``text`` (under ``_out``, not the state lock: lines go out in the order
        they were made, and a blocked stream never holds up a step report)."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is not worth a failure
            pass

    # -- open / close ------------------------------------------------------------

    def __enter__(self) -> Tracker:
        global _CURRENT
        with _STATE:
            self._prev, _CURRENT = _CURRENT, self
        if self.mode != "off":
            stop = threading.Event()
            tick = BAR_EVERY if self.mode == "bar" else min(1.0, max(BAR_EVERY, self.every / 4))
            thread = threading.Thread(target=self._tick, args=(stop, tick), name="lpg-progress", daemon=True)
            thread.start()
            self._ticker = (thread, stop)
        return self

    def _tick(self, stop: threading.Event, tick: float) -> None:
        while not stop.wait(tick):
            self.poll()

    def __exit__(self, *exc) -> None:
        global _CURRENT
        with _STATE:
            if _CURRENT is self:
                _CURRENT = self._prev
        if self._ticker is not None:
            thread, stop = self._ticker
            stop.set()
            thread.join(timeout=5)
            self._ticker = None
        self.close(finished=exc[0] is None)

    def close(self, finished: bool = True) -> None:
        """The last render: the bar's final state and a newline; off a terminal, a last
        line if this sweep printed one (or ``show=True``)."""
        text = ""
        with self._out:
            with self._lock:
                if self.mode == "bar":
                    if finished and self.t0 is not None:
                        text = self._draw(self._line(self.clock()), end="\n")
                    elif self._shown:
                        text, self._shown = "\n", ""
                elif self.mode == "lines" and finished and self.t0 is not None and (self._lines or self.last_line):
                    self._lines += 1
                    text = self._line(self.clock()) + "\n"
            if text:
                self._write(text)


_CURRENT: Tracker | None = None
_STATE = threading.Lock()


def current() -> Tracker | None:
    """The tracker the step reports go to (``None`` outside a sweep)."""
    return _CURRENT


# ---------------------------------------------------------------------------------
# Steps a run will take (at trace time)
# ---------------------------------------------------------------------------------


class Plan:
    """Steps one run declares while it is traced (:func:`expect`)."""

    def __init__(self):
        self.steps = 0


_PLANS = threading.local()


@contextmanager
def planning():
    """Collect the :func:`expect` calls of a function being traced: ``with planning() as
    plan: fn(...)`` then ``plan.steps``."""
    stack = _PLANS.__dict__.setdefault("stack", [])
    plan = Plan()
    stack.append(plan)
    try:
        yield plan
    finally:
        stack.pop()


def expect(steps: int) -> None:
    """A loop of ``steps`` steps is part of the run being traced (a no-op outside
    :func:`planning`)."""
    stack = _PLANS.__dict__.get("stack")
    if stack:
        stack[-1].steps += int(steps)


# ---------------------------------------------------------------------------------
# The report inside a compiled program
# ---------------------------------------------------------------------------------


def _add_steps(n: int) -> None:
    """The host side of a report: ``n`` steps done."""
    tracker = _CURRENT
    if tracker is not None:
        tracker.add_steps(n)


def _plain(x):
    x = jax.lax.stop_gradient(jnp.asarray(x))
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _largest(x, batched: bool):
    return jnp.max(x, axis=0) if batched else x


# A report is a custom_vmap function: under vmap its rule reports once for the whole batch
# (the count times the batch size) instead of JAX's one callback per element, and unbatches
# the values that steer it by their largest value over the batch (a loop's point index,
# the same for a batch in lockstep; a count), so the conditionals around the callbacks stay
# conditionals. Each callback passes no array and its count is static: one that passes an
# array costs several times more (JAX copies each argument into a jax.Array on the host).


@functools.lru_cache(maxsize=None)
def _point_report(scale: int, n_points: int, steps_each: int, every: int):
    last = n_points % every  # points in a last, shorter stretch (0: none)

    @jax.custom_batching.custom_vmap
    def report(i, after, like):
        go = after >= 0
        index = jnp.where(go & ((i + 1) % every == 0), 1, 0)
        if last:
            index = jnp.where(go & (i == n_points - 1), 2, index)
        say = [lambda: None, lambda: jax.debug.callback(functools.partial(_add_steps, scale * every * steps_each)),
               lambda: jax.debug.callback(functools.partial(_add_steps, scale * last * steps_each))]
        jax.lax.switch(index, say[:3 if last else 2])
        return ()

    @report.def_vmap
    def rule(axis_size, in_batched, i, after, like):
        _point_report(scale * axis_size, n_points, steps_each, every)(_largest(i, in_batched[0]),
                                                                      _largest(after, in_batched[1]), like)
        return (), ()

    return report


@functools.lru_cache(maxsize=None)
def _rest_report(scale: int, total: int, unit: int):
    most = -(-total // unit)

    @jax.custom_batching.custom_vmap
    def report(count, like):
        say = [functools.partial(_add_steps, scale * (total - k * unit)) for k in range(most + 1)]
        jax.lax.switch(jnp.clip(count, 0, most), [lambda f=f: jax.debug.callback(f) for f in say])
        return ()

    @report.def_vmap
    def rule(axis_size, in_batched, count, like):
        _rest_report(scale * axis_size, total, unit)(_largest(count, in_batched[0]), like)
        return (), ()

    return report


def stride(n_points: int) -> int:
    """Report every ``stride`` of ``n_points`` points: about :data:`REPORTS_PER_LOOP` reports."""
    return max(1, -(-int(n_points) // REPORTS_PER_LOOP))


def report_at_point(i, n_points: int, steps_each: int, *, after, like=()) -> None:
    """Point ``i`` (a traced scalar, e.g. a scan index: the same for every run of a batch)
    of a loop's ``n_points`` points, ``steps_each`` steps apart, is done: report the steps
    since the last report, every :func:`stride` points and at the last one.

    ``after``: a traced scalar the report waits for (the step counter), made only when it
    is ``>= 0``; ``like``: values of the run that a ``vmap`` over runs batches (its key,
    its state: never read), so a batch of runs counts as that many runs. Under ``vmap``
    ``i`` and ``after`` are taken at their largest over the batch. Jit-, vmap-,
    ``lax.map``- and grad-compatible; nothing is compiled in when :data:`CALLBACKS` is
    ``False``."""
    if CALLBACKS:
        leaves = [_plain(x) for x in jax.tree_util.tree_leaves(like)]
        report = _point_report(1, int(n_points), int(steps_each), stride(n_points))
        report(jnp.asarray(i, jnp.int32), _plain(after), leaves)


def report_done(steps: int, *, after, like=()) -> None:
    """``steps`` more steps are done: one report, made when ``after >= 0`` (under ``vmap``:
    for some run of the batch); as :func:`report_at_point`."""
    report_at_point(0, 1, steps, after=after, like=like)


def report_rest(total: int, unit: int, count, *, like=()) -> None:
    """A loop of ``total`` steps that made ``count`` (traced) reports of ``unit`` steps
    (:func:`report_done`) has ended, early or not: report the rest, ``total − count ×
    unit`` (a negative count counts as 0; the rest is negative when the last stretch
    reported was shorter than ``unit``). Under ``vmap``
    the batch's largest ``count`` is taken: a loop batched over runs goes on, and
    reports for every run, while any run goes on."""
    if CALLBACKS:
        leaves = [_plain(x) for x in jax.tree_util.tree_leaves(like)]
        _rest_report(1, int(total), int(unit))(jnp.asarray(count, jnp.int32), leaves)


__all__ = ["CALLBACKS", "REPORTS_PER_LOOP", "Tracker", "compiled_settings", "current", "enabled", "expect",
           "format_count", "format_log_count", "format_time", "interval", "planning", "report_at_point", "report_done",
           "report_rest", "stride"]
