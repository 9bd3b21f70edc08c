"""The ``barrier`` experiment (and the summary it shares with ``figure1``): the
log-space mean likelihood against float64 references, the well-posedness share of every
centre against a NumPy teacher, the summary of synthetic runs with hand-computed answers
(the old across-seed flags and the per-centre block) and the validation of its settings.
The acceptance run at the defaults is in ``test_regression.py``, where the default run is
pinned."""

from __future__ import annotations

import json
import math
import os

import jax
import numpy as np
import pytest
from scipy import stats

import lpg
from conftest import P_MIN, assert_same_mean
from lpg.analysis import log_mean_lik
from lpg.experiments import barrier, get
from lpg.experiments.barrier import summary_of, text
from lpg.results import to_jsonable
from lpg.spec import Experiment, Sweep
from lpg.sweep import SweepResult

LN10 = math.log(10.0)


def test_log_mean_lik_matches_float64_and_is_shift_invariant(rng):
    ll = rng.uniform(-60, 0, size=(3, 5, 7))  # (seeds, log points, centres)
    mask = rng.random((3, 7)) < 0.5
    mask[:, 0] = True
    got = log_mean_lik(ll, mask)
    for s in range(3):
        for t in range(5):
            ref = math.log(np.mean(np.exp(ll[s, t][mask[s]])))
            assert got[s, t] == pytest.approx(ref, rel=1e-12, abs=1e-12)
    # Far below float64's range (1e-4000): the same answer shifted, no underflow.
    np.testing.assert_allclose(log_mean_lik(ll - 10_000.0, mask), got - 10_000.0, rtol=1e-12)


def test_log_mean_lik_of_an_empty_set_is_nan():
    out = log_mean_lik(np.zeros((2, 3)), np.array([[True, False, False], [False, False, False]]))
    assert out[0] == pytest.approx(0.0) and math.isnan(out[1])


BASE = [[1e-20, 1e-14, 0.5, 0.9], [1e-30, 1e-13, 1e-3, 0.8]]
N_WP = 20
CONFIG = {"off_support_threshold": 1e-12, "wellposed": 0.9, "n_wellposed": N_WP}


def synthetic(orm_final, prm_final, count=None, base=BASE):
    """Two seeds, four centres by default; centres 0 and 1 are off-support (base < 1e-12),
    every centre well-posed unless ``count`` (contexts out of ``N_WP`` with the centre's
    y*) says otherwise. The rows a sweep of runs with these outputs gives
    (:meth:`lpg.spec.Experiment.rows`)."""
    base = np.log(np.asarray(base, np.float64))
    S = base.shape[0]
    curve = lambda final: np.stack([base, np.log(np.asarray(final, np.float64))], axis=1)  # noqa: E731
    step = np.tile([0, 10], (S, 1))
    err = lambda a, b: np.tile([a, b], (S, 1)) + 0.1 * np.arange(S)[:, None]  # noqa: E731
    outputs = {
        "base_track_log_lik": base,
        "base_test_error": 0.5 + 0.1 * np.arange(S),
        "wellposed_count": np.full(base.shape, N_WP, np.int32) if count is None else np.asarray(count, np.int32),
        "curves": {
            "orm": {"step": step, "track_log_lik": curve(orm_final), "test_error": err(0.5, 0.3),
                    "log_queries": np.log(np.tile([1.0, 160.0], (S, 1)))},
            "prm": {"step": step, "track_log_lik": curve(prm_final), "test_error": err(0.5, 0.1),
                    "log_queries": np.log(np.stack([np.ones(S), 2000.0 * (1 + np.arange(S))], axis=1))},
        },
    }
    return Experiment.rows(SweepResult({}, np.arange(S), outputs, 0.0, 0.0), Sweep("runs", None))


