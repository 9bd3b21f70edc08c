"""The exact event path (PAPER.md §6) and real sampling give the same law.

For each algorithm with 0/1 rewards, 3 training steps are run over 4000 seeds on each
path (``vmap`` over keys). The two paths use their randomness differently, so they are
two independent samples of the law of the run; we compare

* the law of the final ``w``: the means of ``w`` and of ``w²`` per coordinate agree
  within 5 pooled standard errors (max-abs over coordinates);
* the law of the total query count: a chi-square two-sample test on the counts, and
  for online PG the law of the mistakes ``Σ_t (1 − p_{w_t}(y*_t|x_t))``:
  Kolmogorov–Smirnov; ``p > 1e-3`` for both.

A negative control shows the query comparison has power: best-of-m with ``m = 11``
against ``m = 10`` is rejected.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from conftest import P_MIN, assert_same_mean, flat_batch, two_sample_discrete

import lpg

pytestmark = pytest.mark.usefixtures("fast_compile")

N_RUNS = 4000
STEPS = 3


@pytest.fixture(scope="module")
def problem():
    key = jax.random.PRNGKey(42)
    task = lpg.make_teacher(key, d=3, k=2, N=3)
    rng = np.random.default_rng(1)
    base = lpg.BigramParams(
        jnp.asarray(0.5 * rng.standard_normal((3, 2)), jnp.float32), jnp.asarray(0.5 * rng.standard_normal((2, 2)), jnp.float32)
    )
    return lpg.make_problem(task, key=key, n_test=4, base=base)


def _runs(alg, problem, h, seed):
    def one(key, h):
        state = alg.init(problem.base_weights(), h)
        step = lambda st, k: (alg.step(st, k, problem, h)[0], None)  # noqa: E731
        return jax.lax.scan(step, state, jax.random.split(key, STEPS))[0]

    many = jax.jit(jax.vmap(one, in_axes=(0, None)))

    st = many(jax.random.split(jax.random.PRNGKey(seed), N_RUNS), h)
    w = flat_batch(st.w)
    queries = np.round(np.exp(np.asarray(st.log_queries, np.float64))).astype(np.int64)
    return w, queries, np.asarray(st.aux.get("mistakes", np.zeros(N_RUNS)), np.float64), many


def _compare(name, problem, make, h):
    w_e, q_e, mis_e, _ = _runs(make("event"), problem, h, seed=1)
    w_s, q_s, mis_s, many = _runs(make("sample"), problem, h, seed=2)
    # the runs did move w (some successes happened), so the comparison is not vacuous
    assert w_e.std(0).max() > 0.01 and w_s.std(0).max() > 0.01
    assert_same_mean(w_e, w_s, what=f"{name}: E[w]")
    assert_same_mean(w_e**2, w_s**2, what=f"{name}: E[w^2]")
    assert two_sample_discrete(q_e, q_s) > P_MIN, f"{name}: law of query counts"
    return (w_e, q_e, mis_e), (w_s, q_s, mis_s), many


@pytest.mark.parametrize("reward", ["outcome", "process"])
def test_policy_gradient(problem, reward):
    h = lpg.hyper(lr=1.0)
    _compare(f"PG {reward}", problem, lambda p: lpg.PolicyGradient(reward, batch_size=2, event_path=(p == "event")), h)


def test_best_of_m(problem):
    # m = 11: float32 exp(log 11) > 11, a draw cap off by one would show here.
    h = lpg.hyper(lr=1.0, m=11)
    make = lambda p: lpg.BestOfM(batch_size=2, event_path=(p == "event"))  # noqa: E731
    event, sample, many_sample = _compare("Algorithm 1", problem, make, h)
    q = np.concatenate([event[1], sample[1]])
    assert q.max() > 2 * 11  # the cap was reached at least once in some run
    # Negative control: the sampling path with m = 10 has a different law of queries.
    st = many_sample(jax.random.split(jax.random.PRNGKey(3), N_RUNS), lpg.hyper(lr=1.0, m=10))
    q10 = np.round(np.exp(np.asarray(st.log_queries, np.float64))).astype(np.int64)
    assert two_sample_discrete(event[1], q10) < P_MIN


def test_token_best_of_m(problem):
    # m = 7: float32 log 7 rounds above log(7.0f), an integer comparison in log space
    # would miss the success on the 7th draw.
    h = lpg.hyper(lr=1.0, m=7)
    _compare("Algorithm 2", problem, lambda p: lpg.TokenBestOfM(batch_size=2, event_path=(p == "event")), h)


def test_online_pg(problem):
    h = lpg.hyper(lr=1.0)
    event, sample, _ = _compare("online PG", problem, lambda p: lpg.OnlinePG(event_path=(p == "event")), h)
    # one query per round on both paths; mistakes Σ_t (1 − p_{w_t}(y*_t|x_t)) agree in law
    assert np.all(event[1] == STEPS) and np.all(sample[1] == STEPS)
    assert_same_mean(event[2][:, None], sample[2][:, None], what="online PG mistakes")
    assert stats.ks_2samp(event[2], sample[2]).pvalue > P_MIN
