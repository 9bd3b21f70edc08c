"""The training loop: ``steps`` iterations of an algorithm inside ``lax.scan``, metrics
at fixed log points (PAPER.md §3; DESIGN.md: an outer scan over log points around an
inner one over steps, so memory grows with the number of log points only).

One PRNG rule for every loop of lpg (this one, :func:`lpg.pretrain` and
:func:`lpg.hitting.run_until`): the key of step ``t`` is ``fold_in(key, t)``, so a
trajectory depends on the key alone, not on ``log_every`` or ``check_every``, and a
hitting-time run follows the same trajectory as :func:`train` with the same key."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from lpg import _checks, progress, rewards, segments
from lpg.algorithms.base import AbstractAlgorithm, Hyper, TrainState
from lpg.problem import Evaluation, Problem, evaluate


TAU_DATA = 2**32 - 1
"""``fold_in`` data of the random iterate's key (no step uses it)."""


def step_key(key: PRNGKeyArray, step) -> PRNGKeyArray:
    """The key of step ``step`` of a run with key ``key``: ``fold_in(key, step)``."""
    return jax.random.fold_in(key, step)


class Curves(NamedTuple):
    """Metrics at the log points ``0, log_every, …, steps`` (``P + 1`` of them)."""

    step: Int[Array, "P"]
    test_error: Float[Array, "P"]
    track_log_lik: Float[Array, "P n_track"]
    log_queries: Float[Array, "P"]  # cumulative, natural log
    grad_norm: Float[Array, "P"]  # mean over the interval before the point (nan at 0)
    success: Float[Array, "P"]  # mean over the interval
    aux: dict  # the state's aux at each point, and the step metrics' aux averaged over the interval
    queries: rewards.Count  # cumulative, exact (lpg.rewards.value_of gives the numbers)


class TrainResult(NamedTuple):
    state: TrainState
    curves: Curves
    random_iterate: PyTree  # w_τ, τ uniform in {1..T} (the iterate the guarantees are for)
    random_eval: Evaluation


def train(alg: AbstractAlgorithm, problem: Problem, hyper: Hyper, key: PRNGKeyArray, *, steps: int,
          log_every: int, w0=None) -> TrainResult:
    """Run ``steps`` steps of ``alg`` from ``w0`` (default: the base model, or zeros),
    logging every ``log_every`` steps. Pure, jit- and vmap-able (``steps`` and
    ``log_every`` are static); the steps done are reported at the log points to a
    sweep's live progress (:mod:`lpg.progress`). A checkpointed sweep runs the log points
    in segments it saves between (:mod:`lpg.segments`), with the same results."""
    steps = _checks.int_at_least("steps", steps, 1)
    log_every = _checks.int_at_least("log_every", log_every, 1)
    if steps % log_every:
        raise ValueError(f"log_every must divide steps={steps}, got {log_every}")
    if w0 is None:
        w0 = problem.base_weights()
    tau = jax.random.randint(jax.random.fold_in(key, TAU_DATA), (), 1, steps + 1)
    state = alg.init(w0, hyper)
    n_points = steps // log_every
    progress.expect(steps)

    def inner(carry, _):
        st, wr = carry
        st, m = alg.step(st, step_key(key, st.step), problem, hyper)
        wr = jax.tree_util.tree_map(lambda a, b: jnp.where(st.step == tau, a, b), st.w, wr)
        return (st, wr), m

    def point(st, ev, grad_norm, success, metrics_aux):
        return Curves(st.step, ev.test_error, ev.track_log_lik, st.log_queries, grad_norm, success,
                      {**st.aux, **metrics_aux}, st.queries)

    def outer(carry, i):
        carry, ms = jax.lax.scan(inner, carry, None, length=log_every)
        st = carry[0]
        progress.report_at_point(i, n_points, log_every, after=st.step, like=(key, st))
        mean = lambda v: jnp.mean(v, axis=0)  # noqa: E731
        return carry, point(st, evaluate(problem, st.w), mean(ms.grad_norm), mean(ms.success),
                            jax.tree_util.tree_map(mean, ms.aux))

    # The barrier stops XLA constant-folding the initial evaluation when problem and w0
    # are closed over by jit (~20 s of compile at the Figure-1 size).
    ev0 = evaluate(problem, jax.lax.optimization_barrier(state.w))
    nan = jnp.asarray(jnp.nan, jnp.float32)
    aux_shape = jax.eval_shape(alg.step, state, key, problem, hyper)[1].aux
    first = point(state, ev0, nan, nan, jax.tree_util.tree_map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), aux_shape))
    points = jnp.arange(n_points) if progress.CALLBACKS else None  # the live progress (lpg.progress)
    (state, w_rand), rest = segments.loop(
        outer, (state, w0), n_points, steps_each=log_every,
        plain=lambda: jax.lax.scan(outer, (state, w0), points, length=n_points))
    curves = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return TrainResult(state, curves, w_rand, evaluate(problem, w_rand))