def test_summary_of_synthetic_runs_matches_hand_computation():
    orm = [[1e-25, 1e-5, 0.6, 0.9], [1e-40, 1e-20, 0.1, 0.9]]  # seed 0: ORM mean 5e-6 > 1e-6
    prm = [[1e-3, 1e-5, 0.7, 0.9], [1e-9, 1e-11, 0.2, 0.9]]
    s = summary_of(synthetic(orm, prm), CONFIG)
    base = [math.log10((1e-20 + 1e-14) / 2), math.log10((1e-30 + 1e-13) / 2)]
    orm10 = [math.log10((1e-25 + 1e-5) / 2), math.log10((1e-40 + 1e-20) / 2)]
    prm10 = [math.log10((1e-3 + 1e-5) / 2), math.log10((1e-9 + 1e-11) / 2)]
    assert s["off_support"]["base"]["mean"] == pytest.approx(np.mean(base), rel=1e-9)
    assert s["off_support"]["orm"]["mean"] == pytest.approx(np.mean(orm10), rel=1e-9)
    assert s["off_support"]["prm"]["median"] == pytest.approx(np.median(prm10), rel=1e-9)
    assert s["off_support"]["prm_gain"]["mean"] == pytest.approx(np.mean(np.subtract(prm10, base)), rel=1e-9)
    assert s["test_error"]["prm"]["mean"] == pytest.approx(0.15)
    assert s["queries"]["prm"]["mean"] == pytest.approx(np.mean(np.log10([2000.0, 4000.0])))
    assert s["n_off_support"]["per_seed"] == [2, 2] and s["n_off_support"]["min"] == 2
    # Seed 0's ORM mean is 10^-5.3, seed 1's 10^-20.3: the interval [-20.3, -5.3] is not below -6.
    assert s["barrier"] == {"orm_below_1e-6": False, "prm_gain_at_least_100x": True, "orm_below_1e-6_seeds": 1,
                            "prm_gain_at_least_100x_seeds": 2, "seeds": 2}
    out = text(s)
    assert "ORM" in out and "PRM" in out and "ORM < 1e-6: NO (1/2 seeds)" in out


def test_barrier_flags_across_and_per_seed():
    orm = [[1e-25, 1e-19, 0.6, 0.9], [1e-40, 1e-20, 0.1, 0.9]]
    prm = [[1e-3, 1e-5, 0.7, 0.9], [1e-29, 1e-16, 0.2, 0.9]]  # seed 1: PRM only 1.6x base
    s = summary_of(synthetic(orm, prm), CONFIG)
    assert s["barrier"] == {"orm_below_1e-6": True, "prm_gain_at_least_100x": False, "orm_below_1e-6_seeds": 2,
                            "prm_gain_at_least_100x_seeds": 1, "seeds": 2}
    # A seed without any off-support centre fails on its own.
    s = summary_of(synthetic(orm, prm), {**CONFIG, "off_support_threshold": 1e-14})
    assert s["n_off_support"]["per_seed"] == [1, 1]
    s = summary_of(synthetic(orm, prm), {**CONFIG, "off_support_threshold": 1e-25})
    assert s["n_off_support"]["per_seed"] == [0, 1] and s["barrier"]["orm_below_1e-6_seeds"] == 1


def test_defaults_are_a_scaled_down_figure1():
    barrier, figure1 = get("barrier"), get("figure1")
    assert barrier.default_seeds >= 4
    assert barrier.defaults.keys() == figure1.defaults.keys()
    # sigma: 0.02 in barrier, so that more of its off-support centres are well-posed; signed: 0/1 rewards in
    # barrier, ±1 (the authors') in figure1 (the module docstring)
    same = {"d", "n_centres", "optimizer", "loss_norm", "orm_baseline", "prm_baseline", "off_support_threshold",
            "pretrain_lr", "pg_lr", "N", "pg_warmup"}
    for key in same:
        assert barrier.defaults[key] == figure1.defaults[key], key
    assert barrier.defaults["signed"] is False and figure1.defaults["signed"] is True
    # The PG stage's optimiser at the defaults is the plain one (no warm-up).
    assert barrier.defaults["pg_warmup"] == 0
    assert lpg.experiments.barrier.pg_optimizer(barrier.resolve({})) == "adagrad"
    # Figure 1 of the paper (PAPER.md §5)
    paper = dict(d=32, k=32, N=128, n_centres=32, sigma=0.05, n_test=1024, pretrain_steps=1000, pretrain_batch=256,
                 pretrain_lr=0.1, pg_steps=4000, pg_batch=1024, pg_lr=0.1, signed=True, optimizer="adagrad",
                 orm_baseline="batch_mean", prm_baseline="none", off_support_threshold=1e-12)
    assert {k: figure1.defaults[k] for k in paper} == paper
    barrier.resolve({})
    figure1.resolve({})


def test_bad_warmup_is_one_clear_error():
    with pytest.raises(ValueError, match="pg_warmup"):
        get("barrier").resolve({"pg_warmup": "-1"})
    with pytest.raises(ValueError, match="warm-up steps must be an integer >= 1, got 0"):
        lpg.optim.warmup(lpg.optim.torch_adagrad, 0)


