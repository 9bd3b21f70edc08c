"""One table of every algorithm configuration under test, each checked for the same
invariants (after optax's ``alias_test.py``):

* ``jit`` equals eager (a plain call, ops dispatched one by one outside the scans), for
  one configuration of each algorithm and path kind (``EAGER``);
* ``vmap`` over seeds equals a loop of single runs;
* a sweep over seeds and learning rates traces once (``chex.assert_max_traces``);
* the same key gives the same bits, and different keys different runs.

Floats agree to float32 rounding where XLA may fuse or batch the arithmetic differently
(jit vs eager, vmap vs loop); integer-valued outputs (steps, query counts) exactly.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import lpg
from lpg.rewards import Outcome, Process

ADVANTAGES = ("none", "batch_mean", "rloo", "grpo")

CONFIGS = {
    "sgd adagrad": lambda: lpg.SGD(batch_size=2, optimizer="adagrad", loss_norm="token"),
    "sgd token step": lambda: lpg.SGD(batch_size=2, step_unit="token"),
    "pg outcome event": lambda: lpg.PolicyGradient(Outcome(), batch_size=2, group_size=2, event_path=True),
    "pg process event": lambda: lpg.PolicyGradient(Process(), batch_size=2, group_size=2, event_path=True),
    "pg outcome event mixture ratio": lambda: lpg.PolicyGradient(Outcome(), behaviour="mixture", importance=True,
                                                                 batch_size=2),
    "pg process event base": lambda: lpg.PolicyGradient(Process(), behaviour="base", batch_size=2),
    "pg process sample grpo token step": lambda: lpg.PolicyGradient(Process(signed=True), advantage="grpo",
                                                                    batch_size=2, group_size=2, step_unit="token"),
    **{f"pg {r} sample {a}": (lambda r=r, a=a: lpg.PolicyGradient(lpg.rewards.by_name(r, signed=True), advantage=a,
                                                                  batch_size=2, group_size=2, event_path=False,
                                                                  optimizer="adagrad"))
       for r, a in zip(("outcome", "process", "outcome", "process"), ADVANTAGES)},  # every advantage, each reward
    "algorithm 1 event": lambda: lpg.BestOfM(batch_size=2),
    "algorithm 1 sample": lambda: lpg.BestOfM(batch_size=2, event_path=False),
    "algorithm 1 event token step": lambda: lpg.BestOfM(batch_size=2, step_unit="token"),
    "algorithm 2 event": lambda: lpg.TokenBestOfM(batch_size=2),
    "algorithm 2 sample": lambda: lpg.TokenBestOfM(batch_size=2, event_path=False),
    "online event": lambda: lpg.OnlinePG(),
    "online sample token": lambda: lpg.OnlinePG(event_path=False, step_unit="token"),
}

STEPS, LOG_EVERY = 4, 2
EAGER = {"sgd adagrad", "sgd token step", "pg outcome event", "pg process sample grpo token step",
         "pg process sample batch_mean", "algorithm 1 sample", "algorithm 1 event token step", "algorithm 2 event",
         "online sample token"}
"""The configurations also run eagerly (one per algorithm and path kind: an eager run costs
as much as the rest of the test, and the jitted invariants cover every configuration)."""


@pytest.fixture(scope="module")
def problem():
    task = lpg.make_teacher(jax.random.PRNGKey(5), d=3, k=2, N=4)
    rng = np.random.default_rng(2)
    base = lpg.BigramParams(jnp.asarray(0.5 * rng.standard_normal((3, 2)), jnp.float32),
                            jnp.asarray(0.5 * rng.standard_normal((2, 2)), jnp.float32))
    return lpg.make_problem(task, key=jax.random.PRNGKey(6), n_test=8, base=base)


def _close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def _queries(result):
    return np.round(np.exp(np.asarray(result.curves.log_queries, np.float64)))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_invariants(problem, name, fast_compile):
    # Semantics, not speed: compiled with most XLA optimisations off (the Figure-1 set-up
    # is checked with them on in test_updates.py).
    alg = CONFIGS[name]()
    h = lpg.hyper(lr=0.5, m=5)

    def run(key, lr):
        return lpg.train(alg, problem, h._replace(lr=lr), key, steps=STEPS, log_every=LOG_EVERY)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def sweep(keys, lr):
        return jax.vmap(run, in_axes=(0, None))(keys, lr)

    keys = jax.random.split(jax.random.PRNGKey(9), 2)
    one = jax.jit(run)
    single = [one(k, h.lr) for k in keys]
    if name in EAGER:
        _close(run(keys[0], h.lr), single[0])  # jit = eager
    batched = sweep(keys, h.lr)  # vmap over seeds = a loop, query counts exactly
    for i, s in enumerate(single):
        _close(jax.tree_util.tree_map(lambda a: a[i], batched), s)
        np.testing.assert_array_equal(_queries(batched)[i], _queries(s))
    # the same key, the same bits; another key, another run
    again = one(keys[1], h.lr)
    for a, b in zip(jax.tree_util.tree_leaves(single[1]), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)
    leaves = [np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree_util.tree_leaves(s)])
              for s in single]
    assert not np.array_equal(leaves[0], leaves[1], equal_nan=True), "two seeds gave the same run"
    # one trace for a sweep over seeds and learning rates
    out = sweep(jax.random.split(jax.random.PRNGKey(1), 2), jnp.float32(0.1))
    assert np.all(np.isfinite(out.curves.test_error))
    chex.clear_trace_counter()


def test_the_table_covers_every_strategy():
    assert EAGER <= set(CONFIGS)
    # Every built-in reward, advantage and algorithm class appears in the table.
    algs = [make() for make in CONFIGS.values()]
    kinds = {type(a) for a in algs}
    assert {lpg.SGD, lpg.PolicyGradient, lpg.BestOfM, lpg.TokenBestOfM, lpg.OnlinePG} <= kinds
    pgs = [a for a in algs if isinstance(a, lpg.PolicyGradient)]
    assert {type(a.advantage) for a in pgs} == set(lpg.advantages.ADVANTAGES.values())
    assert {type(a.reward) for a in pgs} == set(lpg.rewards.REWARDS.values())
    assert {type(a.behaviour) for a in pgs} == set(lpg.behaviours.BEHAVIOURS.values())
    assert {a.event_path for a in pgs} == {True, False}
