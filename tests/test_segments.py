"""Segments within a run (:mod:`lpg.segments`, issue 12): a run's loops cut into segments
anywhere, their state carried out and back in, end bit-identical to the uninterrupted run
(``np.array_equal``, not a tolerance), whatever the batching over runs; a checkpointed
sweep saves its runs' loop states between segments, resumes from the last one saved after
an interruption (losing at most that segment) and ends with the results of a sweep that
was never interrupted; a damaged state file is one clear error."""

from __future__ import annotations

import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lpg
from lpg import segments
from lpg import sweep as sweep_module
from lpg.hitting import likelihood_at_least, run_until
from lpg.results import Fault

PRE, PG, MAX_HIT = 6, 12, 40  # steps of the three loops of RUN


def _run(key, lr):
    """One run with every kind of loop: pre-training (a loop of single steps), training
    with curves every 3 steps, and a hitting time that may stop early (checks every 2)."""
    k_task, k_test, k_pre, k_pg, k_hit = jax.random.split(key, 5)
    task = lpg.make_planted(k_task, k=3, N=3, gamma=0.6)
    base = lpg.pretrain(lpg.make_problem(task, key=k_test, n_test=8, track_x=task.contexts), k_pre, steps=PRE,
                        batch_size=4, lr=0.3)
    problem = lpg.make_problem(task, key=k_test, n_test=8, track_x=task.contexts, base=base)
    pg = lpg.PolicyGradient(lpg.rewards.Outcome(), advantage="batch_mean", batch_size=4)
    curves = lpg.train(pg, problem, lpg.hyper(lr=lr), k_pg, steps=PG, log_every=3, w0=base).curves
    hit = run_until(lpg.BestOfM(batch_size=2), problem, lpg.hyper(lr=1.0, log_m=3 * math.log(3)), k_hit,
                    max_steps=MAX_HIT, target=likelihood_at_least(0.3), check_every=2, w0=base)
    return {"curves": curves, "hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "base": base}


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def _assert_same(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)


KEYS = jnp.stack([lpg.run_key(s) for s in (0, 1, 2)])
LRS = jnp.asarray([0.5, 0.5, 2.0], jnp.float32)


def _batched(f, how):
    if how == "vmap":
        return jax.vmap(f)
    return lambda *a: jax.lax.map(lambda t: f(*t), a, batch_size=1)


def test_any_cut_gives_the_uninterrupted_run(how="map"):
    """Under ``lax.map`` over runs (a CPU's default); a ``vmap`` over runs (an
    accelerator's) is the sweep's below."""
    plain = jax.jit(_batched(_run, how))(KEYS, LRS)
    plan = segments.plan(_run, KEYS[0], LRS[0])
    assert len(plan.states) == 3 and plan.steps == PRE + PG + MAX_HIT
    assert plan.shared == (True, True, False)  # the hitting loop stops per run

    @jax.jit
    def advance(states, positions, budget):
        return _batched(lambda k, lr, s: segments.advance(_run, plan, s, positions, budget, k, lr), how)(
            KEYS, LRS, states)

    for budget in (1, 5, 13, 10**6):  # a step at a time, cuts inside blocks, at once
        states = jax.tree_util.tree_map(lambda s: jnp.zeros((3,) + s.shape, s.dtype), plan.states)
        calls = 0
        while True:
            positions = tuple(jnp.int32(s.pos[0]) for s in states)
            states, out, steps, finished = advance(states, positions, jnp.int32(budget))
            calls += 1
            if bool(jnp.all(finished)):
                break
            assert calls < 100
        assert calls >= min(-(-plan.steps // budget) // 3, 3)  # cut into segments (early hits shorten it)
        _assert_same(out, plain)


def _fn(key, lr):
    return _run(key, lr)


def _count_calls(monkeypatch, budget, stop_after=None):
    """Every segment gets ``budget`` steps; after ``stop_after`` calls of the compiled
    program a KeyboardInterrupt (as from Ctrl-C between two segments). Returns the list
    of the steps left (over every loop of a run) at each call."""
    calls = []
    monkeypatch.setenv("LPG_SEGMENT_S", "60")  # segments on (the tests' default is off: conftest)

    def next_budget(left, rate, seconds, first):
        if stop_after is not None and len(calls) >= stop_after:
            raise KeyboardInterrupt
        calls.append(left)
        return budget

    monkeypatch.setattr(segments, "next_budget", next_budget)
    return calls


def test_a_sweep_saves_segments_and_resumes_from_the_last(tmp_path, monkeypatch):
    grid = {"lr": [0.5, 2.0]}
    reference = sweep_module.sweep(_fn, grid, seeds=2, chunk_size=2, progress=False)  # no out_dir: no segments
    whole = _count_calls(monkeypatch, budget=7)
    uninterrupted = sweep_module.sweep(_fn, grid, seeds=2, chunk_size=2, out_dir=tmp_path / "whole", progress=False)
    _assert_same(uninterrupted.outputs, reference.outputs)
    assert whole[0] == PRE + PG + MAX_HIT and len(whole) > 6
    # Interrupted after 3 segments of the first chunk: the loop states of the third are on disk.
    out = tmp_path / "ckpt"
    _count_calls(monkeypatch, budget=7, stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        sweep_module.sweep(_fn, grid, seeds=2, chunk_size=2, out_dir=out, progress=False)
    part = out / "segment_000000.npz"
    assert part.is_file() and not (out / "chunk_000000.npz").exists()
    saved = np.load(part)["steps"]
    assert np.all(saved == PRE + PG + MAX_HIT - whole[3])  # where the uninterrupted sweep was then
    # A damaged state file is one clear error naming it.
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    (damaged / part.name).write_bytes(part.read_bytes()[:100])
    with pytest.raises(Fault, match=r"segment_000000\.npz.*delete it to compute this chunk from its start"):
        sweep_module.sweep(_fn, grid, seeds=2, chunk_size=2, out_dir=damaged, resume=True, progress=False)
    # Resumed: it continues from there (no segment computed twice) and ends with the results of
    # the uninterrupted sweep, and of the sweep without segments, bit for bit.
    calls = _count_calls(monkeypatch, budget=7)
    resumed = sweep_module.sweep(_fn, grid, seeds=2, chunk_size=2, out_dir=out, resume=True, progress=False)
    assert calls == whole[3:]
    _assert_same(resumed.outputs, reference.outputs)
    assert not list(out.glob("segment_*.npz"))  # a finished chunk's state file is removed
    # Resumed again (nothing left): the chunks are read, nothing is computed.
    calls = _count_calls(monkeypatch, budget=7)
    again = sweep_module.sweep(_fn, grid, seeds=2, chunk_size=2, out_dir=out, resume=True, progress=False)
    assert calls == [] and again.run_s == 0.0
    _assert_same(again.outputs, reference.outputs)


def test_segment_seconds_setting(monkeypatch):
    monkeypatch.delenv("LPG_SEGMENT_S", raising=False)
    assert sweep_module.segment_seconds() == sweep_module.SEGMENT_S == 60.0
    monkeypatch.setenv("LPG_SEGMENT_S", "0.5")
    assert sweep_module.segment_seconds() == 0.5
    for bad in ("-1", "nan", "inf", "soon"):
        monkeypatch.setenv("LPG_SEGMENT_S", bad)
        with pytest.raises(ValueError, match=f"LPG_SEGMENT_S must be a number of seconds >= 0, got '{bad}'"):
            sweep_module.segment_seconds()


def test_next_budget():
    assert segments.next_budget(1000, None, 60.0, first=50) == 50  # no rate yet
    assert segments.next_budget(1000, 2.0, 60.0, first=50) == 120  # 60 s at 2 steps/s
    assert segments.next_budget(150, 2.0, 60.0, first=50) == 150  # the rest, rather than a short last one
    assert segments.next_budget(1000, 1e-9, 60.0, first=50) == 1  # always some progress
