"""SGD on labelled pairs ``(x, y*(x))``: statistical learning and supervised
pre-training of base models (PAPER.md §3; claims C1 and C8).

``w += η_t ∇ log p_w(y*|x)`` with the adaptive step ``η_t = 1/(4 + 2‖g_t‖²)``
(error ``Õ(1/(γ²T))``, C1), a constant step (``Õ(N/(γ²T))``), or any optax optimiser
(:func:`lpg.optim.make`) — the authors pre-train with Adagrad on the token-averaged
cross-entropy (``loss_norm="token"``). No reward queries are made.

Which gradient the adaptive step follows (PAPER.md §3): ``step_unit="response"`` (the
default, as §3 writes SGD) takes one step on ``∇ log p_w(y*|x)``, the whole response;
``"token"`` takes one adaptive step per token of ``y*``, in order, each on
``∇ log p_w(y*_i|x, y*_<i)`` at the current weights — Algorithm 2's unit
(:meth:`lpg.features.AbstractFeatureMap.token_steps`). From the uniform start the
response-level step first spends about ``2·ln(1/p_w0(y*|x)) = 2N ln k`` steps per context
(each lowers the loss by less than 1/2); the per-token step does not.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lpg import _checks, optim, progress, rewards, segments
from lpg.algorithms.base import AbstractAlgorithm, StepMetrics, hyper as make_hyper, step_unit_of, tree_norm
from lpg.algorithms.train import step_key
from lpg.policy import position_mask, weighted_grad
from lpg.problem import Problem

LOSS_NORMS = ("sequence", "token")


class SGD(AbstractAlgorithm):
    """``w += η_t ∇ log p_w(y*|x)`` on ``batch_size`` labelled pairs per step (the batch
    mean); ``step_unit="token"`` (adaptive step only, ``loss_norm="sequence"``): one
    adaptive step per token of ``y*``, in order, the batch averaged per position."""

    batch_size: int = eqx.field(static=True)
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    loss_norm: str = eqx.field(static=True)
    step_unit: str = eqx.field(static=True)

    def __init__(self, *, batch_size: int = 1, optimizer: str | optim.Factory = "adaptive", loss_norm: str = "sequence",
                 step_unit: str = "response"):
        self.batch_size = _checks.int_at_least("batch_size", batch_size, 1)
        self.optimizer = optim.make(optimizer)
        self.loss_norm = _checks.one_of("loss_norm", loss_norm, LOSS_NORMS)
        self.step_unit = step_unit_of(step_unit, optimizer, self.loss_norm)

    def step(self, state, key, problem: Problem, hyper):
        xs, ys = problem.contexts(key, self.batch_size)
        none = rewards.count(0)
        if self.step_unit == "token":
            mask = jnp.broadcast_to(position_mask(ys.shape[-1], problem.length), ys.shape).astype(jnp.float32)
            w = problem.fmap.token_steps(state.w, xs, ys, mask * optim.learning_rate(state.opt_state))
            moved = tree_norm(jax.tree_util.tree_map(jnp.subtract, w, state.w))
            return state._replace(w=w, step=state.step + 1), StepMetrics(none, moved, jnp.ones(()), {})
        norm = self.batch_size * (problem.length if self.loss_norm == "token" else 1)
        coef = jnp.ones((self.batch_size,), jnp.float32) / norm
        g = weighted_grad(problem.fmap, state.w, xs, ys, coef, problem.length)
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
    progress.expect(steps)

    def run(w0, key):
        def body(st, _):
            return alg.step(st, step_key(key, st.step), problem, hyper)[0], None

        def plain():
            st = jax.lax.scan(body, st0, None, length=steps)[0]
            progress.report_done(steps, after=st.step, like=(key, st))  # the live progress (lpg.progress)
            return st, ()

        def block(st, i):  # one step in a segment (lpg.segments)
            st = body(st, None)[0]
            progress.report_at_point(i, steps, 1, after=st.step, like=(key, st))
            return st, ()

        st0 = alg.init(w0, hyper)
        return segments.loop(block, st0, steps, steps_each=1, plain=plain)[0].w

    return (run if segments.active() else jax.jit(run))(w0, key)
