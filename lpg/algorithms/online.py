"""Online PG with uniform exploration (PAPER.md §3; claim C7, reconstructed).

Round ``t``: a context ``x_t`` arrives (drawn from the task, or the ``t``-th row of a
fixed — possibly adversarial — sequence given as ``contexts``); the learner suffers
``1 − p_{w_t}(y*_t|x_t)`` (its mistake probability, accumulated in
``TrainState.mistakes``); it draws ``y ~ Unif(Y^N)`` and queries the ORM once; on
success (``y = y*``) it updates ``w += η_t ∇ log p_w(y*_t|x_t)`` with the adaptive
step. Mistakes ``Õ(k^N/γ²)``, lower bound ``Ω(k^N/(Nγ²))``.

The ``event`` path draws the success with probability ``k^-N`` directly (PAPER.md §6);
the ``sample`` path draws the uniform response.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from lpg import _checks
from lpg.algorithms import common
from lpg.algorithms.common import OPTIMIZERS, Problem, StepMetrics
from lpg.policy import log_prob
from lpg.rewards import bernoulli_log, outcome_reward

PATHS = ("event", "sample")


class OnlinePG(eqx.Module):
    optimizer: str = eqx.field(static=True)
    path: str = eqx.field(static=True)
    contexts: jax.Array | None

    def __init__(self, *, optimizer: str = "adaptive", path: str = "event", contexts=None):
        self.optimizer = _checks.one_of("optimizer", optimizer, OPTIMIZERS)
        self.path = _checks.one_of("path", path, PATHS)
        if contexts is not None and jnp.ndim(contexts) != 2:
            raise ValueError(f"contexts must have shape (T, d), got shape {jnp.shape(contexts)}")
        self.contexts = None if contexts is None else jnp.asarray(contexts)

    def init(self, w0, hyper):
        return common.init_state(w0, self.optimizer, hyper)

    def step(self, state, key, problem: Problem, hyper):
        k_ctx, k_run = jax.random.split(key)
        if self.contexts is None:
            x = problem.task.sample_contexts(k_ctx, 1)[0]
        else:
            x = self.contexts[state.step % self.contexts.shape[0]]
        y = problem.task.response(x)
        length, fmap = problem.length, problem.fmap
        lp = log_prob(fmap, state.w, x, y, length)
        if self.path == "event":
            success = bernoulli_log(k_run, -length * jnp.log(float(fmap.k)))
        else:
            guess = jax.random.randint(k_run, (problem.N,), 0, fmap.k)
            success = outcome_reward(guess, y, length) > 0
        coef = success.astype(jnp.float32)[None]
        g = common.weighted_grad(fmap, state.w, x[None], y[None], coef, length)
        new = common.apply_ascent(state, g, self.optimizer, jnp.zeros(()), mistakes=1.0 - jnp.exp(lp))
        nan = jnp.asarray(jnp.nan, jnp.float32)
        return new, StepMetrics(jnp.zeros(()), common.tree_norm(g), success.astype(jnp.float32), nan)