def np_adagrad(gs, lr, acc0, scale=lambda t: 1.0, eps=1e-10):
    """torch's Adagrad in float64 from accumulator ``acc0``: the ascent updates along the
    gradients ``gs``, the ``t``-th (from 0) scaled by ``scale(t)``."""
    acc, out = np.asarray(acc0, np.float64), []
    for t, g in enumerate(gs):
        acc = acc + g ** 2
        out.append(scale(t) * lr * g / (np.sqrt(acc) + eps))
    return out


@pytest.mark.parametrize("warm", [0, 3])
def test_pg_optimiser_matches_numpy_adagrad(warm, rng):
    """:func:`lpg.optim.warmup` (a linear warm-up) of torch's Adagrad against a float64
    Adagrad; without a warm-up, barrier's PG optimiser is the plain ``"adagrad"``."""
    w = {"a": np.zeros((3, 2), np.float32), "b": np.zeros((4,), np.float32)}
    gs = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in w.items()} for _ in range(5)]
    lr, o = 0.3, lpg.optim
    spec = barrier.pg_optimizer({"optimizer": "adagrad", "pg_warmup": warm})
    assert (spec == "adagrad") == (warm == 0)
    scale = (lambda t: min(1.0, (t + 1) / warm)) if warm else (lambda t: 1.0)
    tx = o.make(spec)
    state, cur = o.init_state(tx, w, lr), w
    for t, g in enumerate(gs):
        new, state = o.ascend(tx, cur, state, g)
        for k in w:
            want = np_adagrad([gg[k] for gg in gs[:t + 1]], lr, 0.0, scale)[-1]
            np.testing.assert_allclose(np.asarray(new[k]) - np.asarray(cur[k]), want, rtol=2e-5, atol=1e-7)
        cur = new


# ---------------------------------------------------------------------------------
# Well-posedness of a centre: the share of its component's contexts with its y*
# ---------------------------------------------------------------------------------


def np_teacher_response(A, B, xs, N):
    """``y*`` of PAPER.md §1 for a batch of contexts, in float64: ``y*_1 = argmax A x``,
    ``y*_i = argmax (A x + B[:, y*_{i-1}])``."""
    base = np.asarray(xs, np.float64) @ np.asarray(A, np.float64).T  # (n, k)
    B = np.asarray(B, np.float64)
    ys = [np.argmax(base, axis=-1)]
    for _ in range(N - 1):
        ys.append(np.argmax(base + B[:, ys[-1]].T, axis=-1))
    return np.stack(ys, axis=-1)


def test_wellposed_count_matches_a_numpy_teacher():
    d, k, N, M, n = 6, 5, 12, 6, 512
    task = lpg.make_teacher(jax.random.PRNGKey(3), d=d, k=k, N=N, context="mixture", n_centres=M, sigma=0.1)
    key = jax.random.PRNGKey(4)
    xs = np.asarray(barrier.component_contexts(key, d=d, n_centres=M, sigma=0.1, n=n))
    assert xs.shape == (M, n, d)
    centres = np.sqrt(d) * np.eye(d)[:M]
    want = [int(np.sum(np.all(np_teacher_response(task.A, task.B, xs[j], N)
                              == np_teacher_response(task.A, task.B, centres[j:j + 1], N), axis=-1)))
            for j in range(M)]
    got = np.asarray(barrier.wellposed_count(task, key, n))
    assert got.dtype == np.int32 and got.tolist() == want
    assert 0 < min(want) < n and max(want) == n  # the case has both well-posed and ambiguous centres


@pytest.mark.parametrize("d", [2, 6])  # at d = 2 the clip binds on only 61% of the draws, at d = 6 on 99%
def test_component_contexts_follow_the_task_noise_law(d):
    M, sigma, n = 2, 0.3, 20_000
    xs = np.asarray(barrier.component_contexts(jax.random.PRNGKey(0), d=d, n_centres=M, sigma=sigma, n=n),
                    np.float64)
    np.testing.assert_allclose(np.linalg.norm(xs, axis=-1), np.sqrt(d), rtol=1e-5)
    # x ∝ e_j + ε with ‖ε‖ ≤ σ: the angle to e_j is at most arcsin σ.
    cos = xs[np.arange(M), :, np.arange(M)] / np.sqrt(d)
    assert cos.min() >= math.sqrt(1 - sigma ** 2) - 1e-6
    # The same law as the task's mixture contexts of that component (the centre is the argmax coordinate).
    task = lpg.make_teacher(jax.random.PRNGKey(1), d=d, k=4, N=3, context="mixture", n_centres=M, sigma=sigma)
    ref = np.asarray(task.sample_contexts(jax.random.PRNGKey(2), 3 * n), np.float64)
    comp = np.argmax(ref, axis=-1)
    for j in range(M):
        assert_same_mean(xs[j], ref[comp == j], what=f"component {j}")
        for c in (j, (j + 1) % d):
            assert stats.ks_2samp(xs[j][:, c], ref[comp == j][:, c]).pvalue > P_MIN


