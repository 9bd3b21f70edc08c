"""Ctrl-C that takes effect at once, also while XLA compiles or runs a program.

Python delivers ``KeyboardInterrupt`` to the main thread only between bytecodes, so a
SIGINT that arrives while the main thread is inside XLA (compiling, or waiting for a
chunk of runs) waits until XLA returns — tens of seconds — and a second one can land in
the middle of XLA's teardown. :func:`promptly` runs such a call in a worker thread while
the main thread waits in short slices, so the interrupt is raised at once; the worker is
abandoned (its result is never used) and :func:`abandoned` tells the command line to end
the process with ``os._exit`` after the interrupt has been handled (the finished chunks
are already on disk, the lock released), instead of tearing down an interpreter whose
XLA is still busy. :func:`install` makes sure an interrupt is not lost when Python drops
the ``KeyboardInterrupt`` (raised inside a garbage-collector callback, say).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_RUNNING: list[threading.Event] = []  # the "done" events of abandoned workers
_PENDING = threading.Event()  # a SIGINT arrived and may not have reached the main thread's code
_WAITING = threading.Event()  # the main thread is in promptly's wait loop, which polls _PENDING


_DROPPED_IN = frozenset({"_xla_gc_callback", "__del__"})  # where Python prints an exception and drops it


def _in_dropping_frame(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name in _DROPPED_IN:
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum, frame):
    # Remembered, and raised as Python's own handler would, except in promptly's wait loop,
    # which raises it within 50 ms, and in a garbage-collector callback or a __del__ (JAX
    # registers some), where Python would print a traceback and drop it: the next
    # promptly raises it then.
    _PENDING.set()
    if not _WAITING.is_set() and not _in_dropping_frame(frame):
        raise KeyboardInterrupt


def install() -> None:
    """Take over SIGINT from Python's default handler (a handler of the user's is left
    alone), so that an interrupt Python drops is still acted on by :func:`promptly`."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is \
            signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def clear() -> None:
    """Forget a handled interrupt (the command line calls it once it has acted on one)."""
    _PENDING.clear()


def _check() -> None:
    if _PENDING.is_set():
        _PENDING.clear()
        raise KeyboardInterrupt


def promptly(fn: Callable[[], T]) -> T:
    """``fn()``, interruptible by Ctrl-C while it runs. In the main thread, ``fn`` runs in
    a daemon worker thread and its result or exception is handed back; a
    ``KeyboardInterrupt`` while waiting (or one dropped since :func:`install`) is raised
    at once and the worker abandoned. Outside the main thread (no signal can reach it)
    ``fn()`` is simply called."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    _check()
    box: dict = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 — handed to the waiting thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=work, name="lpg-xla", daemon=True).start()
    _WAITING.set()
    try:
        # Event.wait, not Thread.join: an interrupted join marks a live thread as stopped.
        while not done.wait(0.05):
            _check()
        _check()  # an interrupt that arrived as the call ended
    except KeyboardInterrupt:
        if not done.is_set():
            _RUNNING.append(done)
        raise
    finally:
        _WAITING.clear()
    if "error" in box:
        raise box["error"]
    return box["value"]


def abandoned() -> bool:
    """Whether a call of :func:`promptly` was interrupted and its worker is still running."""
    return any(not done.is_set() for done in _RUNNING)


__all__ = ["abandoned", "clear", "install", "promptly"]
