"""API inputs are checked where they are concrete, with a one-line ``ValueError`` naming the
parameter, the value and what is allowed; under ``jit`` they are not (no extra operation,
the same bits), and :func:`lpg.checked` checks them at run time."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import all_responses, assert_raise_before_compiling, np_bigram_log_prob, np_bigram_token_log_probs

import lpg
from lpg import _checks, metrics, policy

KEY = jax.random.PRNGKey(0)
D, K = 3, 3


def _bigram():
    rng = np.random.default_rng(0)
    W1 = (0.7 * rng.standard_normal((D, K))).astype(np.float32)
    W2 = (0.7 * rng.standard_normal((K, K))).astype(np.float32)
    return W1, W2


W1, W2 = _bigram()
PI = lpg.LinearAR.from_bigram(W1, W2)
FMAP, W = PI.features, PI.w
X = jnp.asarray([1.0, -1.0, 1.0], jnp.float32)
Y = jnp.asarray([2, 0, 1], jnp.int32)


def _raises(call, param: str, value: str):
    """``call()`` raises a one-line ValueError naming ``param`` and ``value`` and what is allowed."""
    with pytest.raises(ValueError, match=rf"(^|\W){re.escape(param)}\W.*must.*{re.escape(value)}") as info:
        call()
    assert "\n" not in str(info.value)


# (call, parameter, the offending value as the message shows it)
FAULTS = {
    # hyperparameters: finite and in range
    "lr inf": (lambda: lpg.hyper(lr=float("inf")), "lr", "inf"),
    "lr 1e400": (lambda: lpg.hyper(lr=1e400), "lr", "inf"),
    "lr 10**400": (lambda: lpg.hyper(lr=10**400), "lr", "1000000"),
    "lr nan": (lambda: lpg.hyper(lr=float("nan")), "lr", "nan"),
    "lr negative": (lambda: lpg.hyper(lr=-0.1), "lr", "-0.1"),
    "m nan": (lambda: lpg.hyper(m=float("nan")), "m", "nan"),
    "m -inf": (lambda: lpg.hyper(m=-1e400), "m", "-inf"),
    "log_m nan": (lambda: lpg.hyper(log_m=float("nan")), "log_m", "nan"),
    "zeta nan": (lambda: lpg.hyper(zeta=float("nan")), "zeta", "nan"),
    "zeta 0": (lambda: lpg.hyper(zeta=0.0), "zeta", "0.0"),
    # tokens: integer, shape (N,), in [0, k)
    "token k": (lambda: policy.log_prob(FMAP, W, X, jnp.asarray([0, 3, 1])), "y", "y[1] = 3"),
    "token -1": (lambda: policy.token_log_probs(FMAP, W, X, jnp.asarray([0, 1, -1])), "y", "y[2] = -1"),
    "token k method": (lambda: PI.log_prob(X, np.asarray([5, 0, 0])), "y", "y[0] = 5"),
    "token table": (lambda: PI.log_probs_table(X, jnp.asarray([0, 9])), "y", "y[1] = 9"),
    "token padding": (lambda: PI.token_log_probs(X, jnp.asarray([0, 1, 4]), 2), "y", "y[2] = 4"),
    "token float": (lambda: PI.log_prob(X, jnp.asarray([0.0, 1.0])), "y", "float32"),
    "y 2-d": (lambda: PI.token_log_probs(X, jnp.zeros((2, 3), jnp.int32)), "y", "(2, 3)"),
    "y empty": (lambda: PI.log_prob(X, jnp.zeros((0,), jnp.int32)), "y", "(0,)"),
    # length in [0, N]
    "length > N": (lambda: PI.log_prob(X, Y, 4), "length", "4"),
    "length < 0": (lambda: policy.token_log_probs(FMAP, W, X, Y, -1), "length", "-1"),
    "length float": (lambda: PI.log_prob(X, Y, 1.5), "length", "1.5"),
    "length array": (lambda: PI.log_prob(X, Y, jnp.asarray([1, 2])), "length", "[1, 2]"),
    "sample length": (lambda: PI.sample(X, 3, key=KEY, length=5), "length", "5"),
    "sample n": (lambda: policy.sample(FMAP, W, X, 0, key=KEY), "n", "0"),
    # x of the feature map's dimension d
    "x d": (lambda: PI.log_prob(jnp.ones(4), Y), "x", "(4,)"),
    "x 2-d": (lambda: policy.token_log_probs(FMAP, W, jnp.ones((2, 3)), Y), "x", "(2, 3)"),
    "sample x": (lambda: PI.sample(jnp.ones(2), 3, key=KEY), "x", "(2,)"),
    # metrics
    "lq empty": (lambda: metrics.likelihood_quantile(jnp.zeros((0,)), 0.5), "log_likelihoods", "(0,)"),
    "lq empty batched": (lambda: lpg.likelihood_quantile(jnp.zeros((2, 0)), 0.5), "log_likelihoods", "(2, 0)"),
    "lq scalar": (lambda: lpg.likelihood_quantile(jnp.float32(-1.0), 0.5), "log_likelihoods", "()"),
    "lq eps inf": (lambda: lpg.likelihood_quantile(jnp.zeros(3), float("inf")), "eps", "inf"),
    "token lq empty": (lambda: lpg.token_likelihood_quantile(jnp.zeros((3, 0)), 0.5), "token_log_likelihoods",
                       "(3, 0)"),
    "token lq 1-d": (lambda: lpg.token_likelihood_quantile(jnp.zeros(3), 0.5), "token_log_likelihoods", "(3,)"),
    "token lq length": (lambda: lpg.token_likelihood_quantile(jnp.zeros((3, 2)), 0.5, 3), "length", "3"),
    "error ys": (lambda: metrics.error(FMAP, W, jnp.ones((2, D)), jnp.asarray([[0, 1], [2, 3]])), "ys", "ys[1, 1] = 3"),
    "error xs rows": (lambda: metrics.error(FMAP, W, jnp.ones((3, D)), jnp.zeros((2, 2), jnp.int32)), "xs", "(3, 3)"),
    "error xs d": (lambda: metrics.sequence_log_likelihoods(FMAP, W, jnp.ones((2, 5)), jnp.zeros((2, 2), jnp.int32)),
                   "xs", "(2, 5)"),
    "token lls length": (lambda: metrics.token_log_likelihoods(FMAP, W, jnp.ones((2, D)), jnp.zeros((2, 2), jnp.int32),
                                                               3), "length", "3"),
    # tasks
    "n_centres > d": (lambda: lpg.make_teacher(KEY, context="mixture", n_centres=10, d=4, k=3, N=2), "n_centres", "10"),
    "n_centres default > d": (lambda: lpg.make_teacher(KEY, context="mixture", d=4, k=3, N=2), "n_centres", "32"),
    "n_centres 0": (lambda: lpg.make_teacher(KEY, n_centres=0, d=4, k=3, N=2), "n_centres", "0"),
    "sigma inf": (lambda: lpg.make_teacher(KEY, context="mixture", n_centres=2, sigma=1e400, d=4, k=3, N=2), "sigma",
                  "inf"),
    "sigma nan": (lambda: lpg.make_teacher(KEY, sigma=float("nan"), d=4, k=3, N=2), "sigma", "nan"),
    "teacher k bool": (lambda: lpg.make_teacher(KEY, d=4, k=True, N=2), "k", "True"),
    "teacher N float": (lambda: lpg.make_teacher(KEY, d=4, k=3, N=2.0), "N", "2.0"),
    "planted gamma inf": (lambda: lpg.make_planted(KEY, k=3, N=2, gamma=float("inf")), "gamma", "inf"),
    "planted gamma nan": (lambda: lpg.make_planted(KEY, k=3, N=2, gamma=float("nan")), "gamma", "nan"),
    "planted N": (lambda: lpg.make_planted(KEY, k=3, N=-1, gamma=0.5), "N", "-1"),
    "planted n_contexts": (lambda: lpg.make_planted(KEY, k=3, N=2, gamma=0.5, n_contexts=0), "n_contexts", "0"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_a_one_line_value_error(name):
    call, param, value = FAULTS[name]
    _raises(call, param, value)


def test_faults_raise_before_compiling():
    """No backend compile on the way to the errors (the hook is seen to fire first)."""
    names = ("lr inf", "token k", "token -1", "length > N", "x d", "lq empty", "n_centres > d", "error ys")
    assert_raise_before_compiling({name: FAULTS[name][0] for name in names})


def test_edges_that_are_allowed():
    h = lpg.hyper(m=float("inf"), zeta=float("inf"))
    assert math.isinf(float(h.log_m)) and math.isinf(float(h.zeta))
    assert float(lpg.hyper(m=10**400).log_m) == pytest.approx(400 * math.log(10), rel=1e-6)  # an exact big count
    assert float(lpg.hyper(log_m=0.0, zeta=1.0).log_m) == 0.0
    assert float(PI.log_prob(X, Y, 0)) == 0.0  # an empty response
    np.testing.assert_array_equal(PI.token_log_probs(X, Y, 3), PI.token_log_probs(X, Y))
    assert lpg.make_teacher(KEY, context="mixture", n_centres=4, d=4, k=3, N=2).n_centres == 4
    assert lpg.make_teacher(KEY, d=4, k=3, N=2, sigma=0.0).n_centres == 32  # rademacher: the centres are unused
    assert float(lpg.likelihood_quantile(jnp.asarray([-2.0]), 0.5)) == -2.0
    # The uniform policy gives k^-N to any response; NumPy tokens pass the checks.
    assert float(PI.uniform(FMAP).log_prob(X, np.asarray([0, 1, 2], np.int32))) == pytest.approx(-3 * math.log(3),
                                                                                                  rel=1e-6)


def test_checked_inputs_give_the_numpy_numbers():
    """Every response of Y^N against a plain NumPy bigram (float64), on both the reference
    (N < k + 1) and the kernel (N >= k + 1) paths, eager and under jit."""
    for N in (2, 4):
        ys = all_responses(K, N)
        want_tl = np.array([np_bigram_token_log_probs(W1, W2, np.asarray(X), y) for y in ys])
        want_lp = np.array([np_bigram_log_prob(W1, W2, np.asarray(X), y) for y in ys])
        eager = np.array([np.asarray(PI.token_log_probs(X, jnp.asarray(y))) for y in ys[:5]])
        np.testing.assert_allclose(eager, want_tl[:5], rtol=1e-5, atol=1e-5)
        lp = jax.jit(jax.vmap(lambda y: policy.log_prob(FMAP, W, X, y)))(jnp.asarray(ys))
        np.testing.assert_allclose(lp, want_lp, rtol=1e-5, atol=1e-5)
        err = metrics.error(FMAP, W, jnp.tile(X, (len(ys), 1)), jnp.asarray(ys))
        np.testing.assert_allclose(float(err), 1 - np.mean(np.exp(want_lp)), rtol=1e-5, atol=1e-6)


# Outputs on a fixed case, recorded before the checks were added (float32/int32 bytes, hex).
PINNED = {
    "tl6_jit": "float32:e38f56bf29a7c1bf30c849bfdc779fbe0000000000000000",
    "tl6": "float32:e38f56bf29a7c1bf30c849bfdc779fbe0000000000000000",
    "lp3_jit": "float32:011c6fc0",
    "lp3": "float32:011c6fc0",
    "lpp_jit": "float32:7a5476c0",
    "s8": "int32:0100000002000000000000000100000001000000010000000100000001000000",
    "s8_jit": "int32:0100000002000000000000000100000001000000010000000100000001000000",
    "s2": "int32:0100000002000000",
    "lq": "float32:1002cebf",
    "err": "float32:8e837b3f",
}


def _pinned_case() -> dict:
    rng = np.random.default_rng(0)
    rng.standard_normal((D, K)), rng.standard_normal((K, K))  # W1, W2 of _bigram()
    y6, y3 = jnp.asarray([0, 2, 1, 1, 0, 2], jnp.int32), Y
    pl = lpg.PlantedShift(3, 0.5)
    wp = jnp.asarray(rng.standard_normal((pl.d, 3)), jnp.float32)
    key = jax.random.PRNGKey(7)
    return {
        "tl6_jit": jax.jit(lambda y: policy.token_log_probs(FMAP, W, X, y, 4))(y6),
        "tl6": PI.token_log_probs(X, y6, 4),
        "lp3_jit": jax.jit(lambda y: policy.log_prob(FMAP, W, X, y))(y3),
        "lp3": PI.log_prob(X, y3),
        "lpp_jit": jax.jit(lambda y: policy.log_prob(pl, wp, jnp.eye(pl.d)[1], y, 2))(y3),
        "s8": PI.sample(X, 8, key=key),
        "s8_jit": jax.jit(lambda kk: policy.sample(FMAP, W, X, 8, key=kk))(key),
        "s2": PI.sample(X, 2, key=key),
        "lq": metrics.likelihood_quantile(jnp.log(jnp.asarray([0.1, 0.5, 0.2, 0.3])), 0.3),
        "err": metrics.error(FMAP, W, jnp.stack([X, -X]), jnp.stack([y3, y3[::-1]])),
    }


def test_same_bits_as_before_the_checks():
    got = {name: f"{np.asarray(v).dtype}:{np.asarray(v).tobytes().hex()}" for name, v in _pinned_case().items()}
    assert got == PINNED


def _lowered(body) -> str:
    def f(w, x, y):
        return body(w, x, y)

    return jax.jit(f).lower(W, X, jnp.asarray([0, 2, 1, 1, 0], jnp.int32)).as_text()


def test_unchecked_jit_path_has_no_extra_operation():
    """Under jit the public functions lower to exactly the feature map's own path, also
    after a checked variant was traced (the run-time checks do not leak)."""
    direct = _lowered(lambda w, x, y: jnp.sum(FMAP.token_log_probs(w, x, y, 3)))
    assert _lowered(lambda w, x, y: policy.log_prob(FMAP, w, x, y, 3)) == direct
    lpg.checked(lambda w, x, y: policy.log_prob(FMAP, w, x, y, 3))(W, X, jnp.asarray([0, 2, 1, 1, 0]))
    assert not _checks._RUNTIME.get()
    assert _lowered(lambda w, x, y: policy.log_prob(FMAP, w, x, y, 3)) == direct


@pytest.mark.parametrize("N", [3, 5])  # the reference and the kernel paths
def test_checked_catches_bad_tokens_under_jit(N):
    log_lik = lpg.checked(lambda w, x, y, length=None: policy.log_prob(FMAP, w, x, y, length))
    good = jnp.asarray([0, 2, 1, 1, 0][:N], jnp.int32)
    assert float(log_lik(W, X, good)) == float(jax.jit(lambda y: policy.log_prob(FMAP, W, X, y))(good))
    for bad, text in ((good.at[1].set(K), f"y[1] = {K}"), (good.at[N - 1].set(-1), f"y[{N - 1}] = -1")):
        with pytest.raises(ValueError, match=re.escape(f"y must hold tokens in [0, {K}) (k = {K}), got {text}")):
            log_lik(W, X, bad)
    with pytest.raises(ValueError, match=re.escape(f"length must be None or an integer in [0, {N}], got {N + 1}")):
        log_lik(W, X, good, jnp.int32(N + 1))
    assert float(log_lik(W, X, good, jnp.int32(N))) == pytest.approx(float(log_lik(W, X, good)))


def test_checked_under_vmap_and_sampling():
    error = lpg.checked(lambda w, xs, ys: metrics.error(FMAP, w, xs, ys))
    ys = jnp.asarray([[0, 1, 2], [2, 2, 1]], jnp.int32)
    xs = jnp.stack([X, -X])
    assert float(error(W, xs, ys)) == pytest.approx(float(metrics.error(FMAP, W, xs, ys)), rel=1e-6)
    with pytest.raises(ValueError, match=re.escape("ys[1, 0] = -2")):
        error(W, xs, ys.at[1, 0].set(-2))
    draw = lpg.checked(lambda w, key: policy.sample(FMAP, w, X, 6, key=key))
    np.testing.assert_array_equal(draw(W, KEY), PI.sample(X, 6, key=KEY))  # no false alarm (index, nan, div)
