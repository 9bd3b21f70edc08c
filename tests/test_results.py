"""Results on disk (lpg/results.py): the bootstrap summary against independent
references, atomic writes that survive an interruption, and the results directory."""

from __future__ import annotations

import json
import math
import os

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
