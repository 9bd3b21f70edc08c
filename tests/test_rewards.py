"""Rewards and query accounting (PAPER.md §2, §6): outcome/process rewards against their
definitions over all of ``Y^N``, log-space counts, and the law of the truncated
geometric (best-of-m) draw from moderate ``p`` down to ``p = 32^-128``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import P_MIN, all_responses, pooled_chisquare
from scipy import stats

from lpg import rewards

pytestmark = pytest.mark.usefixtures("fast_compile")

N_DRAWS = 20000
LOG_TINY = -128 * math.log(32)  # log p = log 32^-128 ≈ -443.6


def _draw(log_p, log_m, seed, n=N_DRAWS):
    f = jax.jit(lambda kk, lp, lm: rewards.log_truncated_geometric(kk, jnp.full((n,), lp, jnp.float32), lm))
    success, log_draws = f(jax.random.PRNGKey(seed), log_p, jnp.float32(log_m))
    return np.asarray(success), np.asarray(log_draws, np.float64)


# ---------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [None, 2])
def test_rewards_against_definitions(length):
    k, N = 3, 3
    ys = all_responses(k, N)
    y_star = np.array([2, 0, 1])
    n = N if length is None else length
    f = jax.jit(
        jax.vmap(
            lambda y: (
                rewards.outcome_reward(y, jnp.asarray(y_star), length),
                rewards.outcome_reward(y, jnp.asarray(y_star), length, signed=True),
                rewards.process_rewards(y, jnp.asarray(y_star), length),
                rewards.process_rewards(y, jnp.asarray(y_star), length, signed=True),
                rewards.correct_prefix_length(y, jnp.asarray(y_star), length),
            )
        )
    )
    out, out_pm, proc, proc_pm, L = (np.asarray(a) for a in f(jnp.asarray(ys)))
    for y, o, opm, p, ppm, l in zip(ys, out, out_pm, proc, proc_pm, L):
        hit = float(np.array_equal(y[:n], y_star[:n]))
        assert o == hit and opm == 2 * hit - 1
        want = np.array([float(np.array_equal(y[: i + 1], y_star[: i + 1])) for i in range(N)])
        want[n:] = 0.0
        np.testing.assert_array_equal(p, want)
        want_pm = 2 * want - 1
        want_pm[n:] = 0.0  # padding carries reward 0 in both forms
        np.testing.assert_array_equal(ppm, want_pm)
        lw = 0
        while lw < n and y[lw] == y_star[lw]:
            lw += 1
        assert l == lw
        # a PRM is asked prefix by prefix until the first failure
        assert rewards.process_queries(l, n) == min(lw + 1, n)


@pytest.mark.parametrize("length", [None, 0, 5, 9])
def test_leading_true_against_a_loop(length):
    """The batched first-failure count (used for the PRM prefix, the event path's ``L``
    and Algorithm 2's walk) against a plain loop, over random masks of every density."""
    rng = np.random.default_rng(0)
    ok = rng.random((3, 400, 9)) < np.array([0.3, 0.8, 0.97])[:, None, None]
    got = np.asarray(jax.jit(lambda a: rewards.leading_true(a, length))(jnp.asarray(ok)))
    n = 9 if length is None else length
    want = np.zeros(ok.shape[:-1], int)
    for idx in np.ndindex(*ok.shape[:-1]):
        while want[idx] < n and ok[idx][want[idx]]:
            want[idx] += 1
    np.testing.assert_array_equal(got, want)


def test_log_space_counts_are_exact():
    big = 128 * math.log(32)  # 32^128 queries
    np.testing.assert_allclose(rewards.log_add(jnp.float32(big), jnp.float32(big)), big + math.log(2), rtol=1e-7)
    np.testing.assert_allclose(rewards.log_sum(jnp.full((3,), big, jnp.float32)), big + math.log(3), rtol=1e-7)
    np.testing.assert_allclose(rewards.log_count(1000), math.log(1000), rtol=1e-7)
    assert rewards.log_count(0) == -jnp.inf
    # adding 0 queries (log 0) changes nothing
    assert rewards.log_add(jnp.float32(big), -jnp.inf) == jnp.float32(big)


def test_bernoulli_log():
    n = N_DRAWS
    for log_p, seed in [(math.log(0.3), 0), (math.log(1e-3), 1)]:
        hits = int(jnp.sum(jax.jit(lambda kk: rewards.bernoulli_log(kk, jnp.full((n,), log_p)))(jax.random.PRNGKey(seed))))
        assert stats.binomtest(hits, n, math.exp(log_p)).pvalue > P_MIN
    assert not jnp.any(rewards.bernoulli_log(jax.random.PRNGKey(2), jnp.full((100,), LOG_TINY)))
    assert jnp.all(rewards.bernoulli_log(jax.random.PRNGKey(3), jnp.zeros((100,))))


# ---------------------------------------------------------------------------------
# Truncated geometric
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p,m", [(0.3, 7), (0.1, 11), (0.05, 50), (0.25, 47), (0.5, 1)])
def test_truncated_geometric_joint_law(p, m):
    # Cells: (G = c, success) for c = 1..m and (m draws, failure); chi-square, p > P_MIN.
    success, log_draws = _draw(math.log(p), math.log(m), seed=m)
    draws = np.exp(log_draws)
    counts = np.round(draws).astype(int)
    np.testing.assert_allclose(draws, counts, rtol=1e-5)  # exact integer counts
    assert counts.min() >= 1 and counts.max() <= m
    # a failure means all m draws were spent
    assert np.all(counts[~success] == m)
    c = np.arange(1, m + 1)
    probs = np.concatenate([(1 - p) ** (c - 1) * p, [(1 - p) ** m]])
    cells = np.where(success, counts - 1, m)
    observed = np.bincount(cells, minlength=m + 1)
    assert pooled_chisquare(observed, N_DRAWS * probs) > P_MIN


@pytest.mark.parametrize("p", [0.2, math.exp(-7.9), math.exp(-8.1), 1e-5])
def test_untruncated_geometric_law(p):
    # m = ∞: G ~ Geometric(p) on {1, 2, ...}. Cells G = 1..C and G > C with C the
    # 0.999 quantile (p large), or a Kolmogorov-Smirnov test on the exact CDF (p small:
    # G spans ~1e5 values, where KS is only conservative).
    success, log_draws = _draw(math.log(p), math.inf, seed=int(1e6 * p) + 1)
    assert success.all()
    g = np.round(np.exp(log_draws))
    np.testing.assert_allclose(np.exp(log_draws), g, rtol=1e-5)
    if p > 0.01:
        C = int(math.ceil(math.log(1e-3) / math.log(1 - p)))
        c = np.arange(1, C + 1)
        probs = np.concatenate([(1 - p) ** (c - 1) * p, [(1 - p) ** C]])
        observed = np.bincount(np.minimum(g, C + 1).astype(int) - 1, minlength=C + 1)
        assert pooled_chisquare(observed, N_DRAWS * probs) > P_MIN
    else:
        cdf = lambda t: -np.expm1(np.floor(t) * np.log1p(-p))  # noqa: E731
        assert stats.kstest(g, cdf).pvalue > P_MIN


def test_geometric_beyond_exact_range():
    # p = 1e-8: G ~ 1e8 > 2^22 is carried continuously; G·p ≈ Exp(1) (KS on the exact
    # law's continuous limit, relative error O(p)).
    p = 1e-8
    success, log_draws = _draw(math.log(p), math.inf, seed=5)
    assert success.all() and np.isfinite(log_draws).all()
    lam = -math.log1p(-p)
    assert stats.kstest(np.exp(log_draws) * lam, "expon").pvalue > P_MIN


def test_geometric_astronomically_small_p():
    # p = 32^-128: G ≈ E/p with E ~ Exp(1), so log G ≈ -log p + log E, finite.
    success, log_draws = _draw(LOG_TINY, math.inf, seed=7)
    assert success.all() and np.isfinite(log_draws).all()
    # median of log E is log(ln 2); its standard error here is ≈ 0.010, tolerance 0.05 (5 SE)
    np.testing.assert_allclose(np.median(log_draws), math.log(math.log(2)) - LOG_TINY, atol=0.05)
    # the whole law: exp(log G + log p) ~ Exp(1)
    assert stats.kstest(np.exp(log_draws + LOG_TINY), "expon").pvalue > P_MIN
    # a huge but finite m: success probability 1 − (1 − p)^m ≈ 1 − exp(−m p)
    for shift, seed in [(-3.0, 8), (1.0, 9)]:
        log_m = -LOG_TINY + shift  # m·p = e^shift
        success, log_draws = _draw(LOG_TINY, log_m, seed=seed)
        assert stats.binomtest(int(success.sum()), N_DRAWS, -math.expm1(-math.exp(shift))).pvalue > P_MIN
        np.testing.assert_allclose(log_draws[~success], np.float32(log_m), rtol=1e-7)
        assert np.all(log_draws[success] <= np.float32(log_m))


def test_geometric_certain_success():
    success, log_draws = _draw(0.0, math.log(5), seed=3, n=100)
    assert success.all() and np.all(log_draws == 0.0)


# ---------------------------------------------------------------------------------
# Exact query counts
# ---------------------------------------------------------------------------------


def test_counts_add_and_sum_exactly_against_python_integers(rng):
    # Random counts from 0 to 2^60 (as sums of int32-sized pieces), added and summed
    # along an axis, against Python's unbounded integers.
    pieces = rng.integers(0, 2**31 - 1, size=(5, 300), dtype=np.int64)
    small = rng.integers(0, 2**22, size=(5, 300), dtype=np.int64)
    c = rewards.count(jnp.asarray(pieces, jnp.int32))
    for _ in range(3):  # grow each entry past 2^32
        c = rewards.add_counts(c, rewards.count(jnp.asarray(pieces, jnp.int32)))
    c = rewards.add_counts(c, rewards.count(jnp.asarray(small, jnp.int32)))
    total = jax.jit(lambda c: rewards.sum_counts(rewards.sum_counts(c, -1), -1))(c)
    want = int(4 * pieces.sum() + small.sum())
    assert int(total.hi) * 2**30 + int(total.lo) == want and 0 <= int(total.lo) < 2**30
    assert rewards.value_of(total) == float(want)
    np.testing.assert_allclose(float(rewards.log_of(total)), math.log(want), rtol=1e-7)
    # An axis longer than one block of 2^16 terms (here on the middle axis, with log-space parts).
    long = rng.integers(0, 2**31 - 1, size=(2, 3 * 2**16 + 5, 2), dtype=np.int64)
    c = rewards.count(jnp.asarray(long, jnp.int32), jnp.full(long.shape, math.log(1e30), jnp.float32))
    total = rewards.sum_counts(c, axis=1)
    got = np.asarray(total.hi, np.int64) * 2**30 + np.asarray(total.lo, np.int64)
    np.testing.assert_array_equal(got, long.sum(axis=1))
    np.testing.assert_allclose(np.asarray(total.log_big), math.log(1e30 * long.shape[1]), rtol=1e-6)


def test_ten_million_single_queries_count_ten_million():
    # The float32 log-space sum this replaces stops growing at 2^21 (log(2^21) + 2^-21
    # rounds back to log(2^21)); the exact count does not.
    n = 10**7
    c = jax.jit(lambda: jax.lax.fori_loop(0, n, lambda i, c: rewards.add_counts(c, rewards.count(1)),
                                          rewards.count(0)))()
    assert rewards.value_of(c) == n
    naive = jax.jit(lambda: jax.lax.fori_loop(0, 3 * 2**21, lambda i, a: jnp.logaddexp(a, 0.0),
                                              jnp.float32(-jnp.inf)))()
    assert math.exp(float(naive)) < 2.2e6  # the old accumulation: stuck near 2^21, not 6.3e6


def test_counts_carry_what_does_not_fit_in_log_space():
    big = rewards.count(0, LOG_TINY * -1.0)  # 32^128 queries
    c = rewards.add_counts(rewards.count(7), big)
    assert float(rewards.log_of(c)) == pytest.approx(-LOG_TINY, rel=1e-7)
    assert rewards.value_of(rewards.count(0)) == 0 and float(rewards.log_of(rewards.count(0))) == -math.inf


def test_truncated_geometric_count_is_exact_below_2_22_and_matches_its_log():
    keys = jax.random.split(jax.random.PRNGKey(4), 4)
    for lp, lm in [(math.log(0.01), math.log(50.0)), (math.log(1e-3), math.inf), (-40.0, math.inf), (-40.0, 60.0)]:
        f = jax.jit(lambda k: rewards.truncated_geometric(k, jnp.full((2000,), lp, jnp.float32), jnp.float32(lm)))
        success, draws = f(keys[0])
        g = rewards.value_of(draws)
        small = np.asarray(draws.log_big) == -np.inf
        assert np.all(g[small] == np.round(g[small])) and np.all(g[small] >= 1)
        if math.isfinite(lm) and lm < math.log(2**22):
            assert np.all(small) and g.max() <= math.floor(math.exp(lm) + 1e-6)
        _, log_draws = jax.jit(lambda k: rewards.log_truncated_geometric(
            k, jnp.full((2000,), lp, jnp.float32), jnp.float32(lm)))(keys[0])
        np.testing.assert_allclose(np.exp(np.asarray(log_draws, np.float64)), g, rtol=1e-5)
