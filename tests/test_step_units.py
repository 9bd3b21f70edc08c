"""Both readings of the adaptive step (``step_unit``) for policy gradient and Algorithm 1,
against a float64 NumPy loop (``conftest.np_token_steps``: for each position in order,
``W += mean_b c_{b,i}·g_b/(4 + 2‖g_b‖²)``) and the whole-response step
``G/(4 + 2‖G‖²)``, ``G = mean_b Σ_i c_{b,i} g_{b,i}``.

The updates are made deterministic: Algorithm 1 with ``m`` so large that every context's
fallback verifies (the accepted response is ``y*``); policy gradient sampling from a base
model whose logits are so far apart that it puts probability 1 (in float32) on its greedy
response (the teacher's first token, random ones after it), so the rewards, and with them
the coefficients, follow from that response alone (computed here from the reward's
definition). A batch of distinct contexts, a padded
position, signed and 0/1 rewards, groups of 2 (the event path sums a group into one row).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import flat, np_bigram_grad, np_bigram_logits, np_token_steps

import lpg

pytestmark = pytest.mark.usefixtures("fast_compile")

D, K, N, LENGTH = 3, 3, 4, 3  # the 4th position is padding


@pytest.fixture(scope="module")
def setup():
    task = lpg.make_teacher(jax.random.PRNGKey(10), d=D, k=K, N=N)  # logit gaps > 350 in the base below
    rng = np.random.default_rng(3)
    w0 = lpg.BigramParams(jnp.asarray(0.5 * rng.standard_normal((D, K)), jnp.float32),
                          jnp.asarray(0.5 * rng.standard_normal((K, K)), jnp.float32))
    # a base whose first token is the teacher's (W1 = s·Aᵀ) and whose next ones are random
    base = lpg.BigramParams(jnp.asarray(2000 * task.A.T, jnp.float32),
                            jnp.asarray(2000 * rng.standard_normal((K, K)), jnp.float32))
    problem = lpg.make_problem(task, key=jax.random.PRNGKey(5), n_test=4, base=base, length=LENGTH)
    return dict(task=task, w0=w0, base=base, problem=problem)


def _greedy(W1, W2, x):
    """The greedy response of a bigram policy and its smallest logit gap (float64)."""
    y, gaps = [], []
    for i in range(N):
        logits = np_bigram_logits(W1, W2, x, np.array(y + [0]))[i]
        top = np.sort(logits)
        y.append(int(np.argmax(logits)))
        gaps.append(top[-1] - top[-2])
    return np.array(y), min(gaps)


def _response_step(w0, xs, ys, coef):
    """One adaptive step on ``G = mean_b Σ_i c_{b,i} ∇ log p(y_{b,i}|·)`` (float64)."""
    G = np.mean([np.concatenate([g.ravel() for g in np_bigram_grad(w0.W1, w0.W2, x, y, c)])
                 for x, y, c in zip(xs, ys, coef)], axis=0)
    return flat(w0) + G / (4.0 + 2.0 * G @ G)


def _step(alg, setup, key):
    h = lpg.hyper(lr=1.0, m=10**4)
    return jax.jit(lambda k: alg.step(alg.init(setup["w0"], h), k, setup["problem"], h))(key)


def _drawn(setup, key, batch_size):
    """The contexts and ``y*`` a PG or Algorithm 1 step with ``key`` drew."""
    xs, ys = setup["problem"].contexts(jax.random.split(key)[0], batch_size)
    return np.asarray(xs, np.float64), np.array(ys)


def _check(setup, algs, key, xs, ys, coef):
    """Both readings' new weights against the references; the token reading's
    ``grad_norm`` is how far ``w`` moved."""
    w0 = setup["w0"]
    want = {"token": np_token_steps(w0.W1, w0.W2, xs, ys, coef), "response": _response_step(w0, xs, ys, coef)}
    for unit, alg in algs.items():
        state, metrics = _step(alg, setup, key)
        np.testing.assert_allclose(flat(state.w), want[unit], rtol=1e-4, atol=1e-5, err_msg=unit)
        assert int(state.step) == 1
        if unit == "token":
            np.testing.assert_allclose(float(metrics.grad_norm), np.linalg.norm(want[unit] - flat(w0)), rtol=1e-4)
    assert np.abs(want["token"] - want["response"]).max() > 1e-3  # the readings differ here


@pytest.mark.parametrize("path", ["event", "sample"])
def test_algorithm1_token_step_on_the_accepted_responses(setup, path):
    key, batch_size = jax.random.PRNGKey(7), 3
    xs, ys = _drawn(setup, key, batch_size)
    assert len({tuple(y[:LENGTH]) for y in ys}) > 1  # distinct responses
    coef = np.broadcast_to(np.arange(N) < LENGTH, (batch_size, N)).astype(float)  # every context accepts y*
    algs = {u: lpg.BestOfM(batch_size=batch_size, event_path=path == "event", step_unit=u)
            for u in ("token", "response")}
    _check(setup, algs, key, xs, ys, coef)


PG_CASES = [  # reward, signed, event path
    ("outcome", True, False), ("process", True, False), ("process", False, False), ("process", False, True),
]


@pytest.mark.parametrize("reward,signed,event", PG_CASES)
def test_policy_gradient_token_step_on_the_rewarded_responses(setup, reward, signed, event):
    key, batch_size, group_size = jax.random.PRNGKey(11), 3, 2
    xs, ys = _drawn(setup, key, batch_size)
    base = setup["base"]
    coef = np.zeros((batch_size, N))
    for b in range(batch_size):
        y0, gap = _greedy(base.W1, base.W2, xs[b])
        assert gap > 110  # the base samples y0 with probability 1 in float32 (e^-110 underflows)
        hit = np.cumprod(y0[:LENGTH] == ys[b, :LENGTH]).astype(bool)  # correct prefixes
        r = hit if reward == "process" else np.full(LENGTH, hit[-1])
        coef[b, :LENGTH] = 2.0 * r - 1.0 if signed else r
        ys[b] = y0  # the sampled response; on the event path only y* is updated, with c = 0 elsewhere
    assert len(np.unique(coef[:, :LENGTH])) > 1  # mixed coefficients
    algs = {u: lpg.PolicyGradient(lpg.rewards.by_name(reward, signed=signed), behaviour="base", batch_size=batch_size,
                                  group_size=group_size, event_path=event, step_unit=u)
            for u in ("token", "response")}
    _check(setup, algs, key, xs, ys, coef)


def test_one_token_one_context_the_readings_agree(setup):
    # at one position and one row the token step is the response step
    problem = lpg.make_problem(setup["task"], key=jax.random.PRNGKey(5), n_test=4, base=setup["base"], length=1)
    h, key = lpg.hyper(lr=1.0, m=10**4), jax.random.PRNGKey(2)
    for make in (lambda u: lpg.BestOfM(step_unit=u),
                 lambda u: lpg.PolicyGradient(lpg.rewards.by_name("outcome", signed=True), step_unit=u)):
        ws = [jax.jit(lambda k, a=make(u): a.step(a.init(setup["w0"], h), k, problem, h)[0].w)(key)
              for u in ("token", "response")]
        assert np.abs(flat(ws[0]) - flat(setup["w0"])).max() > 1e-2
        np.testing.assert_allclose(flat(ws[0]), flat(ws[1]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,kwargs,needle", [
    (lpg.BestOfM, dict(step_unit="position"), "step_unit must be one of 'token', 'response', got 'position'"),
    (lpg.BestOfM, dict(step_unit="token", optimizer="adam"), "step_unit must be 'response' with optimizer='adam'"),
    (lpg.PolicyGradient, dict(step_unit="sequence"), "step_unit must be one of 'token', 'response'"),
    (lpg.PolicyGradient, dict(step_unit="token", optimizer="adagrad"),
     "step_unit must be 'response' with optimizer='adagrad'"),
    (lpg.PolicyGradient, dict(step_unit="token", loss_norm="token"), "step_unit must be 'response' with loss_norm"),
])
def test_step_unit_errors_are_one_line(make, kwargs, needle):
    with pytest.raises(ValueError, match=needle) as err:
        make(**kwargs)
    assert "\n" not in str(err.value)


def test_defaults_are_the_papers_reading():
    assert lpg.BestOfM().step_unit == lpg.PolicyGradient().step_unit == "response"
    assert lpg.TokenBestOfM().step_unit == "token" and lpg.TokenBestOfM(optimizer="adam").step_unit == "response"
