"""Live progress (lpg/progress.py): the line off a terminal at its cadence and the bar on
one (a fake clock), the steps reported from inside compiled sweeps counted exactly (one
``vmap``, one run at a time, nested ``vmap``; lpg.pretrain + lpg.train, and run_until with
hits, censored runs and runs that start on target), outputs bit-identical with the
reports compiled in or not and with a tracker open or not, and ``LPG_PROGRESS=0``."""

from __future__ import annotations

import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lpg
from lpg import progress
from lpg.hitting import error_at_most, run_until
from lpg.progress import Tracker
from lpg.sweep import sweep

PRE, STEPS, LOG_EVERY = 5, 110, 2  # 55 log points: a report every 2 points, the last one alone
BUDGET, CHECK = 150, 2  # 75 checks: a report every 2 checks
GRID_TRAIN = {"lr": [0.5, 2.0]}
# lr 0.5 spends the budget (censored), lr 2.0 hits, eps 0.999 holds before the first step.
GRID_HIT = {"lr": [0.5, 2.0], "eps": [0.3, 0.999]}
SEEDS, CHUNK = 2, 4  # 4 and 8 runs in chunks of 4: no padding


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _problem(base=None):
    task = lpg.make_teacher(jax.random.PRNGKey(3), d=6, k=3, N=4)
    return lpg.make_problem(task, key=jax.random.PRNGKey(4), n_test=16, base=base)


def train_run(key, lr):
    base = lpg.pretrain(_problem(), jax.random.fold_in(key, 1), steps=PRE, batch_size=4)
    res = lpg.train(lpg.PolicyGradient("process", batch_size=4), _problem(base), lpg.hyper(lr=lr), key, steps=STEPS,
                    log_every=LOG_EVERY)
    return {"curves": res.curves, "w": res.state.w}


