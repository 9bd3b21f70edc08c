"""The ``lpg`` command (lpg/cli.py): listing, validation before anything runs (exit 2,
the setting named), a tiny run end to end with its table, files and figures, ``lpg
plot`` from disk, and an interrupted run (SIGINT) over an earlier run that leaves the
earlier run and only complete files, and resumes from ``--out DIR --resume`` alone to
results identical to an uninterrupted run.

Nothing lost (issue 12): a run never writes into a directory it did not write, replaces
an earlier run only once it has finished and only with ``--overwrite`` when the settings
differ, reuses a finished one with the same settings, and a lock keeps a second run out;
every fault is one line ``lpg: error: ...`` with its exit status, and the directory's
contents are compared before and after."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import default_sigint
from lpg import cli, experiments, spec
from lpg.experiments import figure2
from lpg.results import FILES, lock_file, read_results, staging_dir

# A tiny ORM-vs-PRM configuration shared by every test here (the same for figure1 and
# barrier), so all their runs share one compiled program: one seed per chunk, each
# chunk slow enough (300 PG steps) for a SIGINT to land between chunks.
TINY = {
    "d": "8", "k": "4", "N": "12", "n_centres": "8", "sigma": "0.05", "n_test": "32", "pretrain_steps": "10",
    "pretrain_batch": "16", "pg_steps": "300", "pg_batch": "16", "log_every": "100", "chunk_size": "1",
    "signed": "false",
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


def snapshot(root: Path) -> dict:
    """``root`` and everything under it, with the SHA-256 of each file: what a user would
    lose (figures, whose PDF embeds its creation time, only by name)."""
    if root.is_file():
        return {str(root): hashlib.sha256(root.read_bytes()).hexdigest()}
    seen = {str(root): "dir"} if root.is_dir() else {}
    for p in sorted(root.rglob("*")):
        if p.is_dir():
            seen[str(p)] = "dir"
        else:
            seen[str(p)] = "figure" if p.suffix in (".png", ".pdf") else hashlib.sha256(p.read_bytes()).hexdigest()
    return seen


def one_error_line(err: str, *named: str) -> str:
    """``err`` is exactly one line ``lpg: error: ...`` naming each of ``named``."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("lpg: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for text in named:
        assert text in errors[0], (text, errors[0])
    return errors[0]


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
    assert code == 0 and "--seeds" in out and f"pg_batch (int, default {exp.settings['pg_batch'].default})" in out
    assert "--first-seed" in out and "--overwrite" in out
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
        (["run", "barrier", "--set", "log_every=7"], "log_every must divide pg_steps="),
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
        (["run", "barrier", "--seeds", "99999999999"], "--seeds must be an integer in [1, 2147483648]"),
        (["run", "barrier", "--first-seed", "-1"], "--first-seed"),
        (["run", "barrier", "--first-seed", "2147483647", "--seeds", "2"], "goes past the largest seed"),
        (["run", "barrier", "--resume", "--overwrite"], "--resume and --overwrite"),
        (["report", "--seeds", "99999999999"], "--seeds"),
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


@pytest.fixture(scope="module")
def four_seeds(tmp_path_factory):
    """The tiny run with 4 seeds, computed from scratch in one go: what a resumed or
    extended run must equal."""
    out = tmp_path_factory.mktemp("straight")
    assert cli.main(["run", "barrier", "--seeds", "4", *tiny_args(), "--out", str(out)]) == 0
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


