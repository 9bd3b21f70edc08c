"""Metrics of PAPER.md §1: the Likelihood Quantile against its definition evaluated by
brute force, the uniform policy's LQ (``k^-N``) and token-level LQ (``1/k``), ``Q^TL ≥ Q``,
the likelihood CDF, the α-tail and the error."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_bigram_log_prob

import lpg
from lpg import metrics

pytestmark = pytest.mark.usefixtures("fast_compile")


def brute_force_lq(log_q, eps):
    """``sup{α ∈ [0, 1] : P(q ≤ α) ≤ ε}`` in log space, straight from the definition.

    Every candidate α is scanned: each data value, the floats just below and above it,
    and α = 1 (log 0). The empirical CDF is a right-continuous step function, so the
    admissible α form an interval ``[0, a*)``: the sup is the smallest inadmissible
    candidate, approached from below (checked), or α = 1 when every candidate is
    admissible."""
    v = np.asarray(log_q, np.float64)
    candidates = np.unique(np.concatenate([v, np.nextafter(v, -np.inf), np.nextafter(v, np.inf), [0.0]]))
    ok = np.array([np.mean(v <= a) <= eps for a in candidates])
    if ok.all():
        return 0.0
    a_star = candidates[~ok].min()
    assert ok[candidates < a_star].all() and candidates[ok].max() == np.nextafter(a_star, -np.inf)
    return float(a_star)


HAND_MADE = [
    (np.log([0.5, 0.1, 0.2, 0.9]), 0.3),
    (np.log([0.5, 0.1, 0.2, 0.9]), 0.25),  # εn = 1 exactly
    (np.log([0.5, 0.1, 0.2, 0.9]), 0.2499),
    (np.log([0.3, 0.3, 0.3, 0.7, 0.7]), 0.5),  # ties
    (np.log([0.3, 0.3, 0.3, 0.7, 0.7]), 0.61),
    (np.array([-443.6, -300.0, -1.0, -2.0, -443.6, -10.0]), 1 / 3),  # 32^-128 in log space
    (np.log([0.25]), 0.5),
    (np.array([-5.0, -4.0, -3.0]), 0.999),
]


@pytest.mark.parametrize("log_q,eps", HAND_MADE)
def test_likelihood_quantile_matches_definition(log_q, eps):
    got = float(metrics.likelihood_quantile(jnp.asarray(log_q, jnp.float32), eps))
    want = brute_force_lq(np.asarray(log_q, np.float32), eps)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_likelihood_quantile_hand_values():
    # n = 4, ε = 0.3: P(q ≤ α) ≤ 0.3 allows one value below α, so Q = second smallest.
    v = jnp.log(jnp.asarray([0.5, 0.1, 0.2, 0.9]))
    np.testing.assert_allclose(metrics.likelihood_quantile(v, 0.3), math.log(0.2), rtol=1e-6)
    np.testing.assert_allclose(metrics.likelihood_quantile(v, 0.1), math.log(0.1), rtol=1e-6)
    np.testing.assert_allclose(metrics.likelihood_quantile(v, 0.8), math.log(0.9), rtol=1e-6)
    # Batched over leading axes.
    batch = jnp.stack([v, v - 1.0])
    np.testing.assert_allclose(metrics.likelihood_quantile(batch, 0.3), [math.log(0.2), math.log(0.2) - 1.0], rtol=1e-6)


def test_likelihood_quantile_random_arrays(rng):
    for n in [1, 2, 7, 20] * 4:
        v = np.round(rng.normal(-5, 3, n), 1).astype(np.float32)  # rounding makes ties
        eps = float(rng.uniform(0.01, 0.99))
        np.testing.assert_allclose(float(metrics.likelihood_quantile(v, eps)), brute_force_lq(v, eps), rtol=1e-6)


@pytest.mark.parametrize("k,N", [(3, 3), (2, 6), (5, 2)])
def test_uniform_policy_lq(k, N):
    d, n = 4, 64
    task = lpg.make_teacher(jax.random.PRNGKey(k + N), d=d, k=k, N=N)
    xs = task.sample_contexts(jax.random.PRNGKey(1), n)
    ys = jax.vmap(task.response)(xs)
    fmap = task.feature_map()
    w = lpg.tasks.uniform_base(fmap)

    @jax.jit
    def lq(xs, ys):
        seq = metrics.sequence_log_likelihoods(fmap, w, xs, ys)
        tok = metrics.token_log_likelihoods(fmap, w, xs, ys)
        return seq, tok, [metrics.likelihood_quantile(seq, e) for e in (0.05, 0.5)], [
            metrics.token_likelihood_quantile(tok, e) for e in (0.05, 0.5)
        ]

    seq, tok, q, qtl = lq(xs, ys)
    assert tok.shape == (n, N)
    np.testing.assert_allclose(seq, -N * math.log(k), rtol=1e-5)
    np.testing.assert_allclose(q, -N * math.log(k), rtol=1e-5)  # Q = k^-N
    np.testing.assert_allclose(qtl, -math.log(k), rtol=1e-5)  # Q^TL = 1/k, whatever N


def test_token_lq_at_least_lq(rng):
    d, k, N, n = 3, 3, 4, 50
    task = lpg.make_teacher(jax.random.PRNGKey(0), d=d, k=k, N=N)
    xs = task.sample_contexts(jax.random.PRNGKey(1), n)
    ys = jax.vmap(task.response)(xs)
    fmap = task.feature_map()
    f = jax.jit(lambda w: (metrics.sequence_log_likelihoods(fmap, w, xs, ys), metrics.token_log_likelihoods(fmap, w, xs, ys)))
    for _ in range(5):
        W1 = rng.normal(0, 1.5, (d, k)).astype(np.float32)
        W2 = rng.normal(0, 1.5, (k, k)).astype(np.float32)
        seq, tok = f(lpg.BigramParams(jnp.asarray(W1), jnp.asarray(W2)))
        # log-likelihoods against the NumPy bigram
        ref = [np_bigram_log_prob(W1, W2, x, y) for x, y in zip(np.asarray(xs), np.asarray(ys))]
        np.testing.assert_allclose(seq, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.sum(tok, axis=1), seq, rtol=1e-5, atol=1e-5)
        for eps in (0.02, 0.1, 0.37, 0.8):
            assert metrics.token_likelihood_quantile(tok, eps) >= metrics.likelihood_quantile(seq, eps) - 1e-6


def test_token_lq_with_length_mask():
    tok = jnp.log(jnp.asarray([[0.5, 0.4, 0.01], [0.6, 0.3, 0.02]]))
    # with length 2 the last column is padding
    np.testing.assert_allclose(metrics.token_likelihood_quantile(tok, 0.5, length=2), math.log(0.4), rtol=1e-6)
    np.testing.assert_allclose(metrics.token_likelihood_quantile(tok, 0.5), math.log(0.02), rtol=1e-6)


def test_cdf_and_tail_against_numpy(rng):
    v = np.log(rng.uniform(0, 1, 200) ** 3).astype(np.float32)
    log_alphas = np.log(np.array([1e-6, 1e-3, 0.05, 0.2, 0.5, 0.999])).astype(np.float32)
    cdf = np.asarray(metrics.likelihood_cdf(v, log_alphas))
    want = np.array([np.mean(np.exp(v.astype(np.float64)) <= np.exp(a)) for a in log_alphas.astype(np.float64)])
    np.testing.assert_allclose(cdf, want, atol=1e-7)
    tail = np.asarray(metrics.log_alpha_tail(v, log_alphas))
    with np.errstate(divide="ignore"):
        want_tail = np.log(np.exp(log_alphas.astype(np.float64)) * (1 - want))
    np.testing.assert_allclose(tail, want_tail, rtol=1e-5)
    # no likelihood above α: the tail is log 0
    assert metrics.log_alpha_tail(v, jnp.asarray([0.0]))[0] == -jnp.inf


def test_error_is_one_minus_mean_likelihood(rng):
    d, k, N = 3, 3, 3
    task = lpg.make_teacher(jax.random.PRNGKey(2), d=d, k=k, N=N)
    xs = task.sample_contexts(jax.random.PRNGKey(3), 20)
    ys = jax.vmap(task.response)(xs)
    W1, W2 = rng.normal(size=(d, k)).astype(np.float32), rng.normal(size=(k, k)).astype(np.float32)
    err = jax.jit(lambda w: metrics.error(task.feature_map(), w, xs, ys))(lpg.BigramParams(W1, W2))
    ref = 1 - np.mean([math.exp(np_bigram_log_prob(W1, W2, x, y)) for x, y in zip(np.asarray(xs), np.asarray(ys))])
    np.testing.assert_allclose(err, ref, rtol=1e-5)
