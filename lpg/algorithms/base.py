"""What every algorithm shares: the algorithm interface, traced hyperparameters, the
training state and fixed-shape step metrics (PAPER.md §3).

An algorithm is an :class:`AbstractAlgorithm`: an ``eqx.Module`` whose fields are its
static settings (batch size, strategy objects, the optimiser) with two pure methods::

    state = alg.init(w0, hyper)
    state, metrics = alg.step(state, key, problem, hyper)

``hyper`` (:class:`Hyper`) holds the traced settings — learning rate, ``log m``, ``ζ`` —
so a sweep over them is a ``vmap``, not a recompile. The learning rate's one source is
``hyper.lr``: :meth:`AbstractAlgorithm.init` writes it into the optimiser state
(:func:`lpg.optim.init_state`), where every step reads it.

Which gradient the adaptive step follows (``step_unit``, :func:`step_unit_of`):
``"response"``, PAPER.md §3, one step on the gradient of the whole response's
log-likelihood; ``"token"``, one adaptive step per token of the response, in order
(:meth:`AbstractAlgorithm.ascend_per_token`), Algorithm 2's unit.

Per-algorithm extra state lives in ``TrainState.aux`` (a dict, e.g. online learning's
cumulative mistakes) and per-step extra metrics in ``StepMetrics.aux`` (e.g. policy
gradient's zero-variance groups); :func:`lpg.train` logs both.
"""


import abc
import math
from typing import Any, NamedTuple

import equinox as eqx
from equinox import AbstractVar
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from lpg import _checks, optim, rewards
from lpg.policy import position_mask
from lpg.problem import Problem

STEP_UNITS = ("token", "response")
"""Readings of the adaptive step: one step per token, or one per response (:func:`step_unit_of`)."""
READINGS = {"response": "the response-level step", "token": "the per-token step"}
"""How a verdict names the reading of the adaptive step it assumes (the paper's first)."""


class Hyper(NamedTuple):
    """Traced hyperparameters (vmappable): learning rate, ``log m`` for best-of-m
    (``inf``: unbounded) and the importance-ratio clip ``ζ`` (``ratio ∈ [1/ζ, ζ]``)."""

    lr: Any = 1.0
    log_m: Any = math.inf
    zeta: Any = math.inf


def hyper(lr=1.0, m=None, log_m=None, zeta=math.inf) -> Hyper:
    """Validated :class:`Hyper`: ``lr`` finite ``> 0``; ``m >= 1`` or ``log_m >= 0`` (give
    one; ``inf``, the default, is unbounded); ``zeta >= 1`` (``inf``: no clip). Traced
    values (under ``jit``) are not checked."""
    _checks.positive("lr", lr, finite=True)
    if m is not None and log_m is not None:
        raise ValueError(f"give m or log_m, not both; got m={m!r}, log_m={log_m!r}")
    if m is not None:
        _checks.at_least("m", m, 1)
        log_m = jnp.log(m) if _checks._is_tracer(m) else math.log(m)
    if log_m is None:
        log_m = math.inf
    _checks.at_least("log_m", log_m, 0.0)
    _checks.at_least("zeta", zeta, 1.0)
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return Hyper(f(lr), f(log_m), f(zeta))


class TrainState(NamedTuple):
    w: PyTree
    opt_state: PyTree
    step: Int[Array, ""]
    queries: rewards.Count  # cumulative reward queries, exact (lpg.rewards.Count)
    aux: dict  # per-algorithm state (e.g. OnlinePG's cumulative mistakes)

    @property
    def log_queries(self) -> Float[Array, ""]:
        """The cumulative reward queries as a natural log."""
        return rewards.log_of(self.queries)


class StepMetrics(NamedTuple):
    """Fixed-shape per-step metrics."""

    queries: rewards.Count  # reward queries this step
    grad_norm: Float[Array, ""]  # ‖g_t‖ of the followed log-likelihood gradient
    success: Float[Array, ""]  # fraction of contexts that produced a verified success
    aux: dict  # per-algorithm metrics (e.g. PolicyGradient's zero-variance groups)

    @property
    def log_queries(self) -> Float[Array, ""]:
        """This step's reward queries as a natural log."""
        return rewards.log_of(self.queries)


