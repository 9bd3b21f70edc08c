"""Algorithm 1 (outcome reward, best-of-m over whole responses; claims C3–C5) and
Algorithm 2 (process reward, token-level best-of-m; claim C9), PAPER.md §3.

Algorithm 1, per context: sample ``y ~ p_w``; if the verifier rejects it, draw up to
``m`` whole responses from ``½q0 + ½Unif(Y^N)`` until one is accepted; update
``w += η_t ∇ log p_w(y|x)`` on the accepted response, nothing if none. Each draw is one
query. The paper's choice is ``m = min(⌈1/Q_{q0}(ε)⌉, k^N)``
(:func:`lpg.theory.orm_log_m`); ``log m`` is traced (:class:`~lpg.algorithms.base.Hyper`),
so ``m = 32^128`` is fine. The step: ``step_unit="response"`` (default, as PAPER.md §3
writes it) one adaptive step on the whole accepted response; ``"token"`` one adaptive
step per token of it, in order (Algorithm 2's unit, below).

Algorithm 2 (reconstructed to mirror Algorithm 1), per context: sample ``y ~ p_w`` and
query the PRM once on the complete response; if it verifies, update on it. Otherwise
walk the positions: at a correct prefix ``y*_<i`` draw up to ``m`` candidate tokens from
``½q0(·|x, y*_<i) + ½Unif(Y)``, querying the PRM on each extended prefix, and accept the
first correct one; if none verifies, the response is truncated at ``L = i − 1``. Then
for ``i = 1..L`` in order ``w += η_i ∇ log p_w(y*_i|x, y*_<i)`` with the adaptive step
``η_i = 1/(4 + 2‖∇ log p_w(y*_i|·)‖²)`` at the current ``w``: one step per verified token
(``step_unit="token"``; ``"response"`` takes one step on the 0/1 process-reward
gradient, the sum over the prefix). An iteration whose
on-policy sample is right costs one query, one that is wrong a walk of at most ``N·m``,
which is the shape of C9's bound ``Õ(N·min(1/Q^TL_{q0}(ε), k)/γ² + 1/(γ²ε))``. The
paper's ``m = min(⌈1/Q^TL_{q0}(ε)⌉, k)`` per position (:func:`lpg.theory.prm_log_m`); the
``Õ`` hides the factor ``ln(N/δ)`` that lets a walk reach the end of the response.

Both have an exact event path (PAPER.md §6: Bernoulli and truncated-geometric draws
with teacher-forced probabilities, counts in log space) and a sampled path that draws
real tokens (for testing the event path and for verifiers without one; ``m`` must then be
moderate). Algorithm 1 takes any outcome-type reward (its verdict ``r > 0`` accepts);
Algorithm 2 is defined with the exact process verifier.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lpg import _checks, optim, rewards
from lpg.algorithms.base import AbstractAlgorithm, StepMetrics, per_response_reward, step_unit_of, tree_norm
from lpg.behaviours import Mixture, OnPolicy, mixture_log_prob, mixture_token
from lpg.policy import log_prob, previous_tokens, token_log_probs, weighted_grad
from lpg.problem import Problem
from lpg.rewards import (
    add_counts,
    bernoulli_log,
    count,
    draw_cap,
    leading_true,
    outcome_reward,
    select_count,
    sum_counts,
    truncated_geometric,
)

__all__ = ["BestOfM", "TokenBestOfM"]


def _draws_until(key, m, draw):
    """Draw until ``draw(key) -> (accepted, response)`` accepts or ``m`` draws are made:
    ``(found, draws, accepted response)``."""

    def cond(c):
        i, found, _, _ = c
        return (~found) & (i < m)

    def body(c):
        i, _, k, _ = c
        k, sub = jax.random.split(k)
        found, y = draw(sub)
        return i + 1.0, found, k, y

    _, y0 = jax.eval_shape(draw, key)
    init = (jnp.zeros(()), jnp.zeros((), bool), key, jnp.zeros(y0.shape, y0.dtype))
    i, found, _, y = jax.lax.while_loop(cond, body, init)
    return found, i, y


class _BestOfM(AbstractAlgorithm):
    batch_size: int = eqx.field(static=True)
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    event_path: bool = eqx.field(static=True)
    step_unit: str = eqx.field(static=True)

    def __init__(self, *, batch_size: int = 1, optimizer: str | optim.Factory = "adaptive", event_path: bool = True,
                 step_unit: str = "response"):
        self.batch_size = _checks.int_at_least("batch_size", batch_size, 1)
        self.optimizer = optim.make(optimizer)
        self.event_path = bool(event_path)
        self.step_unit = step_unit_of(step_unit, optimizer)

    def _update(self, state, problem, xs, ys, coef, queries):
        """The update on the accepted responses ``ys`` weighted by ``coef`` (``(B,)``, or
        ``(B, N)`` per verified token): ``"response"``, one step of the optimiser on
        ``∇ Σ_b c_b log p_w(y_b|x_b)/B``; ``"token"``, one adaptive step per token in order,
        the batch averaged per position (:meth:`AbstractAlgorithm.ascend_per_token`).
        Returns ``(new state, ‖g‖ or how far w moved)``."""
        if self.step_unit == "token":
            return self.ascend_per_token(state, problem, xs, ys, coef, queries)
        g = weighted_grad(problem.fmap, state.w, xs, ys, coef / self.batch_size, problem.length)
        return self.ascend(state, g, queries), tree_norm(g)

    def step(self, state, key, problem: Problem, hyper):
        k_ctx, k_run = jax.random.split(key)
        xs, ys = problem.contexts(k_ctx, self.batch_size)
        keys = jax.random.split(k_run, self.batch_size)
        one = self._event_one if self.event_path else self._sample_one
        coef, queries, success, y_upd = jax.vmap(lambda x, y, k: one(state.w, k, problem, x, y, hyper))(xs, ys, keys)
        total_q = sum_counts(queries)
        new, g_norm = self._update(state, problem, xs, y_upd, coef, total_q)
        return new, StepMetrics(total_q, g_norm, jnp.mean(success), {})


class BestOfM(_BestOfM):
    """Algorithm 1: an outcome-type reward with best-of-m fallback to ``½q0 + ½Unif(Y^N)``
    (``reward`` defaults to the exact 0/1 outcome verifier, whose event path is exact).

    ``step_unit`` (with ``optimizer="adaptive"``): ``"response"`` (default, PAPER.md §3)
    takes one adaptive step on ``∇ mean_b log p_w(y_b|x_b)`` over the accepted responses
    (none for a context without one); ``"token"`` takes one adaptive step per token of
    each accepted response, in order: at position ``i``,
    ``w += mean_b [accepted_b]·g_b/(4 + 2‖g_b‖²)`` with ``g_b = ∇ log p_w(y_{b,i}|x_b,
    y_{b,<i})`` at the weights position ``i − 1`` left, the mean over all ``batch_size``
    contexts (a context without an accepted response adds 0), so a batch of copies of
    one context moves ``w`` as far as one context does."""

    reward: rewards.AbstractReward

    def __init__(self, *, reward: rewards.AbstractReward | str = "outcome", batch_size: int = 1,
                 optimizer: str | optim.Factory = "adaptive", event_path: bool | None = None,
                 step_unit: str = "response"):
        self.reward, event_path = per_response_reward(reward, event_path, algorithm="Algorithm 1")
        super().__init__(batch_size=batch_size, optimizer=optimizer, event_path=event_path, step_unit=step_unit)

    def _event_one(self, w, key, problem, x, y, hyper):
        k0, k1 = jax.random.split(key)
        length, fmap = problem.length, problem.fmap
        on_policy = bernoulli_log(k0, log_prob(fmap, w, x, y, length))
        lq0 = log_prob(fmap, problem.base_weights(), x, y, length)
        log_rho = mixture_log_prob(lq0, length * jnp.log(float(fmap.k)))
        found, draws = truncated_geometric(k1, log_rho, hyper.log_m)
        queries = select_count(on_policy, count(1), add_counts(count(1), draws))
        success = on_policy | found
        return success.astype(jnp.float32), queries, success, y

    def _sample_one(self, w, key, problem, x, y, hyper):
        k0, k1 = jax.random.split(key)
        length = problem.length

        def verified(k, behaviour):
            guess = behaviour.sample(problem, w, x, k)
            return self.reward(x, guess, y, length, key=jax.random.fold_in(k, 1)) > 0, guess

        on_policy, first = verified(k0, OnPolicy())
        found, draws, drawn = _draws_until(k1, jnp.where(on_policy, 0.0, draw_cap(hyper.log_m)),
                                           lambda k: verified(k, Mixture()))
        success = on_policy | found
        accepted = jnp.where(on_policy, first, jnp.where(found, drawn, y))
        return success.astype(jnp.float32), count(1 + draws.astype(jnp.int32)), success, accepted


class TokenBestOfM(_BestOfM):
    """Algorithm 2: the process verifier with token-level best-of-m fallback to
    ``½q0(·|x, y*_<i) + ½Unif(Y)``.

    ``step_unit`` (with ``optimizer="adaptive"``): ``"token"`` (default) takes the
    paper's adaptive step ``η = 1/(4 + 2‖g‖²)`` once per verified token, in order, ``g``
    the gradient of that token's log-likelihood at the current weights — the process
    reward's unit, so a verified prefix of length ``L`` is ``L`` token-level SGD steps
    (:meth:`lpg.features.AbstractFeatureMap.token_steps`); ``"response"`` takes one step
    on the sum over the prefix, as Algorithm 1 does on a whole response. On tasks whose
    positions share weights the summed gradient's norm grows like ``L``, so the
    response-level step shrinks like ``1/L`` and the number of failed iterations grows
    with ``N``."""

    def __init__(self, *, batch_size: int = 1, optimizer: str | optim.Factory = "adaptive", event_path: bool = True,
                 step_unit: str | None = None):
        if step_unit is None:
            step_unit = "token" if optim.is_adaptive(optimizer) else "response"
        super().__init__(batch_size=batch_size, optimizer=optimizer, event_path=event_path, step_unit=step_unit)

    def _event_one(self, w, key, problem, x, y, hyper):
        N, length, fmap = problem.N, problem.length, problem.fmap
        k0, k1 = jax.random.split(key)
        on_policy = bernoulli_log(k0, log_prob(fmap, w, x, y, length))
        tq0 = token_log_probs(fmap, problem.base_weights(), x, y)
        log_rho = mixture_log_prob(tq0, jnp.log(float(fmap.k)))
        found, draws = truncated_geometric(k1, log_rho, hyper.log_m)
        return self._finish(on_policy, found, draws, N, length) + (y,)

    def _sample_one(self, w, key, problem, x, y, hyper):
        N, length, fmap = problem.N, problem.length, problem.fmap
        k0, k1 = jax.random.split(key)
        on_policy = outcome_reward(OnPolicy().sample(problem, w, x, k0), y, length) > 0
        w0 = problem.base_weights()
        code0 = fmap.encode(w0, x)
        m = draw_cap(hyper.log_m)

        def position(k, prev, target):
            logits0 = fmap.step_logits(w0, code0, prev)

            def candidate(kk):
                tok = mixture_token(logits0, jax.random.split(kk, 3))
                return tok == target, tok

            found, draws, _ = _draws_until(k, m, candidate)
            return found, draws

        # Every position is simulated; _finish keeps only the walked ones.
        found, draws = jax.vmap(position)(jax.random.split(k1, N), previous_tokens(y), y)
        return self._finish(on_policy, found, count(draws.astype(jnp.int32)), N, length) + (y,)

    @staticmethod
    def _finish(on_policy, found, draws, N, length):
        """From the on-policy verdict and the per-position walk (``draws``, a
        :class:`~lpg.rewards.Count` per position) to (update coefficients, queries, success)."""
        L_walk = leading_true(found, length)
        L = jnp.where(on_policy, length, L_walk)
        walked = jnp.arange(N) < jnp.minimum(L_walk + 1, length)
        walk = sum_counts(select_count(walked, draws, count(jnp.zeros((N,), jnp.int32))))
        queries = select_count(on_policy, count(1), add_counts(count(1), walk))
        coef = (jnp.arange(N) < L).astype(jnp.float32)
        return coef, queries, L == length
