"""``lpg run --distributed`` over two real processes on one machine (issue 12): CPU
collectives (gloo), the coordinator on localhost, the processes started by hand with
``--coordinator``, ``--num-processes`` and ``--process-id``.

The reference is the same command in one process: two processes split every chunk's
runs between their devices and gather the outputs, so each run is the same computation
and the per-run results must be identical (``np.array_equal``, not a tolerance). A
process killed mid-run stops the other with one line naming the command that continues
the run, and that command, in one process, ends with the reference's results. The flags
are checked before anything is initialised (one line, status 2)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from lpg import cli
from lpg.results import lock_file, read_results, staging_dir

# Tiny barrier runs, 4 chunks of 2 seeds (a chunk is one run per device in two processes,
# two runs one after the other in one), each chunk slow enough (4000 PG steps) for a kill
# to land while chunks remain.
ARGS = ["--seeds", "8", "--set", "d=8", "k=4", "N=12", "n_centres=8", "n_test=32", "pretrain_steps=10",
        "pretrain_batch=16", "pg_steps=4000", "pg_batch=16", "log_every=1000", "chunk_size=2"]
TIMEOUT_S = 600  # per process: compiling takes seconds alone, minutes on a loaded 2-core machine


def _env() -> dict:
    """This environment without a cluster of its own: CPU, one device per process."""
    drop = ("JAX_COORDINATOR", "JAX_NUM_", "JAX_PROCESS", "JAX_LOCAL_DEVICE", "SLURM", "OMPI", "XLA_FLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _lpg(*argv: str) -> list[str]:
    return [sys.executable, "-m", "lpg.cli", *argv]


def _start_two(out) -> list[subprocess.Popen]:
    port = _free_port()
    return [subprocess.Popen(_lpg("run", "barrier", "--distributed", "--coordinator", f"localhost:{port}",
                                  "--num-processes", "2", "--process-id", str(i), *ARGS, "--out", str(out)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
            for i in range(2)]


def _finish(procs) -> list[tuple[int, str, str]]:
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT_S)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def _same_results(a, b) -> None:
    _, ta, sa = read_results(a)
    _, tb, sb = read_results(b)
    assert ta.columns.keys() == tb.columns.keys()
    for k in ta.columns:
        assert np.array_equal(ta[k], tb[k], equal_nan=ta[k].dtype.kind == "f"), k
    sa.pop("timing"), sb.pop("timing")
    assert sa == sb


def _one_error_line(err: str, *named: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("lpg: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    for text in named:
        assert text in errors[0], (text, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same run in one process."""
    out = tmp_path_factory.mktemp("one") / "run"
    proc = subprocess.run(_lpg("run", "barrier", *ARGS, "--out", str(out)), capture_output=True, text=True,
                          env=_env(), timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_processes_give_the_results_of_one(one_process, tmp_path):
    out = tmp_path / "two"
    (rc0, out0, err0), (rc1, out1, err1) = _finish(_start_two(out))
    assert (rc0, rc1) == (0, 0), (err0[-3000:], err1[-3000:])
    # Process 0 alone writes and reports.
    assert f"results: {out}" in out0 and "results:" not in out1 and "lpg: error" not in err0 + err1
    env = json.loads((out / "env.json").read_text())
    assert env["process_count"] == 2 and len(env["devices"]) == 2 and "--distributed" in env["run"]["command"]
    assert not staging_dir(out).exists() and not lock_file(out).exists()
    _same_results(out, one_process)


def test_a_lost_process_stops_the_other_and_the_run_resumes_in_one(one_process, tmp_path):
    """Process 1 is killed once the first chunk is on disk: process 0 (which writes) stops
    at once with one line naming the command that continues the run, and that command in
    one process ends with the reference's results. (Killing process 0, which hosts JAX's
    coordination service, ends the others through JAX's own abort instead: not tested.)"""
    out = tmp_path / "lost"
    procs = _start_two(out)
    first = staging_dir(out) / "checkpoint" / "runs" / "chunk_000000.npz"
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not first.exists() and procs[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        procs[1].send_signal(signal.SIGKILL)
    finally:
        [(rc0, _, err0), _] = _finish(procs)
    assert first.exists(), err0[-3000:]
    again = shlex.join(["lpg", "run", "barrier", "--out", str(out), "--resume"])
    assert rc0 == 1, err0[-3000:]
    _one_error_line(err0, "--distributed: another process of the job has stopped", str(staging_dir(out)), again)
    chunks = sorted((staging_dir(out) / "checkpoint" / "runs").glob("chunk_*.npz"))
    assert 1 <= len(chunks) < 4 and not (staging_dir(out) / "summary.json").exists()
    assert not lock_file(out).exists()
    proc = subprocess.run(_lpg("run", "barrier", "--out", str(out), "--resume"), capture_output=True, text=True,
                          env=_env(), timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming the interrupted run" in proc.stderr
    assert not staging_dir(out).exists() and not lock_file(out).exists()
    _same_results(out, one_process)


@pytest.mark.parametrize("flags, named", [
    (["--distributed", "--num-processes", "2", "--process-id", "2"], ["--process-id", "below --num-processes 2"]),
    (["--distributed", "--process-id", "-1"], ["--process-id", "'-1'"]),
    (["--distributed", "--num-processes", "0"], ["--num-processes", "'0'"]),
    (["--distributed", "--num-processes", "two"], ["--num-processes", "'two'"]),
    (["--distributed", "--coordinator", "localhost"], ["--coordinator", "HOST:PORT", "'localhost'"]),
    (["--distributed", "--coordinator", "localhost:0"], ["--coordinator", "'localhost:0'"]),
    (["--distributed", "--coordinator", ":1234"], ["--coordinator", "':1234'"]),
    (["--process-id", "0"], ["--process-id", "--distributed"]),
])
def test_the_flags_are_checked_before_anything_starts(flags, named, capsys, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "barrier", *flags, "--seeds", "1", "--out", str(out)])
    assert e.value.code == cli.EXIT_USAGE
    _one_error_line(capsys.readouterr().err, *named)
    assert not out.exists()


def test_the_report_is_not_distributed(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "paper", "--distributed"])
    assert e.value.code == cli.EXIT_USAGE
    _one_error_line(capsys.readouterr().err, "--distributed", "lpg run NAME --distributed")
