"""Sweeps (lpg/sweep.py): the run axis, chunked = unchunked, a single run = its row of
a sweep, sharded over 4 devices = 1 device, resumed = uninterrupted (bit-identical),
checkpoints that survive an interruption, and input validation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lpg.sweep

from lpg.sweep import auto_vmap_size, format_log_count, run_axis, run_key, sweep

# One run: a small teacher (fixed), the response length and the learning rate traced,
# PG with the process reward on the exact event simulation (0/1 rewards), so the outputs
# hold sampled events, weights and a 'log_queries' leaf. The same source runs in the
# multi-device subprocess.
RUN_SOURCE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, lpg

    def one_run(key, lr, length):
        task = lpg.make_teacher(jax.random.PRNGKey(3), d=6, k=3, N=4)
        problem = lpg.make_problem(task, key=jax.random.PRNGKey(4), n_test=32, length=length)
        alg = lpg.PolicyGradient("process", batch_size=4)
        res = lpg.train(alg, problem, lpg.hyper(lr=lr), key, steps=12, log_every=4)
        return {"curves": res.curves, "w": res.state.w}
    """
)
_ns: dict = {}
exec(RUN_SOURCE, _ns)
one_run = _ns["one_run"]
GRID = {"lr": [0.5, 2.0], "length": [2, 4]}
CHUNK = 4  # every chunked sweep below uses it, so its compiled program is shared


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def reference():
    return sweep(one_run, GRID, seeds=3)


@pytest.fixture(scope="module")
def chunked():
    return sweep(one_run, GRID, seeds=3, chunk_size=CHUNK)


def test_run_axis_is_grid_major_seed_minor():
    settings, seed = run_axis({"a": [1.0, 2.0], "b": [10, 20, 30]}, seeds=[5, 7])
    assert settings["a"].dtype == np.float32 and settings["b"].dtype == np.int32
    expected = [(a, b, s) for a in (1.0, 2.0) for b in (10, 20, 30) for s in (5, 7)]
    assert list(zip(settings["a"].tolist(), settings["b"].tolist(), seed.tolist())) == expected


def test_shapes_and_settings(reference):
    R = 2 * 2 * 3
    assert reference.seed.tolist() == [0, 1, 2] * 4
    assert reference.settings["length"].tolist() == [2, 2, 2, 4, 4, 4] * 2
    assert all(a.shape[0] == R for a in leaves(reference.outputs))
    assert isinstance(reference.outputs["curves"].log_queries, np.ndarray)
    assert reference.compile_s > 0 and reference.run_s > 0


def test_chunked_equals_unchunked(reference, chunked):
    for a, b in zip(leaves(reference.outputs), leaves(chunked.outputs)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("vmap_size", [1, 3])
def test_runs_a_few_at_a_time_equal_one_vmap(reference, vmap_size):
    # lax.map over groups of vmap_size (3 does not divide the 12 runs: a short last group)
    part = sweep(one_run, GRID, seeds=3, vmap_size=vmap_size)
    for a, b in zip(leaves(reference.outputs), leaves(part.outputs)):
        if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


def test_auto_vmap_size_is_one_at_a_time_on_a_cpu(reference):
    assert auto_vmap_size() == (1 if jax.default_backend() == "cpu" else None)
    auto = sweep(one_run, GRID, seeds=3, vmap_size="auto")
    for a, b in zip(leaves(reference.outputs), leaves(auto.outputs)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


def test_single_run_equals_its_row_of_the_sweep(reference):
    row = 1 * 6 + 0 * 3 + 2  # lr = 2.0, length = 2, seed 2
    assert reference.settings["lr"][row] == 2.0 and reference.settings["length"][row] == 2
    alone = jax.jit(one_run)(run_key(2), jnp.float32(2.0), jnp.int32(2))
    for a, b in zip(leaves(alone), leaves(reference.outputs)):
        np.testing.assert_allclose(a, b[row], rtol=2e-6, atol=1e-6)
    assert np.array_equal(run_key(2), jax.random.PRNGKey(2))


def test_padding_of_the_last_chunk_is_dropped(chunked):
    part = sweep(one_run, GRID, seeds=[0, 1, 2, 5], chunk_size=CHUNK * 3)  # 16 runs in chunks of 12: 8 padded
    rows = [i for i, s in enumerate(part.seed) if s != 5]
    assert part.seed.shape == (16,)
    for a, b in zip(leaves(chunked.outputs), leaves(part.outputs)):
        np.testing.assert_allclose(a, b[rows], rtol=2e-6, atol=1e-6)


def test_resume_after_interruption_is_bit_identical(tmp_path, chunked):
    full = chunked
    calls = []

    def stop_after_first(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, on_chunk=stop_after_first)
    assert calls == [4]
    files = sorted(os.listdir(tmp_path))
    assert files == ["chunk_000000.npz", "sweep.json"]  # nothing half-written
    resumed_calls = []
    resumed = sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, resume=True,
                    on_chunk=lambda d, t: resumed_calls.append(d))
    assert resumed_calls == [8, 12]  # only the missing chunks were computed
    for a, b in zip(leaves(full.outputs), leaves(resumed.outputs)):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    # A finished checkpoint resumes without computing anything.
    again = sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, resume=True)
    assert again.compile_s == 0.0 and again.run_s == 0.0
    for a, b in zip(leaves(full.outputs), leaves(again.outputs)):
        assert np.array_equal(a, b, equal_nan=True)


