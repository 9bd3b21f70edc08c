"""Results on disk (lpg/results.py): the bootstrap summary against independent
references, atomic writes that survive an interruption, and the results directory."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from lpg import results
from lpg.results import atomic_write_bytes, atomic_write_json, read_results, summarise, write_results


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
    arrays = {"curve": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), "seed": np.arange(3)}
    config = {"experiment": "demo", "lr": 0.1, "grid": [1, 2]}
    summary = {"error": summarise([0.1, 0.2, 0.3])}
    write_results(tmp_path / "out", config=config, arrays=arrays, summary=summary)
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == sorted(results.FILES)
    c, a, s = read_results(tmp_path / "out")
    assert c == config and s == json.loads(json.dumps(summary))
    for k, v in arrays.items():
        assert a[k].dtype == v.dtype and np.array_equal(a[k], v)
    env = json.loads((tmp_path / "out" / "env.json").read_text())
    for key in ("lpg", "jax", "backend", "devices", "dtype"):
        assert key in env
    assert env["dtype"] in ("float32", "float64")


def test_read_results_names_the_missing_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="results.npz"):
        read_results(tmp_path)


def test_write_results_rejects_object_arrays(tmp_path):
    with pytest.raises(ValueError, match="arrays\\['x'\\]"):
        write_results(tmp_path, config={}, arrays={"x": np.array([{}, 1], dtype=object)}, summary={})
    assert not (tmp_path / "config.json").exists()