def test_wellposed_count_edge_cases():
    # sigma = 0: every context is its centre, every centre is well-posed.
    task = lpg.make_teacher(jax.random.PRNGKey(5), d=4, k=3, N=6, context="mixture", n_centres=4, sigma=0.0)
    assert np.asarray(barrier.wellposed_count(task, jax.random.PRNGKey(0), 7)).tolist() == [7] * 4
    # N = 1, B = 0, d = k = 2: centre 0 sits on an exact tie of its two tokens (y* = 0, the first
    # argmax) and a noisy context answers 0 iff its second coordinate is positive: probability 1/2.
    # Centre 1's gap (10·√2) is far beyond what noise of norm 0.1 can move (at most 2·5·0.1·√2).
    A = np.array([[1.0, 5.0], [1.0, -5.0]], np.float32)
    tie = lpg.tasks.Teacher(jax.numpy.asarray(A), jax.numpy.zeros((2, 2)), 1, "mixture", 2, 0.1)
    n = 4000
    got = np.asarray(barrier.wellposed_count(tie, jax.random.PRNGKey(1), n))
    assert got[1] == n
    assert abs(got[0] / n - 0.5) < 5 * math.sqrt(0.25 / n)


@pytest.mark.skipif(os.environ.get("LPG_SLOW") != "1", reason="slow (two barrier programs): set LPG_SLOW=1")
def test_run_outputs_the_count_from_its_own_stream():
    """The run's count is :func:`wellposed_count` of its teacher under ``fold_in(key,
    WELLPOSED_STREAM)``, and ``n_wellposed`` changes no other output (no draw moved)."""
    exp = get("barrier")
    tiny = dict(d=6, k=4, N=8, n_centres=6, n_test=16, pretrain_steps=3, pretrain_batch=8, pg_steps=4, pg_batch=8,
                log_every=2, sigma=0.2)
    key = lpg.run_key(7)
    outs = [jax.jit(barrier.make_run(exp.resolve({**tiny, "n_wellposed": n})))(key) for n in (16, 64)]
    task = lpg.make_teacher(jax.random.split(key, 5)[0], d=6, k=4, N=8, context="mixture", n_centres=6, sigma=0.2)
    want = barrier.wellposed_count(task, jax.random.fold_in(key, barrier.WELLPOSED_STREAM), 64)
    np.testing.assert_array_equal(outs[1]["wellposed_count"], want)
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), {**outs[0], "wellposed_count": 0},
                                  {**outs[1], "wellposed_count": 0})
    assert all(jax.tree_util.tree_leaves(same)), same


# ---------------------------------------------------------------------------------
# The per-centre summary
# ---------------------------------------------------------------------------------


