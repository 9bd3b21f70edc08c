"""Ctrl-C at once: :func:`lpg.interrupt.promptly` hands back a call's value or error and
raises ``KeyboardInterrupt`` while the call is still running; ``lpg run`` interrupted
during compilation and in the middle of a chunk exits within seconds with status 130
and one line, keeps the finished chunks and saved segments; killed with SIGKILL in the
middle of a segment it loses that segment only; ``--resume`` completes the run with the
results of an uninterrupted one."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import default_sigint, python_sigint
from lpg import cli, segments
from lpg.interrupt import abandoned, promptly
from lpg.results import staging_dir


def test_promptly_returns_the_value_and_raises_the_error():
    assert promptly(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        promptly(lambda: 1 / 0)
    out = []
    t = threading.Thread(target=lambda: out.append(promptly(lambda: threading.current_thread().name)))
    t.start(), t.join()
    assert out == [t.name]  # outside the main thread it runs in place


def test_promptly_is_interrupted_while_the_call_runs():
    release = threading.Event()
    timer = threading.Timer(0.2, _thread.interrupt_main)
    t0 = time.monotonic()
    with python_sigint(), pytest.raises(KeyboardInterrupt):
        timer.start()
        promptly(lambda: release.wait(30))
    assert time.monotonic() - t0 < 5  # not the 30 s the call would take
    assert abandoned()
    release.set()
    deadline = time.monotonic() + 5
    while abandoned() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not abandoned()


# One seed per chunk; a chunk takes seconds, cut into segments of 0.3 s, so a signal lands
# inside a chunk, after some of its segments are saved.
SLOW_CHUNK = {"d": "8", "k": "4", "N": "12", "n_centres": "8", "n_test": "32", "pretrain_steps": "10",
              "pretrain_batch": "16", "pg_steps": "40000", "pg_batch": "16", "log_every": "10000", "chunk_size": "1",
              "signed": "true"}  # ±1: the sampled path, whose chunks these timings were set for
SEGMENT_S = "0.3"


def signal_when(argv, when, sig=signal.SIGINT):
    """Start ``lpg`` with ``argv``, send ``sig`` once ``when()`` holds, and return
    ``(status, stderr, seconds from the signal to the exit)``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", LPG_SEGMENT_S=SEGMENT_S)
    proc = subprocess.Popen([sys.executable, "-m", "lpg.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint)
    deadline = time.monotonic() + 240
    while not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, time.monotonic() - t0


def _rewritten(path):
    """A test that holds once ``path`` has been written twice since it was first called
    (a segment saved while the test watched, and then another one)."""
    seen = []

    def check():
        if path.exists():
            stamp = path.stat().st_mtime_ns
            if stamp not in seen:
                seen.append(stamp)
        return len(seen) >= 2

    return check


def test_ctrl_c_and_kill_at_any_moment_then_resume_gives_the_uninterrupted_run(tmp_path, capsys, monkeypatch):
    """SIGINT during compilation (with ``LPG_SLOW=1``), SIGINT mid-chunk, SIGKILL mid-segment: each exits (at once
    for SIGINT, status 130 and one line), keeps what was saved, and ``--resume`` continues
    from the last saved segment (at most one segment's work lost) and ends with the results
    of an uninterrupted run, bit for bit."""
    out = tmp_path / "run"
    stage = staging_dir(out)
    first = stage / "checkpoint" / "runs" / "chunk_000000.npz"
    part = stage / "checkpoint" / "runs" / "segment_000001.npz"
    argv = ["run", "barrier", "--seeds", "2", "--set", *[f"{k}={v}" for k, v in SLOW_CHUNK.items()],
            "--out", str(out)]
    resume = ["run", "barrier", "--out", str(out), "--resume"]
    if os.environ.get("LPG_SLOW") == "1":  # one more start of lpg (test_promptly_* covers the mechanism)
        # During tracing or compilation: the run has started (its record is written) and no chunk is done.
        started = stage / "env.json"
        code, err, took = signal_when(argv, lambda: started.exists() and time.sleep(0.5) is None)
        assert code == 130 and took < 5, (code, took, err[-2000:])
        assert "Traceback" not in err and "--resume" in err
        assert not first.exists()
    # Mid-chunk: the second chunk is running; the first is kept, the second is not written half.
    code, err, took = signal_when(resume if stage.exists() else argv,
                                  lambda: first.exists() and time.sleep(0.2) is None)
    assert code == 130 and took < 5, (code, took, err[-2000:])
    assert not out.exists(), "the run finished before the signal: make its chunks longer"
    assert "Traceback" not in err
    kept = first.read_bytes()
    assert not (first.parent / "chunk_000001.npz").exists()
    assert not [p for p in stage.rglob("*.tmp")]
    # kill -9 mid-segment, after two more segments of the second chunk were saved.
    code, err, _ = signal_when(resume, _rewritten(part), signal.SIGKILL)
    assert code == -signal.SIGKILL and not out.exists(), "the run finished before the signal: make it longer"
    saved = int(np.load(part)["steps"][0])
    # --resume finishes from the kept chunk and the last saved segment.
    lefts = []
    real = segments.next_budget
    monkeypatch.setattr(segments, "next_budget", lambda left, *a, **k: lefts.append(left) or real(left, *a, **k))
    monkeypatch.setenv("LPG_SEGMENT_S", SEGMENT_S)
    assert cli.main(resume) == 0
    capsys.readouterr()
    total = 2 * int(SLOW_CHUNK["pg_steps"]) + int(SLOW_CHUNK["pretrain_steps"])
    assert 0 < saved < total and lefts[0] == total - saved  # from the segment on disk, not from the start
    assert not stage.exists() and kept  # the finished chunk was reused, not recomputed (and the stage moved in)
    # The same run uninterrupted, in segments of another length.
    monkeypatch.setenv("LPG_SEGMENT_S", "60")
    whole = tmp_path / "whole"
    assert cli.main(argv[:-1] + [str(whole)]) == 0
    capsys.readouterr()
    a, b = np.load(out / "results.npz"), np.load(whole / "results.npz")
    assert a.files == b.files
    for name in a.files:
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name
