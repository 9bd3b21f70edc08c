"""Tasks: the teacher's ``y*`` and margin brute-forced in NumPy, the context
distributions, and the base models that put a prescribed likelihood α on ``y*``."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_bigram_log_prob, np_bigram_logits

import lpg
from lpg import tasks

pytestmark = pytest.mark.usefixtures("fast_compile")


def np_teacher_response(A, B, x, N):
    A, B, x = (np.asarray(a, np.float64) for a in (A, B, x))
    ys, prev = [], None
    for _ in range(N):
        logits = A @ x + (B[:, prev] if prev is not None else 0.0)
        prev = int(np.argmax(logits))
        ys.append(prev)
    return np.array(ys)


def test_teacher_response_matches_numpy_loop():
    d, k, N = 4, 5, 7
    task = lpg.make_teacher(jax.random.PRNGKey(0), d=d, k=k, N=N)
    xs = task.sample_contexts(jax.random.PRNGKey(1), 40)
    got = np.asarray(jax.jit(jax.vmap(lambda x: lpg.teacher_response(task.A, task.B, x, N)))(xs))
    want = np.array([np_teacher_response(task.A, task.B, x, N) for x in np.asarray(xs)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(task.response))(xs)), want)
    # The teacher's own bigram weights (W1 = Aᵀ, W2 = Bᵀ) put the argmax on y* at every
    # position along the correct prefix: the task is realisable.
    W1, W2 = (np.asarray(a) for a in task.teacher_weights())
    for x, y in zip(np.asarray(xs), want):
        np.testing.assert_array_equal(np.argmax(np_bigram_logits(W1, W2, x, y), axis=1), y)


def test_teacher_margin_brute_force():
    d, k, N = 3, 3, 3
    task = lpg.make_teacher(jax.random.PRNGKey(3), d=d, k=k, N=N)
    xs = np.array(list(itertools.product([-1.0, 1.0], repeat=d)), np.float32)  # all of {±1}^3
    A, B = np.asarray(task.A, np.float64), np.asarray(task.B, np.float64)
    w = np.concatenate([A.T.ravel(), B.T.ravel()])
    w /= np.linalg.norm(w)

    def phi(x, prev, y):  # [vec(x e_yᵀ); vec(e_prev e_yᵀ)], second block 0 at i = 1
        e_y = np.eye(k)[y]
        second = np.zeros((k, k)) if prev is None else np.outer(np.eye(k)[prev], e_y)
        return np.concatenate([np.outer(x, e_y).ravel(), second.ravel()])

    R = max(np.linalg.norm(phi(x, p, y)) for x in xs for p in [None, *range(k)] for y in range(k))
    np.testing.assert_allclose(R, math.sqrt(d + 1))
    gaps = []
    for x in xs:
        ys = np_teacher_response(A, B, x, N)
        prev = None
        for i in range(N):
            for y in range(k):
                if y != ys[i]:
                    gaps.append(w @ (phi(x, prev, ys[i]) - phi(x, prev, y)) / R)
            prev = ys[i]
    want = min(gaps)
    assert want > 0
    got = float(jax.jit(tasks.teacher_margin)(task, jnp.asarray(xs)))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_contexts():
    d, sigma = 6, 0.3
    task = lpg.make_teacher(jax.random.PRNGKey(0), d=d, k=3, N=2, context="mixture", n_centres=d, sigma=sigma)
    centres = np.asarray(task.centres, np.float64)
    assert centres.shape == (d, d)
    np.testing.assert_allclose(centres, math.sqrt(d) * np.eye(d), atol=1e-6)
    xs = np.asarray(jax.jit(lambda kk: task.sample_contexts(kk, 2000))(jax.random.PRNGKey(1)), np.float64)
    np.testing.assert_allclose(np.linalg.norm(xs, axis=1), math.sqrt(d), rtol=1e-5)
    # x ∝ e_c + ε with ‖ε‖ ≤ σ: the ray through x passes within σ of some centre e_c,
    # i.e. sin(angle(x, e_c)) ≤ σ (and cos > 0).
    cos = xs / np.linalg.norm(xs, axis=1, keepdims=True)  # cos to e_c is the c-th coordinate
    sin = np.sqrt(np.clip(1 - cos**2, 0, None))
    best = np.where(cos > 0, sin, np.inf).min(axis=1)
    # (Unclipped, a d=6 Gaussian of std σ has norm ≈ σ√6 and would break this often.)
    assert np.all(best <= sigma + 1e-5)
    # The noise is really there and reaches the clipping radius.
    assert np.mean(best > 0.5 * sigma) > 0.5 and best.max() > 0.9 * sigma
    # Every centre is used.
    assert len(np.unique(np.argmax(xs, axis=1))) == d
    rad = lpg.make_teacher(jax.random.PRNGKey(0), d=d, k=3, N=2)
    xr = np.asarray(jax.jit(lambda kk: rad.sample_contexts(kk, 100))(jax.random.PRNGKey(2)))
    assert set(np.unique(xr)) == {-1.0, 1.0}


def np_planted_log_prob(fmap, w, c, y):
    w = np.asarray(w, np.float64)
    total, prev = 0.0, 0
    for t in y:
        logits = fmap.scale * w[c, (np.arange(fmap.k) - prev) % fmap.k]
        total += logits[t] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        prev = t
    return total


@pytest.mark.parametrize("log_alpha", [math.log(0.3), -3 * math.log(3) - 1.0, -20 * math.log(32)])
def test_planted_alpha_base_puts_alpha_on_y_star(log_alpha):
    task = lpg.make_planted(jax.random.PRNGKey(7), k=3, N=4, gamma=0.5)
    w0 = tasks.planted_alpha_base(task, math.exp(log_alpha))
    ys = np.asarray(jax.vmap(task.response)(task.contexts))
    got = [np_planted_log_prob(task.fmap, w0, c, ys[c]) for c in range(task.d)]
    np.testing.assert_allclose(got, log_alpha, rtol=2e-5)
    np.testing.assert_allclose(jax.jit(tasks.log_alpha_planted_base)(task, w0), log_alpha, rtol=2e-5)


def test_planted_alpha_base_in_log_space_below_float32():
    # 32^-128 underflows float32; log_alpha carries it exactly.
    log_alpha = -128 * math.log(32)
    task = lpg.make_planted(jax.random.PRNGKey(9), k=32, N=128, gamma=0.5)
    w0 = tasks.planted_alpha_base(task, log_alpha=log_alpha)
    ys = np.asarray(jax.vmap(task.response)(task.contexts))
    got = [np_planted_log_prob(task.fmap, np.asarray(w0, np.float64), c, ys[c]) for c in range(task.d)]
    np.testing.assert_allclose(got, log_alpha, rtol=1e-5)
    with pytest.raises(ValueError, match="log_alpha"):
        tasks.planted_alpha_base(task, log_alpha=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        tasks.planted_alpha_base(task, 0.5, log_alpha=-1.0)


def test_planted_alpha_base_per_context():
    task = lpg.make_planted(jax.random.PRNGKey(8), k=4, N=3, gamma=0.5)
    alphas = np.geomspace(1e-6, 0.9, task.d).astype(np.float32)
    w0 = tasks.planted_alpha_base(task, alphas)
    ys = np.asarray(jax.vmap(task.response)(task.contexts))
    got = [np_planted_log_prob(task.fmap, w0, c, ys[c]) for c in range(task.d)]
    np.testing.assert_allclose(got, np.log(alphas.astype(np.float64)), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("alpha,n_ctx", [(1e-3, 1), (1e-3, 5), (0.5, 5)])
def test_alpha_base_mean_log_likelihood(alpha, n_ctx):
    d, k, N = 3, 3, 3
    task = lpg.make_teacher(jax.random.PRNGKey(4), d=d, k=k, N=N)
    xs = task.sample_contexts(jax.random.PRNGKey(5), n_ctx)
    ys = jax.vmap(task.response)(xs)
    w0 = jax.jit(lambda a: tasks.alpha_base(task.feature_map(), task.teacher_weights(), xs, ys, a))(alpha)
    W1, W2 = (np.asarray(a) for a in w0)
    lls = [np_bigram_log_prob(W1, W2, x, y) for x, y in zip(np.asarray(xs), np.asarray(ys))]
    np.testing.assert_allclose(np.mean(lls), math.log(alpha), atol=1e-3)
    # w0 points along w* (a rescaling of the teacher).
    w_star = np.concatenate([np.asarray(task.A).T.ravel(), np.asarray(task.B).T.ravel()])
    w = np.concatenate([W1.ravel(), W2.ravel()])
    np.testing.assert_allclose(abs(w @ w_star) / np.linalg.norm(w) / np.linalg.norm(w_star), 1.0, rtol=1e-5)


def test_uniform_base_is_uniform():
    fmap = lpg.Bigram(3, 4)
    for a in jax.tree_util.tree_leaves(tasks.uniform_base(fmap)):
        assert np.all(np.asarray(a) == 0)