class AbstractAlgorithm(eqx.Module):
    """An algorithm: ``init`` and ``step``, pure and jit/vmap-able. Subclasses hold an
    ``optimizer`` (an optax transformation made by :func:`lpg.optim.make`) and define
    :meth:`step`; :meth:`init_aux` gives extra state."""

    optimizer: AbstractVar[optax.GradientTransformation]

    def init(self, w0: PyTree, hyper: Hyper) -> TrainState:
        return TrainState(w0, optim.init_state(self.optimizer, w0, hyper.lr), jnp.zeros((), jnp.int32),
                          rewards.count(0), self.init_aux())

    def init_aux(self) -> dict:
        """The algorithm's extra state at the start (a dict of arrays)."""
        return {}

    @abc.abstractmethod
    def step(self, state: TrainState, key: PRNGKeyArray, problem: Problem, hyper: Hyper) -> tuple[TrainState, StepMetrics]:
        """One iteration: the new state and this step's metrics."""

    def ascend(self, state: TrainState, g: PyTree, queries: rewards.Count, **aux) -> TrainState:
        """Follow the ascent direction ``g`` (a gradient of a log-likelihood objective)
        with the optimiser; count ``queries`` more queries; replace ``aux`` entries."""
        w, opt_state = optim.ascend(self.optimizer, state.w, state.opt_state, g)
        return TrainState(w, opt_state, state.step + 1, rewards.add_counts(state.queries, queries),
                          {**state.aux, **aux})

    def ascend_per_token(self, state: TrainState, problem: Problem, xs, ys, coef, queries: rewards.Count):
        """The per-token reading of the adaptive step (``step_unit="token"``): for each
        position ``i`` in order, ``w += lr·mean_b c_{b,i}·g_b/(4 + 2‖g_b‖²)``, ``g_b`` the
        gradient of ``log p_w(y_{b,i}|x_b, y_{b,<i})`` at the weights the previous position
        left (:meth:`lpg.features.AbstractFeatureMap.token_steps`; the mean is over the ``B``
        rows of ``xs``). ``coef (B, N)`` weighs each position (the caller masks padding);
        ``coef (B,)`` weighs every real position (``i < length``) of its row alike. One
        iteration, ``queries`` more queries; returns the new state and how far ``w`` moved."""
        if coef.ndim == 1:
            coef = coef[:, None] * position_mask(ys.shape[-1], problem.length)
        w = problem.fmap.token_steps(state.w, xs, ys, coef * optim.learning_rate(state.opt_state))
        new = state._replace(w=w, step=state.step + 1, queries=rewards.add_counts(state.queries, queries))
        return new, tree_norm(jax.tree_util.tree_map(jnp.subtract, w, state.w))


def tree_norm(g: PyTree) -> Float[Array, ""]:
    return optax.tree_utils.tree_norm(g)


def step_unit_of(step_unit: str, optimizer, loss_norm: str = "sequence") -> str:
    """The validated ``step_unit`` (:data:`STEP_UNITS`): ``"token"`` needs the adaptive
    step (a per-token step is the adaptive step's) and the sequence loss (each token takes
    its own step)."""
    step_unit = _checks.one_of("step_unit", step_unit, STEP_UNITS)
    if step_unit == "token" and not optim.is_adaptive(optimizer):
        raise ValueError(f"step_unit must be 'response' with optimizer={optimizer!r} (a per-token step "
                         f"is the adaptive step's), got step_unit='token'")
    if step_unit == "token" and loss_norm != "sequence":
        raise ValueError(f"step_unit must be 'response' with loss_norm={loss_norm!r} (each token takes its own "
                         f"step), got step_unit='token'")
    return step_unit


def per_response_reward(spec, event_path: bool | None, *, algorithm: str) -> tuple[rewards.AbstractReward, bool]:
    """The reward of an algorithm that verifies whole responses (Algorithm 1, online
    learning), and whether it takes the exact event path (``None``: where the reward has
    one)."""
    reward = rewards.by_name(spec)
    if reward.per_token:
        raise ValueError(f"reward must give one verdict per response for {algorithm}, got {reward!r}")
    if event_path and not reward.has_event_path:
        raise ValueError(f"event_path must be None or False for a reward without an exact event path, "
                         f"got event_path=True with reward={reward!r}")
    return reward, reward.has_event_path if event_path is None else bool(event_path)


__all__ = ["READINGS", "STEP_UNITS", "AbstractAlgorithm", "Hyper", "StepMetrics", "TrainState", "hyper",
           "per_response_reward", "step_unit_of", "tree_norm"]
