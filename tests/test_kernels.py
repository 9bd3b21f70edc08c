"""The bigram fast paths (``lpg.kernels``) against the plain JAX reference paths and an
independent NumPy implementation: the same tokens for the same uniforms and the exact
law (chi-square over all of ``Y^N``); the same gradients to float32 tolerance; the same
``y*`` exactly; large logit ranges; routing; and no retrace inside a seed/lr sweep."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import P_MIN, all_responses, cell_index, np_bigram_grad, np_bigram_token_log_probs, pooled_chisquare

import lpg
from lpg import kernels, policy, tasks


def _weights(rng, d, k, scale=0.7):
    W1 = jnp.asarray(scale * rng.standard_normal((d, k)), jnp.float32)
    W2 = jnp.asarray(scale * rng.standard_normal((k, k)), jnp.float32)
    return lpg.BigramParams(W1, W2)


def _contexts(rng, n, d):
    return jnp.asarray(rng.choice([-1.0, 1.0], size=(n, d)), jnp.float32)


def test_fast_path_applies_to_the_bigram_logits_only(rng):
    class Tweaked(lpg.Bigram):  # other logits: the kernels do not compute them
        def step_logits(self, w, code, prev):
            return 2.0 * super().step_logits(w, code, prev)

    class Renamed(lpg.Bigram):  # the same logits: the kernels still apply
        pass

    assert lpg.Bigram(3, 4).uses_kernels() and lpg.Bigram(3, 4).uses_kernels(5) and Renamed(3, 4).uses_kernels()
    assert not lpg.Bigram(3, 4).uses_kernels(4)  # k + 1 rows > n positions
    assert not Tweaked(3, 4).uses_kernels()
    tweaked, w = Tweaked(3, 4), _weights(rng, 3, 4, 0.7)
    x, y = _contexts(rng, 1, 3)[0], jnp.asarray([1, 3, 0, 2, 2, 1], jnp.int32)
    np.testing.assert_allclose(tweaked.token_log_probs(w, x, y), policy.token_log_probs_reference(tweaked, w, x, y),
                               rtol=1e-6)
    assert not np.allclose(tweaked.token_log_probs(w, x, y), lpg.Bigram(3, 4).token_log_probs(w, x, y))


@pytest.mark.parametrize("scale", [0.7, 60.0])
def test_sample_draws_the_reference_tokens_from_the_same_uniforms(rng, scale):
    # scale 60: logit ranges of several hundred, where any product of separately shifted
    # exponentials would underflow; every row is normalised by its own maximum.
    d, k, N, n = 4, 5, 12, 400
    fmap, w = lpg.Bigram(d, k), _weights(rng, d, k, scale)
    xs = _contexts(rng, n, d)
    keys = jax.random.split(jax.random.PRNGKey(5), n)
    fast = jax.jit(jax.vmap(lambda x, kk: policy.sample(fmap, w, x, N, key=kk)))(xs, keys)
    ref = jax.jit(jax.vmap(lambda x, kk: policy.sample_reference(fmap, w, x, N, key=kk)))(xs, keys)
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.dtype == np.int32 and fast.min() >= 0 and fast.max() < k
    # Only a uniform within float32 rounding of a CDF step may land differently.
    assert np.mean(fast == ref) > 0.999
    # The first token of each row decides the rest; rows that agree there agree mostly whole.
    assert np.mean(np.all(fast == ref, axis=1)) > 0.99


def test_sample_has_the_exact_law(rng):
    # Chi-square over the k^N cells, 20000 draws, fixed seed; N >= k + 1 takes the fast path.
    d, k, N, n = 3, 3, 4, 20000
    fmap, w = lpg.Bigram(d, k), _weights(rng, d, k, 0.5)
    x = _contexts(rng, 1, d)[0]
    assert fmap.uses_kernels(N)
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    ys = np.asarray(jax.jit(jax.vmap(lambda kk: policy.sample(fmap, w, x, N, key=kk)))(keys))
    counts = np.bincount(cell_index(ys, k), minlength=k**N)
    lp = np.array([np_bigram_token_log_probs(w.W1, w.W2, x, y).sum() for y in all_responses(k, N)])
    probs = np.exp(lp)
    assert abs(probs.sum() - 1.0) < 1e-9
    assert pooled_chisquare(counts, n * probs) > P_MIN


def test_sample_with_large_logits_picks_the_argmax(rng):
    d, k, N = 3, 4, 9
    w = _weights(rng, d, k, 1.0)
    w = lpg.BigramParams(1e3 * w.W1, 1e3 * w.W2)  # every step is a near-certain argmax
    x = _contexts(rng, 1, d)[0]
    ys = np.asarray(jax.jit(lambda kk: kernels.bigram_sample(w, x, jax.random.uniform(kk, (N,))))(jax.random.PRNGKey(0)))
    W1, W2, xx = (np.asarray(a, np.float64) for a in (w.W1, w.W2, x))
    prev = None
    for t in ys:
        logits = xx @ W1 + (W2[prev] if prev is not None else 0.0)
        assert t == int(np.argmax(logits))
        prev = t


@pytest.mark.parametrize("per_token,scale", [(False, 1.5), (True, 1.5), (True, 60.0)])
def test_weighted_grad_matches_numpy_and_autodiff(rng, per_token, scale):
    # scale 60: logit ranges of hundreds; the factorised softmax's normalisers underflow
    # (checked below) and the kernel must take its row-shifted table instead.
    d, k, N, B, length = 4, 5, 7, 6, 5
    fmap, w = lpg.Bigram(d, k), _weights(rng, d, k, scale)
    xs = jnp.asarray(rng.standard_normal((B, d)), jnp.float32)
    code = np.asarray(xs, np.float64) @ np.asarray(w.W1, np.float64)
    rows = np.vstack([np.zeros(k), np.asarray(w.W2, np.float64)])
    e1, e2 = np.exp(code - code.max(1, keepdims=True)), np.exp(rows - rows.max(1, keepdims=True))
    assert ((e1 @ e2.T).min() < kernels._SAFE_NORMALISER) == (scale > 10)
    ys = jnp.asarray(rng.integers(0, k, (B, N)), jnp.int32)
    coef = rng.standard_normal((B, N) if per_token else (B,)).astype(np.float32)
    fast = jax.jit(lambda w, c: policy.weighted_grad(fmap, w, xs, ys, c, length))(w, coef)
    auto = jax.jit(lambda w, c: policy.weighted_grad_reference(fmap, w, xs, ys, c, length))(w, coef)
    # Independent float64 reference: per-example loop, positions >= length dropped.
    g1, g2 = np.zeros((d, k)), np.zeros((k, k))
    for b in range(B):
        c = coef[b] if per_token else np.full(N, coef[b])
        a1, a2 = np_bigram_grad(w.W1, w.W2, xs[b], np.asarray(ys[b, :length]), c[:length])
        g1, g2 = g1 + a1, g2 + a2
    for got in (fast, auto):
        np.testing.assert_allclose(got.W1, g1, rtol=1e-4, atol=1e-4 * np.abs(g1).max())
        np.testing.assert_allclose(got.W2, g2, rtol=1e-4, atol=1e-4 * np.abs(g2).max())


def test_weighted_grad_at_figure_size_agrees_with_autodiff(rng):
    # Many tokens per bucket: float32 accumulation orders differ, results agree to 1e-4.
    d, k, N, B = 8, 8, 64, 128
    fmap, w = lpg.Bigram(d, k), _weights(rng, d, k, 2.0)
    xs = jnp.asarray(rng.standard_normal((B, d)), jnp.float32)
    ys = jnp.asarray(rng.integers(0, k, (B, N)), jnp.int32)
    coef = jnp.asarray(rng.choice([-1.0, 1.0], (B, N)) / (B * N), jnp.float32)
    fast = jax.jit(lambda w: policy.weighted_grad(fmap, w, xs, ys, coef, N))(w)
    auto = jax.jit(lambda w: policy.weighted_grad_reference(fmap, w, xs, ys, coef, N))(w)
    for a, b in zip(fast, auto):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_teacher_response_kernel_equals_the_reference(rng):
    key = jax.random.PRNGKey(3)
    for k in (5, 70):  # unrolled running maximum, and jnp.argmax above the unroll limit
        task = lpg.make_teacher(key, d=6, k=k, N=40)
        xs = task.sample_contexts(jax.random.PRNGKey(4), 64)
        ref = jax.jit(jax.vmap(lambda x: tasks.teacher_response(task.A, task.B, x, task.N)))(xs)
        fast = jax.jit(jax.vmap(lambda x: kernels.teacher_response(task.A, task.B, x, task.N)))(xs)
        np.testing.assert_array_equal(fast, ref)


def test_token_log_probs_kernel_matches_the_reference(rng):
    d, k, N = 4, 5, 11
    fmap, w = lpg.Bigram(d, k), _weights(rng, d, k, 3.0)
    xs = _contexts(rng, 8, d)
    ys = jnp.asarray(rng.integers(0, k, (8, N)), jnp.int32)
    ref = jax.jit(jax.vmap(lambda x, y: policy.token_log_probs_reference(fmap, w, x, y, 9)))(xs, ys)
    fast = jax.jit(jax.vmap(lambda x, y: kernels.bigram_token_log_probs(w, x, y, 9)))(xs, ys)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(fast)[:, 9:] == 0.0)


def test_pg_step_routes_to_the_fast_paths_and_agrees_with_the_reference(monkeypatch):
    # One Figure-1-style PG step (±1 process rewards, sampled path, Adagrad) taken with the
    # kernels and with every reference path: the same tokens, hence the same update.
    key = jax.random.PRNGKey(0)
    task = lpg.make_teacher(key, d=6, k=5, N=12, context="mixture", n_centres=6)
    problem = lpg.make_problem(task, key=key, n_test=8)
    alg = lpg.PolicyGradient(lpg.rewards.Process(signed=True), batch_size=64, optimizer="adagrad", loss_norm="token")
    h = lpg.hyper(lr=0.1)
    w0 = lpg.BigramParams(0.5 * task.A.T, 0.5 * task.B.T)
    state = alg.init(w0, h)
    step = lambda: jax.jit(lambda s, kk: alg.step(s, kk, problem, h))(state, jax.random.PRNGKey(7))  # noqa: E731
    fast, _ = step()
    monkeypatch.setattr(lpg.Bigram, "uses_kernels", lambda self, n=None: False)
    ref, _ = step()
    for a, b in zip(fast.w, ref.w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(fast.w.W2, w0.W2)


def test_sweep_over_seeds_and_learning_rates_traces_once():
    key = jax.random.PRNGKey(0)
    task = lpg.make_teacher(key, d=4, k=3, N=6)
    problem = lpg.make_problem(task, key=key, n_test=8)
    alg = lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), advantage="batch_mean", batch_size=8, optimizer="adagrad")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def sweep(keys, lr):
        run = lambda kk: lpg.train(alg, problem, lpg.Hyper(lr, jnp.inf, jnp.inf), kk, steps=4, log_every=2)  # noqa: E731
        return jax.vmap(run)(keys).curves.test_error

    for seed, lr in [(1, 0.1), (2, 0.3), (3, 1.0)]:
        out = sweep(jax.random.split(jax.random.PRNGKey(seed), 3), jnp.float32(lr))
        assert out.shape == (3, 3) and np.all(np.isfinite(out))
    chex.clear_trace_counter()