def test_resume_refuses_a_different_sweep(tmp_path):
    sweep(one_run, GRID, seeds=2, chunk_size=CHUNK, out_dir=tmp_path)
    with pytest.raises(ValueError, match="different sweep.*seeds"):
        sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, resume=True)
    # nor one written by other lpg source code
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lpg.sweep, "code_digest", lambda: "edited-source")
        with pytest.raises(ValueError, match="different sweep.*code"):
            sweep(one_run, GRID, seeds=2, chunk_size=CHUNK, out_dir=tmp_path, resume=True)
    # chunks computed a few runs at a time round differently from one vmap
    with pytest.raises(ValueError, match="different sweep.*vmap_size"):
        sweep(one_run, GRID, seeds=2, chunk_size=CHUNK, out_dir=tmp_path, resume=True, vmap_size=2)


def test_a_corrupted_chunk_is_named_and_recomputed_once_deleted(tmp_path, chunked):
    from lpg.results import Fault

    sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path)
    chunk = tmp_path / "chunk_000001.npz"
    good = chunk.read_bytes()
    chunk.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(Fault, match=r"chunk_000001\.npz is truncated or corrupted.*delete it"):
        sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, resume=True)
    np.savez(chunk, leaf_0=np.zeros(3))  # a valid file, but not this sweep's arrays
    with pytest.raises(Fault, match=r"chunk_000001\.npz is corrupted \(its arrays are not those of this sweep\)"):
        sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, resume=True)
    (tmp_path / "sweep.json").write_text("{")
    with pytest.raises(Fault, match=r"sweep\.json is truncated or corrupted"):
        sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, resume=True)
    sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path)  # whole again
    chunk.unlink()
    calls = []
    resumed = sweep(one_run, GRID, seeds=3, chunk_size=CHUNK, out_dir=tmp_path, resume=True,
                    on_chunk=lambda d, t: calls.append(d))
    assert calls == [8, 12]  # the deleted chunk and those after it
    for a, b in zip(leaves(chunked.outputs), leaves(resumed.outputs)):
        assert np.array_equal(a, b, equal_nan=True)


def test_seed_lists():
    assert lpg.sweep.seed_list(3).tolist() == [0, 1, 2]
    assert lpg.sweep.seed_list(range(5, 8)).tolist() == [5, 6, 7]
    assert lpg.sweep.seed_list([9, 2]).tolist() == [9, 2]
    for bad in (99999999999, range(2**31 - 1, 2**31 + 1), [2**31], 0, range(0)):
        with pytest.raises(ValueError, match="seed"):
            lpg.sweep.seed_list(bad)
    _, seed = run_axis({"a": [1.0]}, range(4, 6))
    assert seed.tolist() == [4, 5]


def test_sharded_over_four_devices_equals_one_device(reference, tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(
        RUN_SOURCE
        + textwrap.dedent(
            f"""
            import sys, numpy as np
            from lpg.sweep import sweep
            assert jax.device_count() == 4, jax.devices()
            out = sweep(one_run, {GRID!r}, seeds=3, chunk_size=8)  # 2 chunks, 2 runs per device
            one_by_one = sweep(one_run, {GRID!r}, seeds=3, chunk_size=8, vmap_size=1)
            leaves = jax.tree_util.tree_leaves(out.outputs) + jax.tree_util.tree_leaves(one_by_one.outputs)
            np.savez(sys.argv[1], *leaves)
            """
        )
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = tmp_path / "sharded.npz"
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out) as z:
        sharded = [z[f"arr_{i}"] for i in range(len(z.files))]
    ref = leaves(reference.outputs)
    assert len(sharded) == 2 * len(ref)
    for a, b in zip(ref + ref, sharded):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


def test_progress_line_reports_throughput_and_queries(capsys):
    sweep(one_run, GRID, seeds=1, chunk_size=CHUNK, progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err
    assert "4/4 runs" in err and "runs/s" in err and "queries/s" in err and "ETA" in err


def test_quiet_off_a_terminal_before_the_first_interval(capsys, monkeypatch):
    monkeypatch.setenv("LPG_PROGRESS_EVERY", "3600")  # a line an hour (lpg.progress): none in this sweep
    sweep(one_run, GRID, seeds=1, chunk_size=CHUNK)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grid={"lr": []}), "grid\\['lr'\\]"),
        (dict(grid={"lr": ["fast"]}), "grid\\['lr'\\]"),
        (dict(grid={"lr": [float("nan")]}), "nan"),
        (dict(grid={"bad-name": [1.0]}), "identifiers"),
        (dict(grid=[("lr", [1.0])]), "grid must be a dict"),
        (dict(seeds=0), "seeds"),
        (dict(seeds=[-1]), "seed"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(vmap_size=0), "vmap_size"),
        (dict(vmap_size=1.5), "vmap_size"),
        (dict(vmap_size="fast"), "vmap_size.*'auto'"),
    ],
)
def test_bad_inputs_raise_before_compiling(kwargs, match):
    def never(key, **settings):
        raise AssertionError("fn must not be traced for bad input")

    args = dict(grid={"lr": [1.0]}, seeds=1) | kwargs
    grid = args.pop("grid")
    with pytest.raises(ValueError, match=match):
        sweep(never, grid, **args)


def test_format_log_count():
    assert format_log_count(-np.inf) == "0"
    assert format_log_count(np.log(1234.0)) == "1.23e+03"
    assert format_log_count(128 * np.log(32.0)) == "10^192.7"
