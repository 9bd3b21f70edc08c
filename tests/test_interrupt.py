"""Ctrl-C at once: :func:`lpg.interrupt.promptly` hands back a call's value or error and
raises ``KeyboardInterrupt`` while the call is still running; ``lpg run`` interrupted
during compilation and in the middle of a chunk exits within seconds with status 130
and one line, keeps the finished chunks, and ``--resume`` completes the run."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import default_sigint, python_sigint
from lpg import cli
from lpg.interrupt import abandoned, promptly
from lpg.results import read_results, staging_dir


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


# One seed per chunk; a chunk takes seconds, so a signal lands inside one.
SLOW_CHUNK = {"d": "8", "k": "4", "N": "12", "n_centres": "8", "n_test": "32", "pretrain_steps": "10",
              "pretrain_batch": "16", "pg_steps": "100000", "pg_batch": "16", "log_every": "25000", "chunk_size": "1",
              "signed": "true"}  # ±1: the sampled path, whose chunks these timings were set for


def interrupt(argv, when, limit: float):
    """Start ``lpg`` with ``argv``, send SIGINT once ``when()`` holds, and return
    ``(status, stderr, seconds from the signal to the exit)``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "lpg.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint)
    deadline = time.monotonic() + 240
    while not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, time.monotonic() - t0


def test_ctrl_c_during_compilation_and_mid_chunk_exits_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    stage = staging_dir(out)
    first = stage / "checkpoint" / "runs" / "chunk_000000.npz"
    argv = ["run", "barrier", "--seeds", "2", "--set", *[f"{k}={v}" for k, v in SLOW_CHUNK.items()],
            "--out", str(out)]
    # During tracing or compilation: the run has started (its record is written) and no chunk is done.
    started = stage / "env.json"
    code, err, took = interrupt(argv, lambda: started.exists() and time.sleep(0.5) is None, 5)
    assert code == 130 and took < 5, (code, took, err[-2000:])
    assert "Traceback" not in err and "--resume" in err
    assert not first.exists()
    # Mid-chunk: the second chunk is running; the first is kept, the second is not written half.
    resume = ["run", "barrier", "--out", str(out), "--resume"]
    code, err, took = interrupt(resume, lambda: first.exists() and time.sleep(0.2) is None, 5)
    assert code == 130 and took < 5, (code, took, err[-2000:])
    assert not out.exists(), "the run finished before the signal: make its chunks longer"
    assert "Traceback" not in err
    kept = first.read_bytes()
    assert not (first.parent / "chunk_000001.npz").exists()
    assert not [p for p in stage.rglob("*.tmp")]
    # --resume finishes from the kept chunk.
    assert cli.main(resume) == 0
    capsys.readouterr()
    _, table, _ = read_results(out)
    assert sorted(set(table["seed"].tolist())) == [0, 1]
    assert not stage.exists() and kept  # the finished chunk was reused, not recomputed (and the stage moved in)
