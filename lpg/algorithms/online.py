"""Online learning with uniform exploration (claim C7, PAPER.md §3, reconstructed).

Each round a context ``x_t`` arrives, the learner guesses a uniformly random response,
the verifier judges it, and on a success the learner takes the adaptive step on
``∇ log p_w(y*_t|x_t)``. Mistakes are counted as ``Σ_t (1 − p_{w_t}(y*_t|x_t))``
(``TrainState.aux["mistakes"]``). One reward query per round. The event path draws the
success of a uniform guess with probability ``k^-N`` directly (PAPER.md §6); the sampled
path draws the uniform response and asks the reward.

The context sequence (``contexts``), since the claim covers any sequence:

* ``None`` or ``"iid"``: i.i.d. from the task;
* ``"cyclic"``: the problem's tracked contexts (for a planted problem, all ``S``) in
  order, cycled;
* ``"adversarial"``: each round the tracked context with the lowest current likelihood
  ``p_w(y*|x)`` (ties: the first), i.e. the one whose round costs the most mistake;
* an integer array ``(T,)``: indices into the tracked contexts, cycled;
* a real array ``(T, d)``: the contexts themselves, cycled.

The step (``step_unit``, with the adaptive step): ``"response"`` (default, PAPER.md §3)
takes one step on the whole response's gradient; ``"token"`` one adaptive step per token
of ``y*``, in order (:meth:`lpg.features.AbstractFeatureMap.token_steps`, Algorithm 2's
per-token reading).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lpg import _checks, optim, rewards
from lpg.algorithms.base import AbstractAlgorithm, StepMetrics, per_response_reward, step_unit_of, tree_norm
from lpg.metrics import sequence_log_likelihoods
from lpg.policy import log_prob, weighted_grad
from lpg.problem import Problem
from lpg.rewards import bernoulli_log

CONTEXT_RULES = ("iid", "cyclic", "adversarial")


def _context_spec(contexts) -> tuple[str, jax.Array | None, int]:
    """``(rule, array, largest index)`` of the ``contexts`` option: a rule of
    :data:`CONTEXT_RULES` (no array), or ``"indices"`` / ``"vectors"`` with the array
    (the largest index is ``-1`` when unknown: traced, or not indices)."""
    if contexts is None:
        return "iid", None, -1
    if isinstance(contexts, str):
        return _checks.one_of("contexts", contexts, CONTEXT_RULES), None, -1
    a = contexts if isinstance(contexts, jax.core.Tracer) else np.asarray(contexts)
    concrete = not isinstance(a, jax.core.Tracer)
    if a.ndim == 1 and jnp.issubdtype(a.dtype, jnp.integer) and a.shape[0] and (not concrete or a.min() >= 0):
        return "indices", jnp.asarray(a, jnp.int32), int(a.max()) if concrete else -1
    if a.ndim == 2 and jnp.issubdtype(a.dtype, jnp.floating) and a.shape[0]:
        return "vectors", jnp.asarray(a), -1
    raise ValueError(f"contexts must be one of {', '.join(map(repr, CONTEXT_RULES))}, non-negative integer indices "
                     f"of shape (T,) into the problem's tracked contexts, or contexts of shape (T, d), got "
                     f"{a.dtype} array of shape {tuple(a.shape)}")


class OnlinePG(AbstractAlgorithm):
    reward: rewards.AbstractReward
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    event_path: bool = eqx.field(static=True)
    step_unit: str = eqx.field(static=True)
    context_rule: str = eqx.field(static=True)
    max_index: int = eqx.field(static=True)
    contexts: jax.Array | None

    def __init__(self, *, reward: rewards.AbstractReward | str = "outcome", optimizer: str | optim.Factory = "adaptive",
                 event_path: bool | None = None, contexts=None, step_unit: str = "response"):
        self.reward, self.event_path = per_response_reward(reward, event_path, algorithm="online learning")
        self.optimizer = optim.make(optimizer)
        self.step_unit = step_unit_of(step_unit, optimizer)
        self.context_rule, self.contexts, self.max_index = _context_spec(contexts)

    def init_aux(self) -> dict:
        return {"mistakes": jnp.zeros((), jnp.float32)}

    def context(self, state, key, problem: Problem) -> jax.Array:
        """This round's context ``x_t`` (see the module docstring)."""
        rule, track = self.context_rule, problem.track_x
        if rule == "iid":
            return problem.task.sample_contexts(key, 1)[0]
        if rule == "vectors":
            return self.contexts[state.step % self.contexts.shape[0]]
        if self.max_index >= track.shape[0]:
            raise ValueError(f"contexts must index the problem's {track.shape[0]} tracked contexts, "
                             f"got index {self.max_index}")
        if rule == "indices":
            return track[self.contexts[state.step % self.contexts.shape[0]]]
        if rule == "cyclic":
            return track[state.step % track.shape[0]]
        ll = sequence_log_likelihoods(problem.fmap, state.w, track, problem.track_y, problem.length)
        return track[jnp.argmin(ll)]

    def step(self, state, key, problem: Problem, hyper):
        k_ctx, k_run = jax.random.split(key)
        x = self.context(state, k_ctx, problem)
        y = problem.task.response(x)
        length, fmap = problem.length, problem.fmap
        lp = log_prob(fmap, state.w, x, y, length)
        if self.event_path:
            success, y_upd = bernoulli_log(k_run, -length * jnp.log(float(fmap.k))), y
        else:
            guess = jax.random.randint(k_run, (problem.N,), 0, fmap.k)
            success = self.reward(x, guess, y, length, key=jax.random.fold_in(k_run, 1)) > 0
            y_upd = jnp.where(success, guess, y)
        one = rewards.count(1)
        mistakes = state.aux["mistakes"] + (1.0 - jnp.exp(lp))
        if self.step_unit == "token":
            coef = success.astype(jnp.float32) * (jnp.arange(problem.N) < length)
            w = fmap.token_steps(state.w, x[None], y_upd[None], coef[None] * optim.learning_rate(state.opt_state))
            new = state._replace(w=w, step=state.step + 1, queries=rewards.add_counts(state.queries, one),
                                 aux={**state.aux, "mistakes": mistakes})
            g_norm = tree_norm(jax.tree_util.tree_map(jnp.subtract, w, state.w))
        else:
            coef = success.astype(jnp.float32)[None]
            g = weighted_grad(fmap, state.w, x[None], y_upd[None], coef, length)
            new, g_norm = self.ascend(state, g, one, mistakes=mistakes), tree_norm(g)
        return new, StepMetrics(one, g_norm, success.astype(jnp.float32), {})