def test_per_centre_summary_matches_hand_computation():
    orm = [[1e-25, 1e-5, 0.6, 0.9], [1e-40, 1e-20, 0.1, 0.9]]
    prm = [[1e-3, 1e-5, 0.7, 0.9], [1e-9, 1e-11, 0.2, 0.9]]
    # Seed 0: centre 0 well-posed (19/20), centre 1 ambiguous (10/20); seed 1: both well-posed
    # (centre 1 at exactly 18/20 = 0.9); centres 2 and 3 are on the support and count nowhere.
    count = [[19, 10, 0, 0], [20, 18, 0, 0]]
    pc = summary_of(synthetic(orm, prm, count), CONFIG)["per_centre"]
    wp, amb = pc["well_posed"], pc["ambiguous"]
    assert (wp["n"], wp["per_seed"], amb["n"], amb["per_seed"]) == (3, [1, 2], 1, [1, 0])
    # Well-posed PRM finals 1e-3 (exactly the bar: not above), 1e-9, 1e-11; bases 1e-20, 1e-30, 1e-13.
    p = wp["prm"]
    assert (p["n_above_1e-3"], p["above_1e-3"], p["above_half"], p["n_above_1e-3_per_seed"]) == (0, 0.0, 0.0, [0, 0])
    assert p["median_change"] == pytest.approx(17.0) and p["median"] == pytest.approx(-9.0)
    assert p["worst"] == pytest.approx(-11.0)
    # Well-posed ORM finals 1e-25, 1e-40, 1e-20: changes -5, -10, -7.
    o = wp["orm"]
    assert o["median_change"] == pytest.approx(-7.0) and o["median"] == pytest.approx(-25.0)
    assert o["worst"] == pytest.approx(-40.0) and o["n_above_1e-3"] == 0
    # The ambiguous centre: 1e-14 -> 1e-5 under both.
    for a in ("orm", "prm"):
        assert amb[a]["median_change"] == pytest.approx(9.0) and amb[a]["worst"] == pytest.approx(-5.0)
    assert pc["acceptance"] == {"n": 3, "prm_above_1e-3": 0.0, "orm_median": pytest.approx(-25.0), "orm_lifted": 0,
                                "prm_lifts_90pct": False, "orm_median_below_1e-6": True, "met": False}
    # Lowering the bar to 0.95 makes seed 1's centre 1 ambiguous.
    pc = summary_of(synthetic(orm, prm, count), {**CONFIG, "wellposed": 0.95})["per_centre"]
    assert pc["well_posed"]["per_seed"] == [1, 1] and pc["ambiguous"]["per_seed"] == [1, 1]


def test_per_centre_acceptance_passes_and_fails_where_it_should():
    count = [[20, 20, 0, 0], [20, 20, 0, 0]]
    orm = [[1e-25, 1e-5, 0.6, 0.9], [1e-2, 1e-20, 0.1, 0.9]]  # ORM lifts one of four; median 10^-12.5
    prm = [[0.8, 2e-3, 0.7, 0.9], [0.6, 0.7, 0.2, 0.9]]
    s = summary_of(synthetic(orm, prm, count), CONFIG)
    pc = s["per_centre"]
    assert pc["well_posed"]["prm"]["above_1e-3"] == 1.0 and pc["well_posed"]["prm"]["above_half"] == 0.75
    assert pc["well_posed"]["orm"]["n_above_1e-3_per_seed"] == [0, 1]
    assert pc["acceptance"] == {"n": 4, "prm_above_1e-3": 1.0, "orm_median": pytest.approx(-12.5), "orm_lifted": 1,
                                "prm_lifts_90pct": True, "orm_median_below_1e-6": True, "met": True}
    # ORM's median exactly at 1e-6 is not below it.
    orm_at = [[1e-6, 1e-6, 0.6, 0.9], [1e-6, 1e-20, 0.1, 0.9]]
    assert not summary_of(synthetic(orm_at, prm, count), CONFIG)["per_centre"]["acceptance"]["orm_median_below_1e-6"]
    # Ten well-posed off-support centres: PRM lifting 9 (exactly 90%) passes, 8 fails.
    base = [[1e-13] * 10 + [0.5]]
    for lifted, ok in ((9, True), (8, False)):
        prm10 = [[0.5] * lifted + [1e-4] * (10 - lifted) + [0.9]]
        acc = summary_of(synthetic([[1e-30] * 11], prm10, base=base), CONFIG)["per_centre"]["acceptance"]
        assert acc["n"] == 10 and acc["prm_above_1e-3"] == pytest.approx(lifted / 10) and acc["prm_lifts_90pct"] is ok
    # No well-posed off-support centre: nothing to accept, every statistic nan.
    none = summary_of(synthetic(orm, prm, [[0, 0, 20, 20], [0, 0, 20, 20]]), CONFIG)
    assert none["per_centre"]["acceptance"]["n"] == 0 and not none["per_centre"]["acceptance"]["met"]
    assert math.isnan(none["per_centre"]["well_posed"]["prm"]["worst"])
    # The text reads the summary as written (nan as null) and shows the split and the verdict.
    out = text(json.loads(json.dumps(to_jsonable(none))))
    assert "well-posed  PRM  0" in out and "ambiguous   PRM  4" in out
    assert "acceptance: not testable, no off-support centre is well-posed" in out and "needs >= 90%" not in out
    out = text(s)
    assert "PRM > 1e-3 on 4/4 (100%, needs >= 90%): yes" in out and "ORM lifts 1/4 above 1e-3" in out
