"""Results on disk (lpg/results.py): the bootstrap summary against independent
references, atomic writes that survive an interruption and honour the umask, the results
directory, and run directories: the lock, the decisions of ``plan_run`` (reuse, replace
only with overwrite, never a directory lpg did not write) and ``install``, which a crash
between its renames cannot break."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest

from lpg import results
from lpg.results import Table, atomic_write_bytes, atomic_write_json, read_results, summarise, write_results


def test_summarise_matches_numpy_and_ignores_nan(rng):
    v = rng.normal(3.0, 2.0, size=25)
    with_nan = np.concatenate([v, [np.nan, np.nan]])
    s = summarise(with_nan)
    assert s["n"] == 25
    assert s["mean"] == pytest.approx(float(np.mean(v)), rel=1e-12)
    assert s["median"] == pytest.approx(float(np.median(v)), rel=1e-12)
    lo, hi = s["ci95"]
    assert lo < s["mean"] < hi
    # The percentile bootstrap of a mean is close to the normal interval mean ± 1.96 σ/√n.
    half = 1.96 * np.std(v, ddof=0) / math.sqrt(v.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    json.dumps(results.to_jsonable(s), allow_nan=False)


def test_summarise_interval_covers_the_true_mean_about_95_percent(rng):
    # 400 independent samples of 30 normals: the interval must contain the true mean
    # in ~95% of them (percentile bootstrap undercovers slightly at n = 30). With 400
    # trials the binomial standard error is ~1.1%, so [0.89, 0.99] is a > 4 SE band.
    hits = 0
    for i in range(400):
        lo, hi = summarise(rng.normal(0.0, 1.0, size=30), n_boot=1000, seed=i)["ci95"]
        hits += lo <= 0.0 <= hi
    assert 0.89 <= hits / 400 <= 0.99


def test_summarise_degenerate_inputs():
    empty = summarise([np.nan, np.nan])
    assert empty["n"] == 0 and math.isnan(empty["mean"])
    assert results.to_jsonable(empty)["ci95"] == [None, None]
    one = summarise([2.5])
    assert one == {"mean": 2.5, "median": 2.5, "ci95": [2.5, 2.5], "n": 1}
    assert summarise([1.0, 2.0, 3.0], seed=7) == summarise([1.0, 2.0, 3.0], seed=7)
    with pytest.raises(ValueError, match="n_boot"):
        summarise([1.0], n_boot=0)


def test_atomic_write_leaves_old_file_and_no_temp_on_interrupt(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    atomic_write_bytes(path, b"old contents")

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new contents that never land")
    monkeypatch.undo()
    assert path.read_bytes() == b"old contents"
    assert sorted(os.listdir(tmp_path)) == ["data.bin"]


def test_atomic_json_is_strict(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3), "z": float("inf"), "p": (1, 2)})
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"x": 1.5, "y": [0, 1, 2], "z": None, "p": [1, 2]}
    assert "Infinity" not in text and "NaN" not in text
    with pytest.raises(ValueError, match="JSON"):
        atomic_write_json(tmp_path / "b.json", {"bad": object()})


def test_write_and_read_results_round_trip(tmp_path):
    columns = {"curve": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), "seed": np.arange(3),
               "part": np.array(["a", "a", "b"])}
    config = {"experiment": "demo", "lr": 0.1, "grid": [1, 2]}
    summary = {"error": summarise([0.1, 0.2, 0.3])}
    write_results(tmp_path / "out", config=config, table=Table(columns), summary=summary)
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == sorted(results.FILES)
    c, t, s = read_results(tmp_path / "out")
    assert c == config and s == json.loads(json.dumps(summary))
    for k, v in columns.items():
        assert t[k].dtype == v.dtype and np.array_equal(t[k], v)
    env = json.loads((tmp_path / "out" / "env.json").read_text())
    for key in ("lpg", "jax", "backend", "devices", "dtype"):
        assert key in env
    assert env["dtype"] in ("float32", "float64")


def test_read_results_names_the_missing_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="results.npz"):
        read_results(tmp_path)


def test_table_rejects_object_and_ragged_columns():
    with pytest.raises(ValueError, match="column 'x'.*object"):
        Table({"x": np.array([{}, 1], dtype=object)})
    with pytest.raises(ValueError, match="one length"):
        Table({"a": np.zeros(3), "b": np.zeros(2)})


def _toy_table():
    """Two runs of one series with 3 log points, one run of another series with 2."""
    return Table({"run": np.array([0, 0, 0, 1, 1, 1, 2, 2]), "series": np.array(["s"] * 6 + ["t"] * 2),
                  "step": np.array([0, 5, 10, 0, 5, 10, 0, 7]), "v": np.arange(8.0),
                  "rate": np.array([9.0, 9.0, 9.0, 8.0, 8.0, 8.0, 7.0, 7.0])})


def test_table_selections():
    t = _toy_table()
    assert t.where(step=-1)["v"].tolist() == [2.0, 5.0, 7.0]  # each run's last log point
    assert t.where(series="s").by_run("v").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert t.per_run("rate").tolist() == [9.0, 8.0, 7.0]
    assert t.where(series="t", step=0)["v"].tolist() == [6.0]
    with pytest.raises(ValueError, match="select one series"):
        t.by_run("v")
    with pytest.raises(KeyError, match="no column 'nope'"):
        t["nope"]


def test_table_concat_fills_missing_columns_and_pads_trailing_axes():
    a = Table({"x": np.ones((2, 3), np.float32), "n": np.array([1, 2]), "tag": np.array(["a", "b"])})
    b = Table({"x": np.zeros((1, 5), np.float32), "ok": np.array([True])})
    t = Table.concat([a, b])
    assert t["x"].shape == (3, 5) and np.all(np.isnan(t["x"][:2, 3:])) and np.all(t["x"][:2, :3] == 1)
    assert t["n"].tolist() == [1, 2, -1] and t["tag"].tolist() == ["a", "b", ""]
    assert t["ok"].tolist() == [False, False, True]


# ---------------------------------------------------------------------------------
# Files honour the umask; run directories (issue 12: nothing lost)
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert results.umask() == mask
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


def test_read_results_names_a_truncated_file(tmp_path):
    write_results(tmp_path, config={"experiment": "demo"}, table=Table({"x": np.arange(100.0)}), summary={})
    npz = tmp_path / "results.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(results.Fault, match=r"results\.npz is truncated or corrupted.*lpg run demo"):
        read_results(tmp_path)
    (tmp_path / "summary.json").write_text('{"cut')
    write_results(tmp_path / "b", config={"experiment": "demo"}, table=Table({"x": np.arange(3.0)}), summary={})
    (tmp_path / "b" / "summary.json").write_text('{"cut')
    with pytest.raises(results.Fault, match=r"summary\.json is truncated or corrupted"):
        read_results(tmp_path / "b")


def test_run_lock_keeps_a_second_run_out_and_takes_over_a_stale_one(tmp_path):
    out = tmp_path / "out"
    lock = results.lock_file(out)
    with results.RunLock(out, "lpg run demo"):
        held = json.loads(lock.read_text())
        assert held["pid"] == os.getpid() and held["command"] == "lpg run demo"
        with pytest.raises(results.Fault, match=f"in use by another lpg run \\(pid {os.getpid()}, started"):
            with results.RunLock(out):
                pass
        assert lock.exists()  # the refused one leaves the holder's lock alone
    assert not lock.exists() and not out.exists()
    # Stale: a dead process, a reused pid (another start time), an unreadable lock.
    for stale in ({**held, "pid": 2**22 + 12345}, {**held, "pid_start": "0"}, "not json"):
        lock.write_text(stale if isinstance(stale, str) else json.dumps(stale))
        with results.RunLock(out):
            assert json.loads(lock.read_text())["pid_start"] == held["pid_start"]  # ours now
        assert not lock.exists()
    # Another host's lock cannot be checked from here: it holds.
    lock.write_text(json.dumps({**held, "hostname": "elsewhere"}))
    with pytest.raises(results.Fault, match="on host elsewhere.*delete"):
        with results.RunLock(out):
            pass


def fake_run(d, *, experiment="demo", seeds=(0, 1), finished=True, code=None, **settings):
    """A results directory as lpg writes it, without computing anything."""
    config = {"experiment": experiment, "seeds": len(seeds), "lr": 0.1, **settings}
    write_results(d, config=config, table=Table({"x": np.arange(3.0)}), summary={"done": True},
                  env={"lpg_code": code or results.code_digest(), "run": {"seeds": list(seeds)}})
    if not finished:
        (d / "summary.json").unlink()
        (d / "results.npz").unlink()
    return config


def tree(root) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_plan_run_decides_without_losing_anything(tmp_path):
    plan = results.plan_run
    out, stage = tmp_path / "out", results.staging_dir(tmp_path / "out")
    want = {"experiment": "demo", "seeds": 2, "lr": 0.1}
    # Nothing there: a fresh run, staged with its record; out itself is made only at the end.
    p = plan(out, want, [0, 1], record={"profile": "quick"})
    assert p.action == "fresh" and p.stage == stage and not out.exists()
    assert json.loads((stage / "config.json").read_text()) == want
    record = json.loads((stage / "env.json").read_text())["run"]
    assert record["seeds"] == [0, 1] and record["profile"] == "quick" and record["code"] == results.code_digest()
    # An interrupted run in the staging directory: kept unless --overwrite, resumed with --resume.
    before = tree(tmp_path)
    with pytest.raises(ValueError, match="interrupted run.*--resume.*--overwrite"):
        plan(out, want, [0, 1])
    assert tree(tmp_path) == before
    with pytest.raises(ValueError, match=r"lr \(recorded 0.1, now 0.2\)"):
        plan(out, {**want, "lr": 0.2}, [0, 1], resume=True)
    with pytest.raises(ValueError, match=r"seeds \(recorded 0..1, now 0..2\)"):
        plan(out, {**want, "seeds": 3}, [0, 1, 2], resume=True)
    assert tree(tmp_path) == before
    assert plan(out, want, [0, 1], resume=True, record={"command": "lpg again"}).action == "resume"
    assert json.loads((stage / "env.json").read_text())["run"]["resumed"][0]["command"] == "lpg again"
    assert plan(out, want, [0, 1], overwrite=True).action == "fresh"  # discarded, started again
    shutil.rmtree(stage)
    # A finished run: the same one is reused; another needs --overwrite, and stays until replaced.
    fake_run(out)
    before = tree(tmp_path)
    assert plan(out, want, [0, 1]).action == "reuse"
    assert plan(out, want, [0, 1], resume=True).action == "reuse"
    with pytest.raises(ValueError, match=r"finished demo run that differs: lr \(recorded 0.1, now 0.2\).*--overwrite"):
        plan(out, {**want, "lr": 0.2}, [0, 1])
    with pytest.raises(ValueError, match=r"seeds \(recorded 0..1, now 5..6\)"):
        plan(out, want, [5, 6])
    assert tree(tmp_path) == before
    assert plan(out, {**want, "lr": 0.2}, [0, 1], overwrite=True).action == "fresh"
    assert {k: v for k, v in tree(tmp_path).items() if k.startswith("out/")} == {
        k: v for k, v in before.items() if k.startswith("out/")}
    shutil.rmtree(stage)
    # Computed by other lpg code: not reused silently.
    fake_run(out, code="0123456789abcdef")
    with pytest.raises(ValueError, match="lpg code"):
        plan(out, want, [0, 1])
    shutil.rmtree(out)
    # Not lpg's: refused whatever the flags; resume with nothing to resume.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"lr": 0.1}')
    for kwargs in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ValueError, match="holds no lpg run"):
            plan(tmp_path / "mine", want, [0, 1], **kwargs)
    with pytest.raises(ValueError, match="nothing to resume"):
        plan(tmp_path / "new", want, [0, 1], resume=True)
    with pytest.raises(ValueError, match="is where a run into"):
        plan(stage, want, [0, 1])
    assert sorted(os.listdir(tmp_path)) == ["mine"]


def test_install_replaces_an_earlier_run_and_finishes_after_a_crash(tmp_path, monkeypatch):
    out, stage = tmp_path / "out", results.staging_dir(tmp_path / "out")
    want = fake_run(out, lr=0.1)
    (out / "demo.png").write_bytes(b"old figure")
    fake_run(stage, lr=0.2)
    new = tree(stage)
    results.install(stage, out)
    assert tree(out) == new and sorted(os.listdir(tmp_path)) == ["out"]  # the old figure went with the old run
    # A crash between the two renames (the earlier run set aside, the new one not yet in place)...
    fake_run(stage, lr=0.3)
    new = tree(stage)
    real_rename, calls = os.rename, []

    def crash_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(results.os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        results.install(stage, out)
    monkeypatch.undo()
    assert not out.exists() and stage.exists()
    # ... is finished by the next run into out.
    assert results.plan_run(out, {**want, "lr": 0.3}, [0, 1], resume=True).action == "reuse"
    assert tree(out) == new and sorted(os.listdir(tmp_path)) == ["out"]
    # An install refuses to replace files lpg did not write that appeared meanwhile.
    fake_run(stage, lr=0.4)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(results.Fault, match="notes.txt.*stays in"):
        results.install(stage, out)
    assert (out / "notes.txt").read_text() == "mine" and stage.exists()
