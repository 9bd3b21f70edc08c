"""Online learning with uniform exploration (claim C7, PAPER.md §3, reconstructed).

Each round a context ``x_t`` arrives (i.i.d. from the task, or the next of a given
sequence ``contexts``, possibly adversarial), the learner guesses a uniformly random
response, the verifier judges it, and on a success the learner takes the adaptive step
on ``∇ log p_w(y*_t|x_t)``. Mistakes are counted as ``Σ_t (1 − p_{w_t}(y*_t|x_t))``
(``TrainState.aux["mistakes"]``). One reward query per round. The event path draws the
success of a uniform guess with probability ``k^-N`` directly (PAPER.md §6); the sampled
path draws the uniform response and asks the reward.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lpg import optim, rewards
from lpg.algorithms.base import AbstractAlgorithm, StepMetrics, per_response_reward, tree_norm
from lpg.policy import log_prob, weighted_grad
from lpg.problem import Problem
from lpg.rewards import bernoulli_log


class OnlinePG(AbstractAlgorithm):
    reward: rewards.AbstractReward
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    event_path: bool = eqx.field(static=True)
    contexts: jax.Array | None

    def __init__(self, *, reward: rewards.AbstractReward | str = "outcome", optimizer: str | optim.Factory = "adaptive",
                 event_path: bool | None = None, contexts=None):
        self.reward, self.event_path = per_response_reward(reward, event_path, algorithm="online learning")
        self.optimizer = optim.make(optimizer)
        if contexts is not None and jnp.ndim(contexts) != 2:
            raise ValueError(f"contexts must have shape (T, d), got shape {jnp.shape(contexts)}")
        self.contexts = None if contexts is None else jnp.asarray(contexts)

    def init_aux(self) -> dict:
        return {"mistakes": jnp.zeros((), jnp.float32)}

    def step(self, state, key, problem: Problem, hyper):
        k_ctx, k_run = jax.random.split(key)
        if self.contexts is None:
            x = problem.task.sample_contexts(k_ctx, 1)[0]
        else:
            x = self.contexts[state.step % self.contexts.shape[0]]
        y = problem.task.response(x)
        length, fmap = problem.length, problem.fmap
        lp = log_prob(fmap, state.w, x, y, length)
        if self.event_path:
            success, y_upd = bernoulli_log(k_run, -length * jnp.log(float(fmap.k))), y
        else:
            guess = jax.random.randint(k_run, (problem.N,), 0, fmap.k)
            success = self.reward(x, guess, y, length, key=jax.random.fold_in(k_run, 1)) > 0
            y_upd = jnp.where(success, guess, y)
        coef = success.astype(jnp.float32)[None]
        g = weighted_grad(fmap, state.w, x[None], y_upd[None], coef, length)
        one = rewards.count(1)
        new = self.ascend(state, g, one, mistakes=state.aux["mistakes"] + (1.0 - jnp.exp(lp)))
        return new, StepMetrics(one, tree_norm(g), success.astype(jnp.float32), {})
