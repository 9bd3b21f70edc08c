"""Hitting times inside JAX: run_until against a plain Python loop over alg.step,
censoring, vmap and check_every, and the two target builders against NumPy."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lpg
from conftest import flat
from lpg.hitting import Hit, error_at_most, likelihood_at_least, run_until


@functools.lru_cache
def _problem():
    task = lpg.make_planted(jax.random.PRNGKey(0), k=3, N=3, gamma=0.6)
    return lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=16, track_x=task.contexts)


@pytest.fixture(scope="module")
def setup():
    return _problem()


ALG = lpg.BestOfM(batch_size=2)
HYPER = lpg.hyper(lr=1.0, log_m=3 * math.log(3))
EPS = 0.2


def python_reference(prob, key, max_steps, eps, w0=None):
    """alg.step in a Python loop with the documented per-step key; the target in NumPy."""
    state = ALG.init(prob.base_weights() if w0 is None else w0, HYPER)
    step = _step(prob)
    loglik = _loglik(prob)

    def on_target(w):
        return np.exp(np.asarray(loglik(w), np.float64)).min() >= 1 - eps

    t = 0
    while not on_target(state.w) and t < max_steps:
        state = step(state, jax.random.fold_in(key, t))
        t += 1
    return on_target(state.w), t, float(state.log_queries), state.w


@functools.lru_cache
def _step_fn():
    prob = _problem()
    return jax.jit(lambda st, k: ALG.step(st, k, prob, HYPER)[0])


@functools.lru_cache
def _loglik_fn():
    prob = _problem()
    return jax.jit(lambda w: jax.vmap(lambda x, y: lpg.policy.log_prob(prob.fmap, w, x, y))(prob.track_x, prob.track_y))


def _step(prob):
    assert prob is _problem()
    return _step_fn()


def _loglik(prob):
    assert prob is _problem()
    return _loglik_fn()


@functools.lru_cache
def _runner_fn(max_steps, check_every):
    prob = _problem()
    f = lambda k, w0: run_until(ALG, prob, HYPER, k, max_steps=max_steps, target=likelihood_at_least(EPS),  # noqa: E731
                                check_every=check_every, w0=w0)
    return jax.jit(jax.vmap(f, in_axes=(0, None)))


def runs(prob, keys, *, max_steps, check_every=1, w0=None):
    """Many runs in one vmapped call (``max_steps`` is a traced-free static: one compile
    per (max_steps, check_every))."""
    assert prob is _problem()
    return _runner_fn(max_steps, check_every)(keys, prob.base_weights() if w0 is None else w0)


def run(prob, key, **kw):
    return jax.tree_util.tree_map(lambda a: a[0], runs(prob, key[None], **kw))


def test_matches_python_loop(setup):
    key = jax.random.PRNGKey(7)
    hit, steps, logq, w = python_reference(setup, key, 200, EPS)
    r = run(setup, key, max_steps=200)
    assert isinstance(r, Hit)
    assert bool(r.hit) == hit and hit
    assert int(r.steps) == steps
    assert float(r.log_queries) == pytest.approx(logq, rel=1e-5)
    np.testing.assert_allclose(r.final_w, w, rtol=1e-5, atol=1e-6)


def test_censored_run_spends_the_budget(setup):
    key = jax.random.PRNGKey(7)
    hit, steps, logq, _ = python_reference(setup, key, 200, EPS)
    budget = steps // 2
    r = run(setup, key, max_steps=budget)
    assert not bool(r.hit) and int(r.steps) == budget
    _, _, logq_budget, _ = python_reference(setup, key, budget, EPS)
    assert float(r.log_queries) == pytest.approx(logq_budget, rel=1e-5)


def test_check_every_rounds_the_same_trajectory_up(setup):
    keys = jax.random.split(jax.random.PRNGKey(3), 6)
    exact = runs(setup, keys, max_steps=200)
    coarse = runs(setup, keys, max_steps=200, check_every=8)
    assert bool(jnp.all(exact.hit))
    np.testing.assert_array_equal(coarse.steps, -(-np.asarray(exact.steps) // 8) * 8)
    assert bool(jnp.all(coarse.log_queries >= exact.log_queries - 1e-6))


def test_vmap_equals_single_runs_and_is_reproducible(setup):
    keys = jax.random.split(jax.random.PRNGKey(11), 4)
    batched = runs(setup, keys, max_steps=200)
    steps = np.asarray(batched.steps)
    assert len(set(steps.tolist())) > 1  # runs finish at different times
    for i, k in enumerate(keys):
        one = run(setup, k, max_steps=200)
        assert int(one.steps) == steps[i]
        assert float(one.log_queries) == pytest.approx(float(batched.log_queries[i]), rel=1e-5)
    again = runs(setup, keys, max_steps=200)
    np.testing.assert_array_equal(again.steps, batched.steps)


def test_start_on_target(setup):
    w_star = setup.task.planted_weights() * 40.0
    r = run(setup, jax.random.PRNGKey(0), max_steps=200, w0=w_star)
    assert bool(r.hit) and int(r.steps) == 0 and float(r.log_queries) == -math.inf


def test_targets_against_numpy(setup):
    fm = setup.fmap
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = jnp.asarray(rng.normal(0, 3, size=(fm.d, fm.k)), jnp.float32)
        lik = np.exp(np.asarray(_loglik(setup)(w), np.float64))
        test = np.exp(_numpy_log_prob(np.asarray(w, np.float64), setup.test_x, setup.test_y, setup.task))
        for eps in (0.05, 0.3, 0.7):
            assert bool(likelihood_at_least(eps)(setup, w)) == (lik.min() >= 1 - eps)
            assert bool(error_at_most(eps)(setup, w)) == (1 - test.mean() <= eps)


def _numpy_log_prob(w, xs, ys, task):
    """log p_w(y|x) of the planted-shift policy in plain NumPy (independent of lpg.policy)."""
    fm = task.fmap
    out = []
    for x, y in zip(np.asarray(xs), np.asarray(ys)):
        code = fm.scale * (x @ w)
        prev, total = 0, 0.0
        for tok in y:
            logits = code[(np.arange(fm.k) - prev) % fm.k]
            total += logits[tok] - np.log(np.sum(np.exp(logits)))
            prev = tok
        out.append(total)
    return np.array(out)


def test_bad_arguments_raise(setup):
    tgt = likelihood_at_least(EPS)
    with pytest.raises(ValueError, match="max_steps"):
        run_until(ALG, setup, HYPER, jax.random.PRNGKey(0), max_steps=0, target=tgt)
    with pytest.raises(ValueError, match="check_every"):
        run_until(ALG, setup, HYPER, jax.random.PRNGKey(0), max_steps=10, target=tgt, check_every=3)
    with pytest.raises(ValueError, match="target"):
        run_until(ALG, setup, HYPER, jax.random.PRNGKey(0), max_steps=10, target=0.1)
    with pytest.raises(ValueError, match="eps"):
        likelihood_at_least(1.5)
    with pytest.raises(ValueError, match="eps"):
        error_at_most(0.0)


def test_one_prng_rule_for_train_pretrain_and_run_until(setup):
    # Step t of a run with key k uses fold_in(k, t) in lpg.train, lpg.pretrain and
    # run_until: a trajectory does not depend on log_every, train and run_until follow
    # the same one, and pretrain's weights are those of lpg.train's SGD run.
    key, steps = jax.random.PRNGKey(7), 12
    w_ref = python_reference(setup, key, steps, eps=1e-9)[3]  # never on target: all 12 steps
    train = jax.jit(lambda k, every: lpg.train(ALG, setup, HYPER, k, steps=steps, log_every=every).state,
                    static_argnums=1)
    for every in (1, 4, 12):
        st = train(key, every)
        np.testing.assert_allclose(flat(st.w), flat(w_ref), rtol=1e-6,
                                   atol=1e-7)
    hit = jax.jit(lambda k: run_until(ALG, setup, HYPER, k, max_steps=steps, target=lambda p, w: False,
                                      check_every=3))(key)
    np.testing.assert_allclose(flat(hit.final_w), flat(w_ref), rtol=1e-6,
                               atol=1e-7)
    sgd = lpg.SGD(batch_size=4, optimizer="adagrad", loss_norm="token")
    pre = lpg.pretrain(setup, key, steps=5, batch_size=4, lr=0.1, w0=setup.fmap.init_params())
    via_train = lpg.train(sgd, setup, lpg.hyper(lr=0.1), key, steps=5, log_every=5, w0=setup.fmap.init_params())
    np.testing.assert_allclose(flat(pre), flat(via_train.state.w), rtol=1e-6)
    # and the rule has teeth: another key is another trajectory
    assert not np.allclose(flat(train(jax.random.PRNGKey(8), 4).w), flat(w_ref))


def test_query_counts_are_exact_over_long_runs():
    # 3000 PG steps of 1024 queries each are 3,072,000 queries exactly (the float32
    # log-space sum this replaces drifts by ~1e-5 here and stops growing at 2^21).
    task = lpg.make_planted(jax.random.PRNGKey(0), k=2, N=2, gamma=0.6)
    problem = lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=4, track_x=task.contexts)
    alg = lpg.PolicyGradient("outcome", batch_size=1024)
    res = jax.jit(lambda k: lpg.train(alg, problem, lpg.hyper(), k, steps=3000, log_every=1000))(jax.random.PRNGKey(2))
    assert lpg.rewards.value_of(res.state.queries) == 3000 * 1024
    np.testing.assert_array_equal(lpg.rewards.value_of(res.curves.queries), [0, 1024000, 2048000, 3072000])
    np.testing.assert_allclose(np.exp(np.asarray(res.curves.log_queries, np.float64)), [0, 1024000, 2048000, 3072000],
                               rtol=1e-6)
    hit = run_until(alg, problem, lpg.hyper(), jax.random.PRNGKey(2), max_steps=3000, target=lambda p, w: False,
                    check_every=1000)
    assert lpg.rewards.value_of(hit.queries) == 3000 * 1024