def hit_run(key, lr, eps):
    return run_until(lpg.PolicyGradient("process", batch_size=4), _problem(), lpg.hyper(lr=lr), key,
                     max_steps=BUDGET, target=error_at_most(eps), check_every=CHECK)


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def assert_same_bits(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------------
# What is shown
# ---------------------------------------------------------------------------------


def test_off_a_terminal_one_line_per_interval_with_runs_steps_elapsed_eta():
    clock, out = FakeClock(), io.StringIO()
    bar = Tracker("demo", 4, mode="lines", every=10.0, stream=out, clock=clock)
    clock.t += 4.0
    bar.poll()
    assert out.getvalue() == ""  # nothing before the first interval
    clock.t += 7.0  # 11 s: still compiling
    bar.poll()
    assert out.getvalue() == "demo: compiling… 0:11\n"
    clock.t += 1.0
    bar.begin(steps_total=400)  # computing from 12 s on
    times = []
    for _ in range(12):  # every 3 s until 48 s, 10 steps a second
        clock.t += 3.0
        bar.add_steps(30)
        before = out.getvalue().count("\n")
        bar.poll()
        if out.getvalue().count("\n") > before:
            times.append(clock.t - 100.0)
    assert times == [21.0, 30.0, 42.0]  # one line in each 10 s interval, the first one seen
    last = out.getvalue().splitlines()[-1]
    # at 42 s: 30 s computing, 300 of 400 steps -> 100 more steps at 10/s
    assert last == "demo: 0/4 runs  300/400 steps  0:30 elapsed  ETA 0:10"
    bar.chunk_done(4, np.log(1e6), steps_done=400)
    bar.close()  # a sweep that printed lines ends with one
    assert out.getvalue().splitlines()[-1] == "demo: 4/4 runs  400/400 steps  0:36 elapsed  ETA 0:00  0.111 runs/s  " \
                                              "2.78e+04 queries/s"


def test_off_a_terminal_a_short_sweep_prints_nothing_unless_asked():
    for show, lines in ((None, 0), (True, 1)):
        clock, out = FakeClock(), io.StringIO()
        bar = Tracker("demo", 2, show=show, every=10.0, stream=out, clock=clock)
        assert bar.mode == "lines"
        bar.begin(steps_total=20)
        clock.t += 2.0
        bar.add_steps(20)
        bar.chunk_done(2, steps_done=20)
        bar.close()
        assert out.getvalue().count("\n") == lines
        if lines:
            assert out.getvalue().startswith("demo: 2/2 runs  20/20 steps  0:02 elapsed  ETA 0:00  1 runs/s")


def test_on_a_terminal_a_bar_redrawn_in_place_at_most_ten_times_a_second():
    clock, out = FakeClock(), Terminal()
    bar = Tracker("demo", 8, stream=out, clock=clock)
    assert bar.mode == "bar"
    bar.begin(steps_total=1000)
    draws = 0
    for _ in range(128):  # 128 polls 1/64 s apart: 2 s
        clock.t += 1 / 64
        bar.add_steps(4)
        before = out.getvalue().count("\r")
        bar.poll()
        draws += out.getvalue().count("\r") - before
    assert 15 <= draws <= 21
    bar.poll(force=True)
    assert "\n" not in out.getvalue()
    frame = out.getvalue().split("\r")[-1]
    assert frame == "demo: [############............]  51%  0/8 runs  512/1000 steps  0:02 elapsed  ETA 0:02"
    bar.poll(force=True)  # the same line: not drawn again
    bar.close()
    assert out.getvalue().endswith("ETA 0:02\n") and out.getvalue().count("512/1000") == 1


def test_a_bad_interval_is_one_error_before_anything_runs(monkeypatch):
    monkeypatch.setenv("LPG_PROGRESS_EVERY", "soon")
    with pytest.raises(ValueError, match="LPG_PROGRESS_EVERY must be a number of seconds > 0, got 'soon'"):
        sweep(lambda key: key, {}, seeds=1)


def test_lpg_progress_0_prints_nothing(monkeypatch, capsys):
    monkeypatch.setenv("LPG_PROGRESS", "0")
    monkeypatch.setenv("LPG_PROGRESS_EVERY", "0.2")
    sweep(train_run, GRID_TRAIN, seeds=SEEDS, chunk_size=CHUNK, progress=True, desc="demo")
    assert capsys.readouterr().err == ""  # progress=True, yet nothing with LPG_PROGRESS=0
    clock, out = FakeClock(), Terminal()
    bar = Tracker("demo", 2, stream=out, clock=clock)
    bar.begin(steps_total=2)
    clock.t += 60.0
    bar.poll()
    bar.close()
    assert bar.mode == "off" and out.getvalue() == ""


# ---------------------------------------------------------------------------------
# The steps reported from inside compiled sweeps
# ---------------------------------------------------------------------------------


@pytest.fixture
def reported(monkeypatch):
    """Steps reported by the callbacks (not the floor a finished chunk sets) and the
    totals the sweep expected."""
    seen = {"steps": 0, "totals": []}
    add, begin = Tracker.add_steps, Tracker.begin

    def add_steps(self, n):
        seen["steps"] += n
        add(self, n)

    def begin_(self, **kw):
        seen["totals"].append(kw["steps_total"])
        begin(self, **kw)

    monkeypatch.setattr(Tracker, "add_steps", add_steps)
    monkeypatch.setattr(Tracker, "begin", begin_)
    return seen


@pytest.mark.parametrize("vmap_size", [None, 1], ids=["one vmap", "one at a time"])
def test_train_and_pretrain_steps_are_counted_exactly(vmap_size, reported):
    res = sweep(train_run, GRID_TRAIN, seeds=SEEDS, chunk_size=CHUNK, vmap_size=vmap_size, progress=False)
    runs = res.seed.size
    assert reported["totals"] == [runs * (PRE + STEPS)]
    assert reported["steps"] == runs * (PRE + STEPS)


@pytest.mark.parametrize("vmap_size", [None, 1], ids=["one vmap", "one at a time"])
def test_hitting_runs_count_their_whole_budget(vmap_size, reported):
    res = sweep(hit_run, GRID_HIT, seeds=SEEDS, chunk_size=CHUNK, vmap_size=vmap_size, progress=False)
    hit, steps = res.outputs.hit, res.outputs.steps
    assert (~hit).any() and (hit & (steps > 0)).any() and (steps == 0).any()  # censored, hit, on target at once
    assert reported["totals"] == [res.seed.size * BUDGET]
    assert reported["steps"] == res.seed.size * BUDGET


def test_nested_and_batched_reports(monkeypatch):
    monkeypatch.setattr(progress, "REPORTS_PER_LOOP", 15)

    def run(x):
        progress.report_done(3, after=0, like=x)  # 3 steps per run, however the runs are batched
        progress.report_done(7, after=x.astype(jnp.int32), like=x)  # a batched 'after'
        progress.report_done(100, after=x.astype(jnp.int32) - 6, like=x)  # after < 0 for every run: no report

        def point(_, i):  # 44 points 2 steps apart: a report every 3 points, and at the last 2
            progress.report_at_point(i, 44, 2, after=i, like=x)
            return None, None

        jax.lax.scan(point, None, jnp.arange(44))
        # the rest of 10 steps after 0, 1 or 2 reports of 4: the batch's largest count, 2, is taken
        progress.report_rest(10, 4, x.astype(jnp.int32) % 3, like=x)
        return x

    with Tracker(mode="off") as bar:
        x = jnp.arange(6.0).reshape(2, 3)
        jax.block_until_ready(jax.jit(jax.vmap(jax.vmap(run)))(x))
        jax.effects_barrier()
    assert progress.stride(44) == 3
    assert bar.steps_done == 6 * (3 + 7 + 88 + 2)
    grad = jax.grad(lambda v: (progress.report_done(1, after=0, like=v), jnp.sum(v**2))[1])(jnp.ones(3))
    np.testing.assert_array_equal(grad, 2.0)


# ---------------------------------------------------------------------------------
# The reports never change a number
# ---------------------------------------------------------------------------------


def _runs(grid):
    settings, seed = lpg.sweep.run_axis(grid, SEEDS)
    keys = jnp.stack([lpg.sweep.run_key(int(s)) for s in seed])
    return keys, {k: jnp.asarray(v) for k, v in settings.items()}


@pytest.mark.parametrize("fn, grid", [(train_run, GRID_TRAIN), pytest.param(hit_run, GRID_HIT, marks=pytest.mark.skipif(
    os.environ.get("LPG_SLOW") != "1", reason="slow: set LPG_SLOW=1 (the same loop primitive as train's)"))],
    ids=["train", "run_until"])
def test_outputs_are_bit_identical_with_and_without_the_reports(fn, grid, monkeypatch):
    keys, settings = _runs(grid)
    compiled_in = jax.jit(jax.vmap(lambda k, s: fn(k, **s)))
    alone = compiled_in(keys, settings)  # no tracker open: the reports go nowhere
    with Tracker(mode="off") as bar:
        watched = compiled_in(keys, settings)
        jax.effects_barrier()
    assert bar.steps_done == keys.shape[0] * (PRE + STEPS if fn is train_run else BUDGET)
    monkeypatch.setattr(progress, "CALLBACKS", False)
    left_out = jax.jit(jax.vmap(lambda k, s: fn(k, **s)))(keys, settings)  # traced anew, without the reports
    assert_same_bits(alone, watched)
    assert_same_bits(alone, left_out)
    # and a sweep one run at a time, with the reports left out, gives the sweep's bits with them
    off = sweep(fn, grid, seeds=SEEDS, chunk_size=CHUNK, vmap_size=1, progress=False)
    monkeypatch.setattr(progress, "CALLBACKS", True)
    on = sweep(fn, grid, seeds=SEEDS, chunk_size=CHUNK, vmap_size=1, progress=False)
    assert_same_bits(off.outputs, on.outputs)
