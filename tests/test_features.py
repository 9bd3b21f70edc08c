"""Feature maps: the bigram Jacobian against its explicit construction, and the
planted-margin family (``PlantedShift``) has *exactly* the prescribed margin γ, at every
N, and γ is the max margin of the class (KKT certificate via non-negative least squares)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

import lpg
from lpg.features import START
from lpg.tasks import margin

pytestmark = pytest.mark.usefixtures("fast_compile")

# (k, gamma, n_contexts): None means the largest S with ||phi|| <= 1.
PLANTED_CASES = [(2, 0.5, None), (3, 0.5, 2), (4, 0.6, None), (5, 0.3, 4)]


def bigram_phi(x, prev, y, k):
    """``[vec(x e_yᵀ); vec(e_prev e_yᵀ)]`` (second block zero at i = 1), laid out like
    ``BigramParams(W1 (d, k), W2 (k, k))`` flattened row-major."""
    e_y = np.eye(k)[y]
    block2 = np.zeros((k, k)) if prev == START else np.outer(np.eye(k)[prev], e_y)
    return np.concatenate([np.outer(x, e_y).ravel(), block2.ravel()])


def planted_phi(fmap, c, prev, y):
    """``a · e_c ⊗ e_{(y − prev) mod k}`` with ``prev := 0`` at i = 1 (PlantedShift)."""
    k, S = fmap.k, fmap.d
    phi = np.zeros((S, k))
    phi[c, (y - max(prev, 0)) % k] = fmap.scale
    return phi.ravel()


def _features_all(fmap, xs):
    """lpg's Jacobian features for every context and every prev in {START, 0..k-1}:
    ``(n, k+1, k, D)``."""
    prevs = jnp.arange(-1, fmap.k)
    return np.asarray(jax.jit(jax.vmap(lambda x: jax.vmap(lambda p: fmap.features(x, p))(prevs)))(xs), np.float64)


def test_bigram_features_are_the_explicit_construction(rng):
    d, k = 3, 3
    fmap = lpg.Bigram(d, k)
    xs = rng.standard_normal((2, d)).astype(np.float32)
    feats = _features_all(fmap, jnp.asarray(xs))
    assert feats.shape == (2, k + 1, k, d * k + k * k) and fmap.dim == d * k + k * k
    for a, x in enumerate(xs):
        for j, prev in enumerate(range(-1, k)):
            for y in range(k):
                np.testing.assert_allclose(feats[a, j, y], bigram_phi(x, prev, y, k), atol=1e-6)


@pytest.mark.parametrize("k,gamma,S", PLANTED_CASES)
def test_planted_margin_is_exactly_gamma(k, gamma, S):
    fmap = lpg.PlantedShift(k, gamma, S)
    assert fmap.n_contexts == (S if S is not None else int(k / ((k - 1) * gamma**2) + 1e-9))
    S = fmap.n_contexts
    xs = jnp.eye(S)
    feats = _features_all(fmap, xs)  # (S, k+1, k, D)
    assert feats.shape == (S, k + 1, k, S * k)
    # lpg's features are the documented construction, and ||phi|| <= 1 everywhere.
    for c in range(S):
        for j, prev in enumerate(range(-1, k)):
            for y in range(k):
                np.testing.assert_allclose(feats[c, j, y], planted_phi(fmap, c, prev, y), atol=1e-6)
    assert np.linalg.norm(feats, axis=-1).max() <= 1.0 + 1e-6
    margins = {}
    for N in (2, 5):
        task = lpg.make_planted(jax.random.PRNGKey(k * 100 + N), k=k, N=N, gamma=gamma, n_contexts=S)
        w_star = np.asarray(task.planted_weights(), np.float64).ravel()
        np.testing.assert_allclose(np.linalg.norm(w_star), 1.0, rtol=1e-6)
        shifts = np.asarray(task.shifts)
        ys = np.asarray(jax.jit(jax.vmap(task.response))(xs))
        gaps, directions = [], []
        for c in range(S):
            # y*_i(c) = i·δ_c mod k
            np.testing.assert_array_equal(ys[c], (np.arange(1, N + 1) * shifts[c]) % k)
            prev = START
            for i in range(N):
                good = planted_phi(fmap, c, prev, ys[c, i])
                for y in range(k):
                    if y != ys[c, i]:
                        v = good - planted_phi(fmap, c, prev, y)
                        gaps.append(w_star @ v)
                        directions.append(v)
                prev = ys[c, i]
        gaps = np.array(gaps)
        # Every constraint is active and equals gamma exactly (float32 weights).
        np.testing.assert_allclose(gaps, gamma, rtol=1e-5)
        margins[N] = gaps.min()
        # KKT: w* is a non-negative combination of the active directions, so no unit
        # vector has a larger margin.
        coef, residual = nnls(np.array(directions).T, w_star)
        assert residual < 1e-5 and np.all(coef >= 0)
        # lpg's margin (with max ||phi|| <= 1 already) agrees.
        got = float(jax.jit(lambda: margin(fmap, task.planted_weights(), xs, jnp.asarray(ys)))())
        np.testing.assert_allclose(got, gamma, rtol=1e-5)
    np.testing.assert_allclose(margins[2], margins[5], rtol=1e-6)


def test_planted_max_margin_beats_random_directions(rng):
    # A sanity check of the KKT certificate: no random unit w does better than gamma.
    k, gamma = 3, 0.5
    task = lpg.make_planted(jax.random.PRNGKey(0), k=k, N=3, gamma=gamma)
    fmap, S = task.fmap, task.d
    ys = np.asarray(jax.vmap(task.response)(jnp.eye(S)))
    dirs = []
    for c in range(S):
        prev = START
        for i in range(3):
            for y in range(k):
                if y != ys[c, i]:
                    dirs.append(planted_phi(fmap, c, prev, ys[c, i]) - planted_phi(fmap, c, prev, y))
            prev = ys[c, i]
    dirs = np.array(dirs)
    w = rng.standard_normal((2000, S * k))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    assert (w @ dirs.T).min(axis=1).max() < gamma


def test_planted_dimension_reaches_lower_bound_regime():
    # D = S·k >= k/γ² when 1/γ² is an integer (C6's regime).
    for k, gamma in [(2, 0.5), (4, 0.5), (3, 1 / 3)]:
        fmap = lpg.PlantedShift(k, gamma)
        assert fmap.dim >= k / gamma**2 - 1e-9
        assert fmap.scale <= 1.0 + 1e-9