def test_interrupted_run_leaves_complete_files_and_resumes_identically(tiny_run, four_seeds, tmp_path, capsys,
                                                                       monkeypatch):
    # An earlier finished run (2 seeds) in --out; a new one (4 seeds) over it with --overwrite,
    # interrupted after its first chunk: the earlier run is untouched, the new one is staged.
    args = tiny_args()
    out = tmp_path / "dir with space" / "run"
    shutil.copytree(tiny_run, out)
    before = snapshot(out)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "lpg.cli", "run", "barrier", "--seeds", "4", *args, "--out", str(out), "--overwrite"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_sigint)
    stage = staging_dir(out)
    first = stage / "checkpoint" / "runs" / "chunk_000000.npz"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    # The printed command is shell-quoted and needs no retyping of the settings.
    again = shlex.join(["lpg", "run", "barrier", "--out", str(out), "--resume"])
    assert again in err and "'" in again
    assert snapshot(out) == before
    assert not lock_file(out).exists()
    # Every file on disk is complete; nothing half-written or temporary is left.
    every = [p for p in stage.rglob("*") if p.is_file()]
    assert not [p for p in every if p.name.endswith(".tmp")]
    assert not (stage / "summary.json").exists()
    for p in every:
        if p.suffix == ".npz":
            with np.load(p) as z:
                [z[k] for k in z.files]
        elif p.suffix == ".json":
            json.loads(p.read_text())
    # config.json is written when the run starts, with env.json's record of the command.
    assert json.loads((stage / "config.json").read_text())["seeds"] == 4
    record = json.loads((stage / "env.json").read_text())["run"]
    assert record["seeds"] == [0, 1, 2, 3] and record["command"].endswith("--overwrite")
    chunks = sorted((stage / "checkpoint" / "runs").glob("chunk_*.npz"))
    assert 1 <= len(chunks) < 4
    # Resume from the record alone, then compare with an uninterrupted run of the same command.
    code, _, err = run_cli(["run", "barrier", "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    assert not stage.exists() and not lock_file(out).exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no backup, no lock left
    assert_same_results(out, four_seeds)
    env = json.loads((out / "env.json").read_text())["run"]
    assert env["command"].endswith("--overwrite") and env["resumed"][0]["command"] == "lpg " + " ".join(
        shlex.quote(a) for a in ["run", "barrier", "--out", str(out), "--resume"])
    # --resume on the finished run shows it and keeps its recorded timing.
    finished = snapshot(out)
    no_figures(monkeypatch)
    code, text, err = run_cli(["run", "barrier", "--out", str(out), "--resume"], capsys)
    assert code == 0 and "nothing to resume" in err and "ORM" in text
    assert snapshot(out) == finished  # summary.json (its timing) byte for byte


def assert_same_results(a: Path, b: Path) -> None:
    """The finished runs in ``a`` and ``b`` hold the same config, the same table bit for
    bit (rows in the same order) and the same summary but for the timing."""
    config_a, table_a, summary_a = read_results(a)
    config_b, table_b, summary_b = read_results(b)
    assert config_a == config_b
    assert list(table_a.columns) == list(table_b.columns)
    for k in table_a.columns:
        assert table_a[k].dtype == table_b[k].dtype, k
        assert np.array_equal(table_a[k], table_b[k], equal_nan=table_a[k].dtype.kind == "f"), k
    summary_a.pop("timing"), summary_b.pop("timing")
    assert summary_a == summary_b


def test_resume_with_more_seeds_adds_them_without_computing_the_old_ones(tiny_run, four_seeds, tmp_path, capsys,
                                                                         monkeypatch):
    """``--resume --seeds 4`` on a finished 2-seed run computes seeds 2 and 3 only and
    ends with the results of a fresh 4-seed run, bit for bit and rows in its order. The
    finished run stays as it was until the extended one has finished (interrupted here
    after its first new chunk, then resumed from the record alone); env.json records the
    extension."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)
    no_figures(monkeypatch)
    real, computed, stop = spec.sweep, [], [True]

    def counting(fn, grid, *, seeds, **kw):
        def chunk_done(done, total):
            computed.append((list(seeds), done))
            if stop.pop() if stop else False:
                raise KeyboardInterrupt
        return real(fn, grid, seeds=seeds, on_chunk=chunk_done, **kw)

    monkeypatch.setattr(spec, "sweep", counting)
    before = snapshot(out)
    more = ["run", "barrier", "--out", str(out), "--resume", "--seeds", "4"]
    code, _, err = run_cli(more, capsys)
    assert code == 130 and "adding seeds 2..3 to the finished run" in err, err
    assert shlex.join(["lpg", "run", "barrier", "--out", str(out), "--resume"]) in err
    assert snapshot(out) == before and json.loads((staging_dir(out) / "config.json").read_text())["seeds"] == 4
    # Seeds are added to a finished run only: the interrupted extension must finish first.
    code, _, err = run_cli([*more[:-1], "6"], capsys)
    assert code == 2
    one_error_line(err, "--seeds (recorded 4, given 6", "finished run only")
    code, _, err = run_cli(more[:5], capsys)
    assert code == 0, err
    assert computed == [([2, 3], 1), ([2, 3], 2)]  # one chunk per seed: seeds 0 and 1 were read, not computed
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging, lock or backup left
    assert_same_results(out, four_seeds)
    run = json.loads((out / "env.json").read_text())["run"]
    assert run["seeds"] == [0, 1, 2, 3]  # the record of the run, its first command kept
    assert run["command"] == shlex.join(["lpg", "run", "barrier", "--seeds", "2", *tiny_args(), "--out", str(tiny_run)])
    (added,) = run["extended"]
    assert added["seeds_before"] == 2 and added["seeds_added"] == [2, 3] and added["command"] == shlex.join(
        ["lpg", *more])
    assert run["resumed"][0]["command"] == shlex.join(["lpg", *more[:5]])
    old_total = json.loads((tiny_run / "summary.json").read_text())["timing"]["total_s"]
    assert json.loads((out / "summary.json").read_text())["timing"]["total_s"] > old_total


def never(*args, **kwargs):
    raise AssertionError("nothing may be computed here")


def no_figures(monkeypatch):
    """Skip drawing figures (a few seconds each) where a test does not look at them."""
    monkeypatch.setattr(spec.Experiment, "plot", lambda self, out_dir: [])


USER_FILES = {"config.json": '{"lr": 0.1}\n', "notes.txt": "my own notes\n"}


@pytest.mark.parametrize("case", ["user dir", "user dir, --overwrite", "a file", "below a file", "user staging"])
def test_a_directory_lpg_did_not_write_is_never_written(case, tmp_path, capsys, monkeypatch):
    """A directory that is neither empty nor an lpg run is refused, even with --overwrite
    (the issue: the user's own config.json was lost when the run then failed)."""
    monkeypatch.setattr(spec, "sweep", never)
    out, extra = tmp_path / "out", ["--overwrite"] if "overwrite" in case else []
    if case.startswith("user dir"):
        out.mkdir()
        for name, text in USER_FILES.items():
            (out / name).write_text(text)
        named = [str(out), "holds no lpg run", "config.json, notes.txt"]
    elif case == "a file":
        out.write_text("my results\n")
        named = [str(out), "is a file"]
    elif case == "below a file":
        (tmp_path / "file").write_text("mine\n")
        out = tmp_path / "file" / "out"
        named = [str(tmp_path / "file"), "is a file"]
    else:
        staging_dir(out).mkdir()
        (staging_dir(out) / "notes.txt").write_text("mine\n")
        named = [str(staging_dir(out)), "not written by lpg"]
    before = snapshot(tmp_path)
    code, text, err = run_cli(["run", "barrier", "--seeds", "1", *tiny_args(), "--out", str(out), *extra], capsys)
    assert code == 2 and text == ""
    one_error_line(err, *named)
    assert snapshot(tmp_path) == before


def test_an_earlier_run_is_replaced_only_with_overwrite(tiny_run, tmp_path, capsys):
    """Other settings (here another experiment and seed) need --overwrite; a run holding a
    file lpg did not write is never replaced; the replacement leaves none of the earlier
    run's files (its figures) behind. --first-seed picks the seeds, files honour the umask."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)
    before = snapshot(tmp_path)
    argv = ["run", "figure1", "--seeds", "1", "--first-seed", "1", *tiny_args(), "--out", str(out)]
    code, text, err = run_cli(argv, capsys)
    assert code == 2 and text == ""
    one_error_line(err, str(out), "experiment (recorded barrier, now figure1)", "seeds (recorded 0..1, now 1)",
                   "--overwrite")
    assert snapshot(tmp_path) == before
    (out / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    code, text, err = run_cli([*argv, "--overwrite"], capsys)
    assert code == 2
    one_error_line(err, "notes.txt", "did not write")
    assert snapshot(tmp_path) == before
    (out / "notes.txt").unlink()
    code, text, err = run_cli([*argv, "--overwrite"], capsys)
    assert code == 0, err
    assert "replaced once this one has finished" in err
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging, lock or backup left
    names = set(os.listdir(out))
    assert {"figure1.png", "figure1.pdf", *FILES, "checkpoint"} == names  # barrier.png/pdf went with the old run
    config, table, _ = read_results(out)
    assert config["experiment"] == "figure1" and config["seeds"] == 1 and table.per_run("seed").tolist() == [1]
    _, old, _ = read_results(tiny_run)  # seed 1 alone = seed 1 of the 2-seed run, bit for bit
    for series in ("orm", "prm"):
        a, b = old.where(series=series, seed=1), table.where(series=series)
        assert np.array_equal(a["track_log_lik"], b["track_log_lik"], equal_nan=True)
    record = json.loads((out / "env.json").read_text())["run"]
    assert record["seeds"] == [1] and record["profile"] == "default"
    assert record["command"] == shlex.join(["lpg", *argv, "--overwrite"])
    assert record["hostname"] and record["started"] and len(record["code"]) == 16
    if (Path(cli.__file__).parents[1] / ".git").exists():
        assert len(record["git_commit"]) == 40
    from lpg.results import umask

    for name in FILES:
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask(), name


@pytest.fixture
def finished_copy(tiny_run, tmp_path, monkeypatch) -> Path:
    """``tmp_path/out``: a copy of the finished tiny run, where computing a sweep or
    drawing a figure fails the test (a run that must only read or refuse)."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)
    monkeypatch.setattr(spec, "sweep", never)
    no_figures(monkeypatch)
    return out


def test_a_finished_run_with_the_same_settings_is_reused(finished_copy, tmp_path, capsys):
    out = finished_copy
    before = snapshot(tmp_path)
    code, text, err = run_cli(["run", "barrier", "--seeds", "2", *tiny_args(), "--out", str(out)], capsys)
    assert code == 0 and "already holds this run" in err and "--overwrite computes it again" in err
    assert "ORM" in text
    assert snapshot(tmp_path) == before


def test_resume_names_every_conflicting_setting(finished_copy, tmp_path, capsys):
    out = finished_copy
    before = snapshot(tmp_path)
    argv = ["run", "barrier", "--out", str(out), "--resume"]
    code, text, err = run_cli([*argv, "--set", "N=13", "pg_lr=0.2", "k=4", "--seeds", "1", "--profile", "quick"],
                              capsys)
    assert code == 2 and text == ""
    line = one_error_line(err, str(out), "N (recorded 12, given 13)", "pg_lr (recorded 0.1, given 0.2)",
                          "--seeds (recorded 2, given 1)", "--profile (recorded default, given quick)")
    assert "k (" not in line  # k=4 is the recorded value: no conflict
    # More seeds extend the recorded ones only from the same first seed; without --resume, the hint.
    code, text, err = run_cli([*argv, "--seeds", "4", "--first-seed", "1"], capsys)
    assert code == 2
    one_error_line(err, "--first-seed (recorded 0, given 1)", "--seeds (recorded 2, given 4)")
    code, text, err = run_cli(["run", "barrier", "--seeds", "4", *tiny_args(), "--out", str(out)], capsys)
    assert code == 2
    one_error_line(err, "seeds (recorded 0..1, now 0..3)", "--overwrite", "--resume to add seeds 2..3")
    code, text, err = run_cli([*argv, "--set", "N=12", "--seeds", "2"], capsys)  # the recorded values
    assert code == 0 and "nothing to resume" in err
    assert snapshot(tmp_path) == before
    # A misspelled --out: nothing to resume, and nothing created.
    code, text, err = run_cli(["run", "barrier", "--out", str(tmp_path / "ot"), "--resume"], capsys)
    assert code == 2
    one_error_line(err, "nothing to resume", str(tmp_path / "ot"))
    assert snapshot(tmp_path) == before


def test_a_second_run_into_the_same_out_is_locked_out(finished_copy, tmp_path, capsys):
    from lpg import results

    out = finished_copy
    argv = ["run", "barrier", "--seeds", "2", *tiny_args(), "--out", str(out)]
    live = {"pid": os.getpid(), "pid_start": results._pid_start(os.getpid()), "hostname": results.socket.gethostname(),
            "started": "now", "command": "lpg run barrier"}
    lock_file(out).write_text(json.dumps(live))
    before = snapshot(tmp_path)
    code, text, err = run_cli(argv, capsys)
    assert code == 1 and text == ""
    one_error_line(err, str(out), "in use by another lpg run", f"pid {os.getpid()}", str(lock_file(out)))
    assert snapshot(tmp_path) == before  # its lock stays
    # The lock of a process that is gone is stale: taken over, and removed at the end.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_file(out).write_text(json.dumps({**live, "pid": int(dead.stdout)}))
    code, text, err = run_cli(argv, capsys)
    assert code == 0 and "already holds this run" in err
    assert not lock_file(out).exists()


def test_a_corrupted_checkpoint_chunk_on_resume_is_one_line(tiny_run, tmp_path, capsys):
    """An interrupted run (staged, 2 chunks) whose second chunk is truncated: --resume
    names the chunk and what to do; done, it resumes to the uninterrupted results."""
    out = tmp_path / "out"
    stage = staging_dir(out)
    shutil.copytree(tiny_run, stage)
    for name in ("summary.json", "results.npz", "barrier.png", "barrier.pdf"):
        (stage / name).unlink()
    chunk = stage / "checkpoint" / "runs" / "chunk_000001.npz"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    code, text, err = run_cli(["plot", str(out)], capsys)  # nothing finished to plot
    assert code == 2
    one_error_line(err, "interrupted", shlex.join(["lpg", "run", "barrier", "--out", str(out), "--resume"]))
    before = snapshot(tmp_path)
    code, text, err = run_cli(["run", "barrier", "--out", str(out), "--resume"], capsys)
    assert code == 1 and text == ""
    one_error_line(err, str(chunk), "truncated or corrupted", "delete it")
    after = snapshot(tmp_path)
    env = str(stage / "env.json")
    assert {k: v for k, v in after.items() if k != env} == {k: v for k, v in before.items() if k != env}
    assert not out.exists() and not lock_file(out).exists()
    chunk.unlink()
    code, text, err = run_cli(["run", "barrier", "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    _, resumed, _ = read_results(out)
    _, straight, _ = read_results(tiny_run)
    for k in straight.columns:
        assert np.array_equal(resumed[k], straight[k], equal_nan=straight[k].dtype.kind == "f"), k


def test_plot_faults_are_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    (tmp_path / "a file").write_text("mine\n")
    code, text, err = run_cli(["plot", str(tmp_path / "a file")], capsys)
    assert code == 2
    one_error_line(err, str(tmp_path / "a file"), "is a file")
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    npz = out / "results.npz"
    npz.write_bytes(npz.read_bytes()[:1000])
    before = snapshot(tmp_path)
    code, text, err = run_cli(["plot", str(out)], capsys)
    assert code == 1
    one_error_line(err, str(npz), "truncated or corrupted", "--overwrite")
    assert snapshot(tmp_path) == before
    monkeypatch.setenv("LPG_DEBUG", "1")
    from lpg.results import Fault

    with pytest.raises(Fault):
        cli.main(["plot", str(out)])


def test_an_unexpected_error_is_one_line_unless_lpg_debug(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom\nand a second line")

    monkeypatch.setattr(spec.Experiment, "run", boom)
    argv = ["run", "barrier", "--seeds", "1", *tiny_args(), "--out", str(tmp_path / "out")]
    code, text, err = run_cli(argv, capsys)
    assert code == 1
    one_error_line(err, "RuntimeError: boom", "LPG_DEBUG=1")
    monkeypatch.setenv("LPG_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(argv)


def test_a_write_that_fails_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A read-only file system (simulated: it cannot be made as root) fails the first
    write of the run's record: one line, and no staging directory or lock is left."""
    import errno

    from lpg import results

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(results.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(spec, "sweep", never)
    out = tmp_path / "out"
    code, text, err = run_cli(["run", "barrier", "--seeds", "1", *tiny_args(), "--out", str(out)], capsys)
    assert code == 1
    one_error_line(err, "read-only file system", "--out")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_out_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(spec, "sweep", never)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, text, err = run_cli(["run", "barrier", "--seeds", "1", *tiny_args(), "--out", str(out)], capsys)
        assert code == 1
        one_error_line(err, str(out), "not writable")
        assert os.listdir(tmp_path) == ["ro"] and os.listdir(out) == []
    finally:
        out.chmod(0o755)


def test_distributed_without_a_cluster_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "SLURM", "OMPI"))}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lpg.cli", "run", "barrier", "--distributed", "--seeds", "1",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    one_error_line(proc.stderr, "--distributed", "no cluster")
    assert not out.exists()


def test_a_closed_pipe_ends_quietly():
    """``lpg list | head -0``: no traceback, status 141 as if killed by SIGPIPE."""
    proc = subprocess.Popen([sys.executable, "-m", "lpg.cli", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == cli.EXIT_BROKEN_PIPE and err == ""


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


def test_seeds_added_but_refused_for_memory_leave_the_run_as_it_was(tiny_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)
    before = snapshot(tmp_path)
    monkeypatch.setenv("LPG_MEMORY", "1K")
    code, _, err = run_cli(["run", "barrier", "--out", str(out), "--resume", "--seeds", "3"], capsys)
    assert code == 2
    one_error_line(err, "barrier:runs", "needs about", "set by LPG_MEMORY")
    assert snapshot(tmp_path) == before  # no staging directory left, the finished run untouched
