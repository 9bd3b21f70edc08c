"""SGD on labelled pairs ``(x, y*(x))``: statistical learning and supervised
pre-training of base models (PAPER.md §3; claims C1 and C8).

``w += η_t ∇ log p_w(y*|x)`` with the adaptive step ``η_t = 1/(4 + 2‖g_t‖²)``
(error ``Õ(1/(γ²T))``, C1), a constant step (``Õ(N/(γ²T))``), or any optax optimiser
(:func:`lpg.optim.make`) — the authors pre-train with Adagrad on the token-averaged
cross-entropy (``loss_norm="token"``). No reward queries are made.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lpg import _checks, optim, rewards
from lpg.algorithms.base import AbstractAlgorithm, StepMetrics, hyper as make_hyper, tree_norm
from lpg.algorithms.train import step_key
from lpg.policy import weighted_grad
from lpg.problem import Problem

LOSS_NORMS = ("sequence", "token")


class SGD(AbstractAlgorithm):
    batch_size: int = eqx.field(static=True)
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    loss_norm: str = eqx.field(static=True)

    def __init__(self, *, batch_size: int = 1, optimizer: str | optim.Factory = "adaptive", loss_norm: str = "sequence"):
        self.batch_size = _checks.int_at_least("batch_size", batch_size, 1)
        self.optimizer = optim.make(optimizer)
        self.loss_norm = _checks.one_of("loss_norm", loss_norm, LOSS_NORMS)

    def step(self, state, key, problem: Problem, hyper):
        xs, ys = problem.contexts(key, self.batch_size)
        norm = self.batch_size * (problem.length if self.loss_norm == "token" else 1)
        coef = jnp.ones((self.batch_size,), jnp.float32) / norm
        g = weighted_grad(problem.fmap, state.w, xs, ys, coef, problem.length)
        none = rewards.count(0)
        return self.ascend(state, g, none), StepMetrics(none, tree_norm(g), jnp.ones(()), {})


def pretrain(problem: Problem, key, *, steps: int, batch_size: int = 256, optimizer: str | optim.Factory = "adagrad",
             lr: float = 0.1, loss_norm: str = "token", w0=None):
    """Supervised pre-training of a base model ``q0`` (the authors' recipe by default:
    Adagrad, lr 0.1, batch 256, token-averaged cross-entropy). Returns the weights; the
    key of step ``t`` is ``fold_in(key, t)``, as in :func:`lpg.train`."""
    steps = _checks.int_at_least("steps", steps, 1)
    alg = SGD(batch_size=batch_size, optimizer=optimizer, loss_norm=loss_norm)
    hyper = make_hyper(lr=lr)
    w0 = problem.fmap.init_params() if w0 is None else w0

    @jax.jit
    def run(w0, key):
        def body(st, _):
            return alg.step(st, step_key(key, st.step), problem, hyper)[0], None

        return jax.lax.scan(body, alg.init(w0, hyper), None, length=steps)[0].w

    return run(w0, key)
