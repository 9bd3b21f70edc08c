"""Joining a multi-process job (``jax.distributed``) for ``lpg run --distributed``.

:func:`join` calls ``jax.distributed.initialize`` and then connects the processes' CPU
collectives (gloo) at once, with this process's C-level stdout on ``/dev/null``
meanwhile: gloo writes ``[Gloo] Rank I is connected to ...`` to stdout (not through
Python) when it connects, which would otherwise land among the results printed later.
The connection is kept for the job's later collectives (the same devices), so nothing
more is written.

:func:`supervise` is for JAX's health check. When process 0 (which hosts JAX's
coordination service) dies, or another process sends no heartbeat for the timeout, JAX
aborts every other process from a thread of its own (``Terminating process because the
JAX distributed service detected fatal errors``, a page of log, SIGABRT): no Python code
runs after it in that process (a callback jaxlib accepts from Python cannot be called
with the status it is given). So the work runs in a forked child; the parent passes its
C-level stderr on, drops JAX's abort with the log lines just before it, and prints one
line in its place.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable

# What JAX's abort writes (client.h), and how long log lines of JAX's C++ (``E1201 01:21:54.99 ...``)
# are held back in case that abort follows them: its warnings and errors come just before it.
_JAX_ABORT = "Terminating process because the JAX distributed service detected fatal errors"
HOLD_S = 1.0


def join(cluster: dict, *, heartbeat_timeout_s: int) -> None:
    """``jax.distributed.initialize(**cluster)``, then the collectives connected with
    gloo's stdout line silenced. Raises what ``initialize`` raises when there is no
    cluster to join."""
    import jax

    jax.distributed.initialize(**cluster, heartbeat_timeout_seconds=heartbeat_timeout_s)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        with c_stdout_to_devnull():
            multihost_utils.sync_global_devices("lpg: joined")


@contextlib.contextmanager
def c_stdout_to_devnull():
    """File descriptor 1 on ``/dev/null`` while it lasts (what C and C++ code writes to
    stdout), Python's ``sys.stdout`` flushed before and C's after."""
    if sys.stdout is not None:
        sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _flush_c_stdio() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def supervise(on_abort: Callable[[int], None]) -> None:
    """Fork. In the child (it dies with the parent) return, with file descriptor 2 on a
    pipe to the parent and ``sys.stderr`` on the terminal's stderr as before. The parent
    ignores Ctrl-C (the terminal sends it to the child too), passes SIGTERM on, writes the
    child's C-level stderr to its own, and once the child has ended exits with its status;
    a child aborted by JAX's health check (killed by it before it could say anything)
    ends with ``on_abort(child_pid)`` (which prints the line) and status 1 instead, the
    abort's log dropped."""
    if not hasattr(os, "fork"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _die_with(parent)
        terminal = os.dup(2)
        os.dup2(write, 2)
        os.close(write)
        sys.stderr = os.fdopen(terminal, "w", buffering=1, errors="backslashreplace")
        return
    os.close(write)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def pass_signal(signum, frame) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, pass_signal)
    aborted = _pass_on(read)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if aborted and status < 0:  # not when the child ended by itself, with its own line (a failed gather)
        on_abort(pid)
        status = 1
    sys.stderr.flush()
    os._exit(status if status >= 0 else 128 - status)


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` ends (Linux; elsewhere nothing)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the call
        os._exit(1)


def _is_log(line: bytes) -> bool:
    """A line of JAX's C++ log: ``W1201 01:21:54.990595 6828 file.cc:147] ...``."""
    return len(line) > 6 and line[:1] in b"IWEF" and line[1:5].isdigit() and line[5:6] == b" "


def _pass_on(fd: int) -> bool:
    """Copy the child's C-level stderr from ``fd`` to ours until it closes, holding lines
    back for ``HOLD_S`` from the last log line (a log line and what follows it may be the
    start of JAX's abort); whether JAX's abort came (it and all after it are dropped). Log
    lines still held when the child ends are dropped too (JAX's about the lost peer, after
    the child's own line), unless ``LPG_DEBUG=1``."""
    out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    pending, held, since = b"", [], 0.0

    def emit(lines):
        if out is not None and lines:
            out.write(b"".join(lines))
            out.flush()

    while True:
        ready, _, _ = select.select([fd], [], [], HOLD_S / 4)
        if held and time.monotonic() - since > HOLD_S:
            emit(held)
            held = []
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # the child has ended: log lines just before its end are dropped (its line, if any, said
            # why; JAX's lines about the lost peer would follow it), unless LPG_DEBUG=1
            if not held or os.environ.get("LPG_DEBUG") == "1":
                emit(held + ([pending] if pending else []))
            return False
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line += b"\n"
            if _JAX_ABORT.encode() in line:
                _drain(fd)
                return True
            if _is_log(line):
                held.append(line)
                since = time.monotonic()
            elif held:
                held.append(line)
            else:
                emit([line])


def _drain(fd: int) -> None:
    """Read ``fd`` until it closes (the rest of JAX's abort), writing nothing."""
    while os.read(fd, 65536):
        pass


__all__ = ["HOLD_S", "c_stdout_to_devnull", "join", "supervise"]
