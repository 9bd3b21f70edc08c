"""The problem bundle: what a run is about (PAPER.md §1).

A :class:`Problem` holds the task, the policy's feature map, the base model ``q0``, a
fixed test set (for the error ``err(w)``), a tracked set (whose likelihoods are logged,
e.g. Figure 1's mixture centres) and the real response length. Algorithms and the
training loop read everything they need from it.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from lpg import _checks
from lpg.features import AbstractFeatureMap
from lpg.metrics import (
    error,
    likelihood_quantile,
    sequence_log_likelihoods,
    token_likelihood_quantile,
    token_log_likelihoods,
)
from lpg.tasks import AbstractTask


class Problem(eqx.Module):
    """Everything a run is about: the task, the policy's feature map, the base model
    ``q0`` (weights, or ``None`` for uniform), a fixed test set and a tracked set, and the
    real response length (``length <= task.N``; traced, so ``N`` can be swept)."""

    task: AbstractTask
    fmap: AbstractFeatureMap
    base: PyTree | None
    test_x: Float[Array, "n_test d"]
    test_y: Int[Array, "n_test N"]
    track_x: Float[Array, "n_track d"]
    track_y: Int[Array, "n_track N"]
    length: Int[Array, ""]

    @property
    def N(self) -> int:
        return self.task.N

    @property
    def k(self) -> int:
        return self.fmap.k

    def base_weights(self) -> PyTree:
        return self.fmap.init_params() if self.base is None else self.base

    def contexts(self, key: PRNGKeyArray, n: int) -> tuple[Float[Array, "n d"], Int[Array, "n N"]]:
        """``n`` fresh contexts and their correct responses."""
        x = self.task.sample_contexts(key, n)
        return x, jax.vmap(self.task.response)(x)


def make_problem(task: AbstractTask, *, key, fmap=None, base=None, n_test: int = 1024, track_x=None,
                 length=None) -> Problem:
    """Bundle a task into a :class:`Problem` with a test set of ``n_test`` fresh contexts
    and a tracked set (``track_x``; by default the test set)."""
    if not isinstance(task, AbstractTask):
        raise ValueError(f"task must be an lpg.tasks.AbstractTask, got {type(task).__name__}")
    n_test = _checks.int_at_least("n_test", n_test, 1)
    fmap = task.feature_map() if fmap is None else fmap
    if fmap.k != task.k:
        raise ValueError(f"fmap.k must equal the task's k={task.k}, got {fmap.k}")
    if base is not None:
        fmap.check_params(base)
    if length is None:
        length = task.N
    elif not isinstance(length, jax.core.Tracer):
        length = _checks.int_at_least("length", length, 1)
        if length > task.N:
            raise ValueError(f"length must be at most N={task.N}, got {length}")
    test_x = task.sample_contexts(key, n_test)
    test_y = jax.vmap(task.response)(test_x)
    if track_x is None:
        track_x, track_y = test_x, test_y
    else:
        track_y = jax.vmap(task.response)(track_x)
    return Problem(task, fmap, base, test_x, test_y, track_x, track_y, jnp.asarray(length, jnp.int32))


def planted_problem(task, *, key, base=None, length=None) -> Problem:
    """A :class:`Problem` whose test and tracked sets are all ``S`` contexts of a planted
    task (contexts are uniform over them, so the error and the per-sample likelihoods
    are exact, not Monte-Carlo estimates)."""
    problem = make_problem(task, key=key, n_test=1, track_x=task.contexts, base=base, length=length)
    return eqx.tree_at(lambda p: (p.test_x, p.test_y), problem, (problem.track_x, problem.track_y))


class Evaluation(NamedTuple):
    test_error: Float[Array, ""]  # err(w) on the test set
    track_log_lik: Float[Array, "n_track"]  # log p_w(y*|x) of every tracked context


def evaluate(problem: Problem, w: PyTree) -> Evaluation:
    """The test error and the tracked log-likelihoods of weights ``w``."""
    fmap, length = problem.fmap, problem.length
    return Evaluation(
        error(fmap, w, problem.test_x, problem.test_y, length),
        sequence_log_likelihoods(fmap, w, problem.track_x, problem.track_y, length),
    )


def base_quantiles(problem: Problem, eps: float) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """``(log Q_{q0}(ε), log Q^TL_{q0}(ε))`` of the problem's base model over its tracked
    contexts (for a planted problem, the exact context distribution)."""
    w0 = problem.base_weights()
    ll = sequence_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y, problem.length)
    tl = token_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y, problem.length)
    return likelihood_quantile(ll, eps), token_likelihood_quantile(tl, eps, problem.length)
