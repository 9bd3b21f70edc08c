"""The practice of LLM post-training as strategy objects (issue 14, question Q5).

What practitioners add to the policy gradient of PAPER.md §3, each built on the engine's
strategy objects without touching :class:`lpg.PolicyGradient`:

* :class:`RegularisedPG` — on-policy PG whose per-sample reward is shaped by a **KL penalty
  towards the base model** and an **entropy bonus**:
  ``r̃(x, y) = r(x, y) − β·log(p_w(y|x)/q0(y|x)) − α·log p_w(y|x)`` (:func:`shaped_reward`),
  then the advantage (e.g. the batch mean) of ``r̃``. This is the *per-sample* (sequence,
  score-function) form, not the analytic per-token KL gradient. It is unbiased for the
  regularised objective ``J(w) = E_{p_w}[r] − β·KL(p_w‖q0) + α·H(p_w)``: since
  ``∇KL(p_w‖q0) = E_{p_w}[(log p_w − log q0 + 1)∇log p_w]`` and ``E_{p_w}[∇log p_w] = 0``,
  ``∇J = E_{p_w}[r̃ ∇log p_w(y|x)]`` (and ``∇H = −E[log p_w ∇log p_w]``: the entropy bonus is
  a KL penalty towards the uniform policy). ``β`` and ``α`` are traced fields.
* :class:`Tempered` — a behaviour policy: responses are sampled from the tempered policy
  ``p_{w,τ}(y_i|x, y_<i) ∝ p_w(y_i|x, y_<i)^{1/τ}``. For the linear policies of PAPER.md §1
  (logits linear in ``w``) that is exactly ``p_{w/τ}``. The gradient is the untempered
  score ``A·∇log p_w(y|x)`` on the tempered samples, with no importance ratio
  (``importance=False``; with ``importance=True`` the ratio ``p_w/p_{w,τ}`` undoes the
  temperature). ``τ`` is a traced field; the 0/1 rewards keep their exact event path
  (the behaviour gives the tempered law).
* :class:`RewardToGo` — a per-token reward: token ``i`` is weighted by ``Σ_{j≥i} r_j`` of a
  per-token reward (the process reward's prefix rewards). For 0/1 prefix rewards with
  correct-prefix length ``L`` this is ``max(L − i, 0)`` (0-based ``i``): the process
  reward's update on the same prefix of ``y*`` with weight ``L − i`` instead of 1, so the
  exact event path carries over; the queries are the inner reward's.
* :class:`PartialCredit` — an outcome-type reward: the fraction of real positions where
  ``y`` agrees with ``y*`` (``number=True``: the number). Counting the agreeing positions
  checks every real position against ``y*``: one query per position, ``length`` per
  response (where the process verifier stops at the first error).

Hooks that would make this shorter (not added to the engine): a reward-shaping hook in
:meth:`lpg.PolicyGradient._sample` between the reward and the advantage (given ``w``),
which :class:`RegularisedPG` re-implements by recomputing the advantage.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from lpg import _checks, rewards
from lpg.algorithms.pg import PolicyGradient
from lpg.behaviours import AbstractBehaviour
from lpg.policy import log_prob, position_mask, sample

__all__ = ["PartialCredit", "RegularisedPG", "RewardToGo", "Tempered", "reward_to_go", "scaled", "shaped_reward"]


# ---------------------------------------------------------------------------------
# KL penalty towards the base model and entropy bonus
# ---------------------------------------------------------------------------------


def shaped_reward(r, log_p, log_q0, beta, alpha):
    """``r − β·(log p_w − log q0) − α·log p_w``: the per-sample reward whose score-function
    gradient is that of ``E[r] − β·KL(p_w‖q0) + α·H(p_w)``."""
    return r - (beta * (log_p - log_q0) + alpha * log_p)


class RegularisedPG(PolicyGradient):
    """On-policy PG with a KL penalty towards the base model (``beta``) and an entropy
    bonus (``alpha``), both traced, by reward shaping (:func:`shaped_reward`; module
    docstring). The reward must give one verdict per response; the behaviour must be
    on-policy without importance ratio; the path is always the sampled one (the shaped
    reward depends on every sampled response, not on ``y*`` alone)."""

    beta: jax.Array
    alpha: jax.Array

    def __init__(self, reward="outcome", *, beta=0.0, alpha=0.0, **kwargs):
        if kwargs.get("event_path"):
            raise ValueError("event_path must be None or False for RegularisedPG (the shaped reward depends on "
                             f"every sample), got {kwargs['event_path']!r}")
        super().__init__(reward, **{**kwargs, "event_path": False})
        if self.reward.per_token:
            raise ValueError(f"reward must give one verdict per response for RegularisedPG, got {self.reward!r}")
        if not self.behaviour.on_policy or self.importance:
            raise ValueError(f"RegularisedPG is on-policy: behaviour must be 'on_policy' and importance False, got "
                             f"behaviour={self.behaviour!r}, importance={self.importance}")
        _checks.at_least("beta", beta, 0.0, finite=True)
        _checks.at_least("alpha", alpha, 0.0, finite=True)
        self.beta, self.alpha = jnp.asarray(beta, jnp.float32), jnp.asarray(alpha, jnp.float32)

    @property
    def exact_events_possible(self) -> bool:
        return False

    def penalty(self, problem, w, xs, ys):
        """``β·(log p_w(y|x) − log q0(y|x)) + α·log p_w(y|x)`` of every row of ``xs (R, d)``,
        ``ys (R, N)``: what :func:`shaped_reward` subtracts."""
        lp = jax.vmap(lambda x, y: log_prob(problem.fmap, w, x, y, problem.length))(xs, ys)
        lq = jax.vmap(lambda x, y: log_prob(problem.fmap, problem.base_weights(), x, y, problem.length))(xs, ys)
        return -shaped_reward(0.0, lp, lq, self.beta, self.alpha)

    def _sample(self, w, key, problem, xs, ys, hyper):
        xg, yg, _, queries, correct, r = super()._sample(w, key, problem, xs, ys, hyper)
        shaped = r - self.penalty(problem, w, xg, yg).reshape(r.shape)
        return xg, yg, self.advantage(shaped).reshape(-1), queries, correct, r


# ---------------------------------------------------------------------------------
# Sampling temperature
# ---------------------------------------------------------------------------------


def scaled(w, factor):
    """The weights ``factor·w``: for a linear policy, ``p_{w/τ}`` is ``p_w`` at temperature ``τ``."""
    return jax.tree_util.tree_map(lambda a: a * factor, w)


class Tempered(AbstractBehaviour):
    """``q_t = p_{w,τ}``: the current policy at sampling temperature ``tau`` (traced,
    ``> 0``), every token drawn from ``softmax(logits/τ)``; exact for linear policies,
    where it is ``p_{w/τ}``."""

    tau: jax.Array

    def __init__(self, tau=1.0):
        _checks.positive("tau", tau, finite=True)
        self.tau = jnp.asarray(tau, jnp.float32)

    def token_policy(self, problem, w):
        return scaled(w, 1.0 / self.tau)

    def sample(self, problem, w, x, key):
        return sample(problem.fmap, self.token_policy(problem, w), x, problem.N, key=key)

    def log_prob(self, problem, w, x, y):
        return log_prob(problem.fmap, self.token_policy(problem, w), x, y, problem.length)


# ---------------------------------------------------------------------------------
# Reward-to-go and partial credit
# ---------------------------------------------------------------------------------


def reward_to_go(r):
    """``R_i = Σ_{j≥i} r_j`` along the last axis."""
    return jnp.flip(jnp.cumsum(jnp.flip(r, -1), axis=-1), -1)


class RewardToGo(rewards.AbstractReward):
    """Token ``i`` weighted by the reward-to-go ``Σ_{j≥i} r_j`` of a per-token reward
    (default: the 0/1 process reward), with its queries. The exact event path is the
    inner reward's with the reward-to-go of its coefficients, valid because those are
    the rewards themselves on ``y*``'s prefix and 0 beyond it (0/1 process rewards)."""

    per_token: ClassVar[bool] = True
    inner: rewards.AbstractReward

    def __init__(self, inner: rewards.AbstractReward | str = "process"):
        inner = rewards.by_name(inner)
        if not inner.per_token:
            raise ValueError(f"inner must be a per-token reward for RewardToGo, got {inner!r}")
        self.inner = inner

    def __call__(self, x, y, y_star, length, *, key=None):
        return reward_to_go(self.inner(x, y, y_star, length, key=key))

    def queries(self, x, y, y_star, length, *, key=None):
        return self.inner.queries(x, y, y_star, length, key=key)

    @property
    def has_event_path(self) -> bool:
        return isinstance(self.inner, rewards.Process) and self.inner.has_event_path

    def event(self, key, behaviour, problem, w, xs, ys, group_size):
        if not self.has_event_path:
            raise NotImplementedError(f"RewardToGo({self.inner!r}) has no exact event path")
        ev = self.inner.event(key, behaviour, problem, w, xs, ys, group_size)
        return ev._replace(coef=reward_to_go(ev.coef))


class PartialCredit(rewards.AbstractReward):
    """A dense outcome-type reward: the fraction of real positions where ``y`` agrees with
    ``y*`` (``number``: their number). One query per position checked: ``length``."""

    number: bool = eqx.field(default=False, static=True)

    def __call__(self, x, y, y_star, length, *, key=None):
        real = position_mask(y.shape[0], length)
        hits = jnp.sum((y == y_star) & real, dtype=jnp.float32)
        return hits if self.number else hits / jnp.maximum(jnp.sum(real, dtype=jnp.float32), 1.0)

    def queries(self, x, y, y_star, length, *, key=None):
        return jnp.asarray(jnp.minimum(length, y.shape[0]) if length is not None else y.shape[0], jnp.int32)
