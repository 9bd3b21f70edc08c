"""Hitting times inside JAX: iterations and reward queries until a target is reached.

The measured quantity of the query-complexity claims (C2, C3, C5, C9; PAPER.md §4) is a
hitting time: reward queries (and iterations) until the tracked likelihood reaches
``1 − ε`` for every tracked context, or the test error reaches ``ε``. :func:`run_until`
runs an algorithm's ``step`` inside ``lax.while_loop`` and stops at the first check where
the target holds, or when the budget of ``max_steps`` iterations is spent; such a run is
*censored* (``hit = False``) and is kept, with its budget, by the analysis
(:mod:`lpg.analysis`).

Everything is pure and jit/vmap-able. Under ``jax.vmap`` the loop runs until every run in
the batch is done; finished runs are frozen (``while_loop`` selects their old carry), so
each run's result is exactly what it would be alone. A checkpointed sweep runs the checks
in segments it saves between (:mod:`lpg.segments`), with the same results. The key of iteration ``t`` is
``fold_in(key, t)`` (:func:`lpg.algorithms.train.step_key`, the rule of :func:`lpg.train`
too), so a trajectory does not depend on ``check_every`` or on the batch.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from lpg import _checks, progress, segments
from lpg.algorithms.train import step_key
from lpg.metrics import error, sequence_log_likelihoods

Target = Callable[[Any, Any], jax.Array]
"""``target(problem, w) -> bool`` scalar: a jittable test on the weights."""


class Hit(NamedTuple):
    """Result of :func:`run_until` (batched under ``vmap``)."""

    hit: jax.Array  # bool: the target was reached within the budget
    steps: jax.Array  # iterations until the hit (== max_steps if censored)
    log_queries: jax.Array  # reward queries (natural log) spent until the hit or the budget's end
    final_w: Any  # the weights at the hit (or at the end of the budget)
    queries: Any  # the same queries exactly (lpg.rewards.Count)
    aux: dict = {}  # the algorithm's extra state then (TrainState.aux, e.g. online learning's mistakes)


def run_until(
    alg, problem, hyper, key, *, max_steps: int, target: Target, w0=None, check_every: int = 1
) -> Hit:
    """Run ``alg`` (an algorithm of :mod:`lpg.algorithms`) from ``w0`` (default: the base
    model) until ``target(problem, w)`` holds or ``max_steps`` iterations are spent.

    The target is checked before the first step (a run that starts on target has
    ``steps = 0`` and ``log_queries = -inf``) and then after every ``check_every``
    steps, so ``steps`` is resolved to a multiple of ``check_every`` (which must divide
    ``max_steps``); ``check_every = 1`` gives the exact hitting time. ``log_queries``
    counts every query made until the check that saw the hit."""
    max_steps = _checks.int_at_least("max_steps", max_steps, 1)
    check_every = _checks.int_at_least("check_every", check_every, 1)
    if max_steps % check_every:
        raise ValueError(f"check_every must divide max_steps={max_steps}, got {check_every}")
    if not callable(target):
        raise ValueError(f"target must be a function target(problem, w) -> bool, got {target!r}")
    if w0 is None:
        w0 = problem.base_weights()
    state = alg.init(w0, hyper)

    def one_step(_, st):
        return alg.step(st, step_key(key, st.step), problem, hyper)[0]

    def cond(carry):
        st, done = carry
        return (~done) & (st.step < max_steps)

    def body(carry):
        st, _ = carry
        st = jax.lax.fori_loop(0, check_every, one_step, st)
        return st, jnp.asarray(target(problem, st.w), bool)

    done0 = jnp.asarray(target(problem, state.w), bool)
    progress.expect(max_steps)
    n_checks = max_steps // check_every

    def check(carry, i):  # one check in a segment (lpg.segments); the rest is reported when its chunk ends
        carry = body(carry)
        progress.report_at_point(i, n_checks, check_every, after=carry[0].step, like=(key, carry[0]))
        return carry, ()

    def plain():
        if not progress.CALLBACKS:
            return jax.lax.while_loop(cond, body, (state, done0))
        # The same loop cut into blocks of checks for the live progress (lpg.progress): a block
        # is reported when the next one starts, the rest of the budget once every run has hit
        # or spent it (so a run that hits in its first block makes one report).
        block = check_every * progress.stride(n_checks)

        def block_body(carry):
            st, done, n = carry
            progress.report_done(block, after=n - 1, like=(key, st))  # from the second block on
            end = jnp.minimum(st.step + block, max_steps)
            st, done = jax.lax.while_loop(lambda c: cond(c) & (c[0].step < end), body, (st, done))
            return st, done, n + 1

        st, done, n = jax.lax.while_loop(lambda c: cond(c[:2]), block_body, (state, done0, jnp.int32(0)))
        progress.report_rest(max_steps, block, n - 1, like=(key, st))
        return st, done

    (st, done), _ = segments.loop(check, (state, done0), n_checks, steps_each=check_every, stop=lambda c: c[1],
                                  plain=lambda: (plain(), ()))
    return Hit(done, st.step, st.log_queries, st.w, st.queries, st.aux)


def likelihood_at_least(eps: float) -> Target:
    """Target ``min_{x ∈ track} p_w(y*(x)|x) ≥ 1 − ε`` (per sample, in log space):
    the likelihood form of claims C2, C3, C5 and C9. ``eps`` may be traced (a swept
    setting)."""
    eps = _checks.in_open("eps", eps, 0.0, 1.0)
    if isinstance(eps, jax.core.Tracer):
        log_goal = jnp.log1p(-eps.astype(jnp.float32))
    else:
        log_goal = math.log1p(-eps)

    def target(problem, w):
        ll = sequence_log_likelihoods(problem.fmap, w, problem.track_x, problem.track_y, problem.length)
        return jnp.min(ll) >= log_goal

    return target


def error_at_most(eps: float) -> Target:
    """Target ``err(w) ≤ ε`` on the problem's test set (the overall-error form of C4)."""
    eps = _checks.in_open("eps", eps, 0.0, 1.0)

    def target(problem, w):
        return error(problem.fmap, w, problem.test_x, problem.test_y, problem.length) <= eps

    return target
