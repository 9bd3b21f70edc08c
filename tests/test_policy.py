"""The linear autoregressive policy (PAPER.md §1) against exact enumeration of ``Y^N``
and a plain NumPy implementation; the sampler's law by a chi-square test; length masks;
jit vs un-jitted and vmap vs a loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import P_MIN, all_responses, cell_index, np_bigram_log_prob, np_bigram_token_log_probs, pooled_chisquare

import lpg
from lpg import policy


def _bigram(rng, d, k, scale=0.7):
    W1 = (scale * rng.standard_normal((d, k))).astype(np.float32)
    W2 = (scale * rng.standard_normal((k, k))).astype(np.float32)
    x = rng.choice([-1.0, 1.0], size=d).astype(np.float32)
    return W1, W2, x


@pytest.mark.parametrize("d,k,N", [(3, 3, 3), (2, 2, 4), (4, 4, 1)])
def test_bigram_log_prob_matches_numpy_and_sums_to_one(rng, d, k, N):
    W1, W2, x = _bigram(rng, d, k)
    pi = lpg.LinearAR.from_bigram(W1, W2)
    ys = all_responses(k, N)
    tl, lp = jax.jit(jax.vmap(lambda y: (pi.token_log_probs(x, y), pi.log_prob(x, y))))(jnp.asarray(ys))
    tl, lp = np.asarray(tl), np.asarray(lp)
    assert tl.shape == (k**N, N) and lp.shape == (k**N,)
    ref_tl = np.array([np_bigram_token_log_probs(W1, W2, x, y) for y in ys])
    ref_lp = np.array([np_bigram_log_prob(W1, W2, x, y) for y in ys])
    np.testing.assert_allclose(tl, ref_tl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lp, ref_lp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(), 1.0, atol=1e-5)


def test_planted_probabilities_sum_to_one_and_match_construction(rng):
    # PlantedShift: logit of y is a·w[c, (y − y_{i−1}) mod k], with y_0 := 0.
    k, N = 3, 3
    fmap = lpg.PlantedShift(k, 0.5)
    w = jnp.asarray(rng.standard_normal((fmap.d, k)), jnp.float32)
    ys = all_responses(k, N)
    all_lp = jax.jit(lambda x: jax.vmap(lambda y: policy.log_prob(fmap, w, x, y))(jnp.asarray(ys)))
    for c in range(fmap.d):
        x = jnp.eye(fmap.d)[c]
        lp = np.asarray(all_lp(x), np.float64)
        np.testing.assert_allclose(np.exp(lp).sum(), 1.0, atol=1e-5)
        ref = []
        for y in ys:
            total, prev = 0.0, 0
            for t in y:
                logits = fmap.scale * np.asarray(w, np.float64)[c, (np.arange(k) - prev) % k]
                total += logits[t] - np.log(np.exp(logits).sum())
                prev = t
            ref.append(total)
        np.testing.assert_allclose(lp, ref, rtol=1e-5, atol=1e-5)


def test_first_position_ignores_second_block(rng):
    d, k = 3, 3
    W1, W2, x = _bigram(rng, d, k)
    y = jnp.asarray([1, 2, 0])
    tlp = jax.jit(lambda pi: pi.token_log_probs(x, y))
    a = tlp(lpg.LinearAR.from_bigram(W1, W2))
    b = tlp(lpg.LinearAR.from_bigram(W1, W2 + 5.0 * rng.standard_normal((k, k)).astype(np.float32)))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    assert not np.allclose(a[1:], b[1:])


@pytest.mark.parametrize("N", [3, 6])
def test_sampler_is_inverse_cdf_with_one_uniform_per_token(rng, N):
    # Deterministic check: token i is the first y with cdf_i(y) > u_i · total, u = U(key, (N,)).
    d, k = 3, 3
    W1, W2, x = _bigram(rng, d, k)
    pi = lpg.LinearAR.from_bigram(W1, W2)
    keys = jax.random.split(jax.random.PRNGKey(1), 30)
    ys = np.asarray(jax.jit(jax.vmap(lambda kk: pi.sample(x, N, key=kk)))(keys))
    us = np.asarray(jax.jit(jax.vmap(lambda kk: jax.random.uniform(kk, (N,))))(keys), np.float64)
    checked = 0
    for y, u in zip(ys, us):
        prev = None
        for i in range(N):
            logits = x.astype(np.float64) @ W1 + (W2[prev] if prev is not None else 0.0)
            p = np.exp(logits - logits.max())
            cdf = np.cumsum(p) / p.sum()
            # Stop at the measure-zero case of u within float32 rounding of a cdf step.
            if np.min(np.abs(cdf - u[i])) < 1e-5:
                break
            assert y[i] == int(np.searchsorted(cdf, u[i], side="right"))
            prev = y[i]
            checked += 1
    assert checked > 15 * N


@pytest.mark.parametrize("fmap_kind,k,N", [("bigram", 3, 3), ("bigram", 2, 5), ("planted", 3, 3)])
def test_sampler_has_the_exact_law(rng, fmap_kind, k, N):
    # Chi-square over the k^N cells, 20000 draws, fixed seed; p > P_MIN. (Bigram with
    # k + 1 <= N goes through the tabulated fast sampler, k + 1 > N through the scan.)
    n = 20000
    if fmap_kind == "bigram":
        W1, W2, x = _bigram(rng, 3, k, scale=0.5)
        fmap, w = lpg.Bigram(3, k), lpg.BigramParams(jnp.asarray(W1), jnp.asarray(W2))
    else:
        fmap = lpg.PlantedShift(k, 0.5)
        w = jnp.asarray(rng.standard_normal((fmap.d, k)), jnp.float32)
        x = jnp.eye(fmap.d)[1]
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    ys = np.asarray(jax.jit(jax.vmap(lambda kk: policy.sample(fmap, w, x, N, key=kk)))(keys))
    assert ys.shape == (n, N) and ys.min() >= 0 and ys.max() < k
    counts = np.bincount(cell_index(ys, k), minlength=k**N)
    lp = jax.jit(jax.vmap(lambda y: policy.log_prob(fmap, w, x, y)))(jnp.asarray(all_responses(k, N)))
    probs = np.exp(np.asarray(lp, np.float64))
    probs /= probs.sum()
    assert pooled_chisquare(counts, n * probs) > P_MIN


def test_length_mask_equals_truncated_response(rng):
    d, k, N = 3, 3, 5
    W1, W2, x = _bigram(rng, d, k)
    pi = lpg.LinearAR.from_bigram(W1, W2)
    y = jnp.asarray(rng.integers(0, k, N), jnp.int32)
    masked = jax.jit(lambda yy, n: (pi.log_prob(x, yy, length=n), pi.token_log_probs(x, yy, length=n)))
    for n in range(1, N + 1):
        lp, tl = masked(y, n)
        np.testing.assert_allclose(lp, jax.jit(lambda yy: pi.log_prob(x, yy))(y[:n]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lp, np_bigram_log_prob(W1, W2, x, np.asarray(y[:n])), rtol=1e-5)
        assert np.all(np.asarray(tl)[n:] == 0.0)
        # Whatever sits in the padding contributes nothing.
        y2 = y.at[n:].set((y[n:] + 1) % k)
        assert masked(y2, n)[0] == lp


def test_length_mask_kills_padding_gradients(rng):
    d, k, n = 3, 3, 2
    W1, W2, x = _bigram(rng, d, k)
    fmap = lpg.Bigram(d, k)
    y = jnp.asarray([0, 1, 2, 0, 1], jnp.int32)
    w = lpg.BigramParams(jnp.asarray(W1), jnp.asarray(W2))
    g_pad = jax.jit(jax.grad(lambda v: policy.log_prob(fmap, v, x, y, length=n)))(w)
    g_cut = jax.jit(jax.grad(lambda v: policy.log_prob(fmap, v, x, y[:n])))(w)
    for a, b in zip(g_pad, g_cut):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_jit_and_unjitted_agree(rng):
    d, k, N = 3, 3, 4
    W1, W2, x = _bigram(rng, d, k)
    pi = lpg.LinearAR.from_bigram(W1, W2)
    y = jnp.asarray([2, 0, 1, 1], jnp.int32)
    key = jax.random.PRNGKey(5)
    with jax.disable_jit():
        lp0, tl0, s0 = pi.log_prob(x, y, length=3), pi.token_log_probs(x, y), pi.sample(x, N, key=key)
    lp1 = jax.jit(lambda p: p.log_prob(x, y, length=3))(pi)
    tl1 = jax.jit(lambda p: p.token_log_probs(x, y))(pi)
    s1 = jax.jit(lambda p, kk: p.sample(x, N, key=kk))(pi, key)
    # Same numbers within float32 rounding (XLA may fuse differently); identical tokens.
    np.testing.assert_allclose(lp0, lp1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tl0, tl1, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(s0, s1)


def test_vmap_over_keys_equals_loop(rng):
    d, k, N = 3, 3, 4
    W1, W2, x = _bigram(rng, d, k)
    pi = lpg.LinearAR.from_bigram(W1, W2)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    one = jax.jit(lambda kk: pi.sample(x, N, key=kk))
    batched = np.asarray(jax.vmap(one)(keys))
    looped = np.stack([np.asarray(one(kk)) for kk in keys])
    np.testing.assert_array_equal(batched, looped)  # integer tokens: bit-identical


def test_from_bigram_shapes():
    pi = lpg.LinearAR.from_bigram(np.zeros((3, 4)), np.zeros((4, 4)))
    assert pi.k == 4 and pi.features.d == 3 and pi.features.dim == 3 * 4 + 4 * 4
    # Zero weights: the uniform policy, log p = -N log k.
    y = jnp.asarray([0, 3, 1])
    np.testing.assert_allclose(jax.jit(lambda p: p.log_prob(jnp.ones(3), y))(pi), -3 * np.log(4), rtol=1e-6)
