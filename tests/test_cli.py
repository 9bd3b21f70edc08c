"""The ``lpg`` command (lpg/cli.py): listing, validation before anything runs (exit 2,
the setting named), a tiny run end to end with its table, files and figures, ``lpg
plot`` from disk, and an interrupted run (SIGINT) that leaves only complete files and
resumes to results identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lpg import cli, experiments, spec
from lpg.experiments import figure2
from lpg.results import FILES, read_results

# A tiny ORM-vs-PRM configuration shared by every test here (the same for figure1 and
# barrier), so all their runs share one compiled program: one seed per chunk, each
# chunk slow enough (300 PG steps) for a SIGINT to land between chunks.
TINY = {
    "d": "8", "k": "4", "N": "12", "n_centres": "8", "n_test": "32", "pretrain_steps": "10",
    "pretrain_batch": "16", "pg_steps": "300", "pg_batch": "16", "log_every": "100", "chunk_size": "1",
}


def tiny_args(**extra) -> list[str]:
    return ["--set", *[f"{k}={v}" for k, v in {**TINY, **extra}.items()]]


def run_cli(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_names_every_experiment(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for name in ("barrier", "figure1", "figure2"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), out


def test_a_broken_experiment_module_is_an_error(tmp_path):
    # The registry imports every experiment module explicitly: a module that fails to
    # import makes `import lpg.experiments` (and so every command) fail loudly.
    pkg = tmp_path / "fakepkg"
    shutil.copytree(Path(experiments.__file__).parent.parent, pkg / "lpg")
    (pkg / "lpg" / "experiments" / "online.py").write_text("raise RuntimeError('half-edited module')\n")
    proc = subprocess.run([sys.executable, "-c", "import lpg.experiments"], capture_output=True, text=True,
                          cwd=pkg, env=dict(os.environ, PYTHONPATH=str(pkg)), timeout=120)
    assert proc.returncode != 0 and "half-edited module" in proc.stderr


def test_show_and_run_help_list_every_setting(capsys):
    code, out, _ = run_cli(["show", "barrier"], capsys)
    assert code == 0
    exp = experiments.get("barrier")
    for name, setting in exp.settings.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert setting.help in line and str(setting.default) in line
    code, out, _ = run_cli(["run", "barrier", "--help"], capsys)
    assert code == 0 and "--seeds" in out and "pg_batch (int, default 128)" in out
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("lpg ")


@pytest.mark.parametrize(
    "argv, named",
    [
        (["run", "barrier", "--set", "nonsense=1"], "'nonsense'"),
        (["run", "barrier", "--set", "N=ten"], "'N'"),
        (["run", "barrier", "--set", "k=1"], "k must be an integer >= 2"),
        (["run", "barrier", "--set", "pg_lr=-0.1"], "pg_lr"),
        (["run", "barrier", "--set", "log_every=7"], "log_every must divide pg_steps=600"),
        (["run", "barrier", "--set", "optimizer=sgdd"], "optimizer"),
        (["run", "barrier", "--set", "pg_lr=inf"], "pg_lr"),
        (["run", "barrier", "--profile", "huge"], "profile"),
        (["report", "--only", "nosuch"], "only"),
        (["run", "paper", "--set", "profile=fast"], "profile"),
        (["run", "barrier", "--set", "off_support_threshold=2"], "off_support_threshold"),
        (["run", "figure1", "--set", "n_centres=64"], "n_centres"),
        (["run", "figure2", "--set", "context=gaussian"], "context"),
        (["run", "barrier", "--set", "N"], "KEY=VALUE"),
        (["run", "barrier", "--seeds", "0"], "--seeds"),
        (["run", "nosuch"], "unknown experiment 'nosuch'"),
        (["plot"], "dir"),
    ],
)
def test_bad_arguments_exit_2_naming_the_setting(argv, named, capsys, monkeypatch):
    def never(*a, **k):
        raise AssertionError("nothing may run when the arguments are bad")

    monkeypatch.setattr(spec, "sweep", never)
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert named in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lpg: error:")
    assert out == ""


def test_bad_set_value_from_the_console_script():
    proc = subprocess.run([sys.executable, "-m", "lpg.cli", "run", "barrier", "--set", "pg_batch=0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "lpg: error: pg_batch must be an integer >= 1, got 0"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("barrier")
    code = cli.main(["run", "barrier", "--seeds", "2", *tiny_args(), "--out", str(out)])
    assert code == 0
    return out


def test_run_writes_complete_results_and_figures(tiny_run):
    names = set(os.listdir(tiny_run))
    assert set(FILES) <= names
    assert {"barrier.png", "barrier.pdf", "checkpoint"} <= names
    config, table, summary = read_results(tiny_run)
    assert config["experiment"] == "barrier" and config["seeds"] == 2 and config["N"] == 12
    assert table.per_run("seed").tolist() == [0, 1]
    assert table.where(series="orm").by_run("track_log_lik").shape == (2, 4, 8)  # seeds, log points, centres
    assert summary["timing"]["parts"].keys() == {"runs"}
    for key in ("orm", "prm"):
        assert summary["off_support"][key]["n"] <= 2
        assert summary["test_error"][key]["n"] == 2
    assert len(summary["n_off_support"]["per_seed"]) == 2
    env = json.loads((tiny_run / "env.json").read_text())
    assert env["backend"] == "cpu"


def test_plot_redraws_from_disk(tiny_run, capsys):
    for ext in ("png", "pdf"):
        (tiny_run / f"barrier.{ext}").unlink()
    code, out, _ = run_cli(["plot", str(tiny_run)], capsys)
    assert code == 0
    assert (tiny_run / "barrier.png").stat().st_size > 0 and (tiny_run / "barrier.pdf").stat().st_size > 0
    assert "ORM" in out and "PRM" in out and "figure:" in out


def test_plot_of_an_unfinished_directory_exits_2(tmp_path, capsys):
    code, _, err = run_cli(["plot", str(tmp_path)], capsys)
    assert code == 2 and "config.json" in err


def test_figure1_has_the_same_summary_keys_as_barrier(tiny_run, tmp_path, capsys):
    code, out, _ = run_cli(["run", "figure1", "--seeds", "2", *tiny_args(), "--out", str(tmp_path)], capsys)
    assert code == 0 and "off-support likelihood" in out
    s1 = json.loads((tmp_path / "summary.json").read_text())
    s2 = json.loads((tiny_run / "summary.json").read_text())
    for key in ("off_support", "test_error"):
        assert {"orm", "prm"} <= set(s1[key]) and set(s1[key]) == set(s2[key])
    assert "n_off_support" in s1 and "n_off_support" in s2
    # Same settings and seeds: the same numbers whichever name ran them.
    _, a1, _ = read_results(tmp_path)
    _, a2, _ = read_results(tiny_run)
    assert np.array_equal(a1["track_log_lik"], a2["track_log_lik"], equal_nan=True)


def test_interrupted_run_leaves_complete_files_and_resumes_identically(tmp_path, capsys):
    args = tiny_args()
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "lpg.cli", "run", "barrier", "--seeds", "4", *args, "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = out / "checkpoint" / "runs" / "chunk_000000.npz"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    # Every file on disk is complete; nothing half-written or temporary is left.
    every = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in every if p.name.endswith(".tmp")]
    assert not (out / "summary.json").exists()
    for p in every:
        if p.suffix == ".npz":
            with np.load(p) as z:
                [z[k] for k in z.files]
        elif p.suffix == ".json":
            json.loads(p.read_text())
    chunks = sorted((out / "checkpoint" / "runs").glob("chunk_*.npz"))
    assert 1 <= len(chunks) < 4
    # Resume, then compare with an uninterrupted run of the same command.
    code, _, _ = run_cli(["run", "barrier", "--seeds", "4", *args, "--out", str(out), "--resume"], capsys)
    assert code == 0
    code, _, _ = run_cli(["run", "barrier", "--seeds", "4", *args, "--out", str(tmp_path / "straight")], capsys)
    assert code == 0
    _, resumed, s_resumed = read_results(out)
    _, straight, s_straight = read_results(tmp_path / "straight")
    assert resumed.columns.keys() == straight.columns.keys()
    for k in resumed.columns:
        assert np.array_equal(resumed[k], straight[k], equal_nan=resumed[k].dtype.kind == "f"), k
    s_resumed.pop("timing"), s_straight.pop("timing")
    assert s_resumed == s_straight


def test_default_out_dir_is_runs_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(["run", "barrier", "--seeds", "2", *tiny_args()], capsys)
    assert code == 0
    assert (Path("runs") / "barrier" / "summary.json").is_file()
    assert "results: runs/barrier" in out


def test_figure2_tiny_run_starts_from_the_uniform_policy(tmp_path, capsys):
    sets = ["d=6", "k=3", "N=5", "n_checkpoints=2", "checkpoint_every=20", "batch_size=16", "n_samples=512",
            "n_test=64", "n_alpha=11", "n_eps=5"]
    code, out, _ = run_cli(["run", "figure2", "--seeds", "2", "--set", *sets, "--out", str(tmp_path)], capsys)
    assert code == 0 and "log10 Q(0.1)" in out
    config, table, summary = read_results(tmp_path)
    a = {k: table.by_run(k) for k in ("cdf", "log_tail")}
    a["log10_alpha"] = figure2.alpha_grid(config)
    uniform = -5 * np.log10(3.0)
    first = summary["checkpoints"][0]
    # Step 0 is the uniform policy: q(y*|x) = k^-N for every context (closed form).
    assert first["step"] == 0
    assert first["test_error"]["mean"] == pytest.approx(1 - 3.0**-5, rel=1e-5)
    for s in first["log10_lq"].values():
        assert s["mean"] == pytest.approx(uniform, rel=1e-5)
    # Its CDF jumps from 0 to 1 at α = k^-N; its α-tail is α below k^-N and 0 above.
    la = a["log10_alpha"]
    below = la < uniform - 1e-6
    assert np.all(a["cdf"][:, 0][:, below] == 0) and np.all(a["cdf"][:, 0][:, ~below] == 1)
    expected_tail = np.broadcast_to(10.0 ** la[below], (2, below.sum()))
    np.testing.assert_allclose(np.exp(a["log_tail"][:, 0][:, below]), expected_tail, rtol=1e-5)
    # Training raises the LQ and lowers the error; the CDF is non-decreasing in α.
    last = summary["checkpoints"][-1]
    assert last["test_error"]["mean"] < first["test_error"]["mean"]
    assert last["log10_lq"]["0.5"]["mean"] > uniform
    assert np.all(np.diff(a["cdf"], axis=-1) >= 0)
    assert (tmp_path / "figure2.png").is_file()
