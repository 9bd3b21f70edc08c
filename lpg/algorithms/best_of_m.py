"""Algorithm 1 (outcome reward, best-of-m over whole responses; claims C3–C5) and
Algorithm 2 (process reward, token-level best-of-m; claim C9), PAPER.md §3.

Algorithm 1, per context: sample ``y ~ p_w``; if the ORM rejects it, draw up to ``m``
whole responses from ``½q0 + ½Unif(Y^N)`` until one is accepted; update
``w += η_t ∇ log p_w(y*|x)`` on the success, nothing if none. Each draw is one query.
The paper's choice is ``m = min(⌈1/Q_{q0}(ε)⌉, k^N)``; ``log m`` is traced
(:class:`~lpg.algorithms.common.Hyper`), so ``m = 32^128`` is fine.

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
paper's ``m = min(⌈1/Q^TL_{q0}(ε)⌉, k)`` per position; the ``Õ`` hides the factor
``ln(N/δ)`` that lets a walk reach the end of the response (see ``scaling-n``).

Both have an exact ``event`` path (PAPER.md §6: Bernoulli and truncated-geometric draws
with teacher-forced probabilities, counts in log space) and a ``sample`` path that
draws real tokens (for testing the event path; ``m`` must then be moderate).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from lpg import _checks, kernels
from lpg.algorithms import common
from lpg.algorithms.common import OPTIMIZERS, Problem, StepMetrics
from lpg.features import START
from lpg.policy import log_prob, previous_tokens, sample_from_logits, token_log_probs
from lpg.rewards import bernoulli_log, draw_cap, leading_true, log_truncated_geometric, outcome_reward

PATHS = ("event", "sample")
STEP_UNITS = ("token", "response")


class _BestOfMBase(eqx.Module):
    batch_size: int = eqx.field(static=True)
    optimizer: str = eqx.field(static=True)
    path: str = eqx.field(static=True)

    def __init__(self, *, batch_size: int = 1, optimizer: str = "adaptive", path: str = "event"):
        self.batch_size = _checks.int_at_least("batch_size", batch_size, 1)
        self.optimizer = _checks.one_of("optimizer", optimizer, OPTIMIZERS)
        self.path = _checks.one_of("path", path, PATHS)

    def _update(self, state, problem, xs, ys, coef, log_q, hyper):
        """One step of the ascent optimiser on ``∇ Σ_b c_b log p_w(y*_b|x_b)/B``:
        ``(new state, ‖g‖)``."""
        del hyper
        g = common.weighted_grad(problem.fmap, state.w, xs, ys, coef / self.batch_size, problem.length)
        return common.apply_ascent(state, g, self.optimizer, log_q), common.tree_norm(g)

    def init(self, w0, hyper):
        return common.init_state(w0, self.optimizer, hyper)

    def step(self, state, key, problem: Problem, hyper):
        k_ctx, k_run = jax.random.split(key)
        xs, ys = problem.contexts(k_ctx, self.batch_size)
        keys = jax.random.split(k_run, self.batch_size)
        one = self._event_one if self.path == "event" else self._sample_one
        coef, log_q, success = jax.vmap(lambda x, y, k: one(state.w, k, problem, x, y, hyper))(xs, ys, keys)
        total_q = jax.nn.logsumexp(log_q)
        new, g_norm = self._update(state, problem, xs, ys, coef, total_q, hyper)
        nan = jnp.asarray(jnp.nan, jnp.float32)
        return new, StepMetrics(total_q, g_norm, jnp.mean(success), nan)


def _draws_until(key, m, draw_is_correct):
    """Draw until ``draw_is_correct(key)`` or ``m`` draws: ``(found, draws)``."""

    def cond(c):
        i, found, _ = c
        return (~found) & (i < m)

    def body(c):
        i, _, k = c
        k, sub = jax.random.split(k)
        return i + 1.0, draw_is_correct(sub), k

    i, found, _ = jax.lax.while_loop(cond, body, (jnp.zeros(()), jnp.zeros((), bool), key))
    return found, i


class BestOfM(_BestOfMBase):
    """Algorithm 1: ORM with best-of-m fallback to ``½q0 + ½Unif(Y^N)``."""

    def _event_one(self, w, key, problem, x, y, hyper):
        k0, k1 = jax.random.split(key)
        length, fmap = problem.length, problem.fmap
        on_policy = bernoulli_log(k0, log_prob(fmap, w, x, y, length))
        lq0 = log_prob(fmap, problem.base_weights(), x, y, length)
        log_rho = common.mixture_log_prob(lq0, length * jnp.log(float(fmap.k)))
        found, log_draws = log_truncated_geometric(k1, log_rho, hyper.log_m)
        log_q = jnp.where(on_policy, 0.0, jnp.logaddexp(0.0, log_draws))
        success = on_policy | found
        return success.astype(jnp.float32), log_q, success

    def _sample_one(self, w, key, problem, x, y, hyper):
        k0, k1 = jax.random.split(key)
        length = problem.length
        first = common.behaviour_sample("on_policy", problem, w, x, k0)
        on_policy = outcome_reward(first, y, length) > 0

        def mixture_hit(k):
            return outcome_reward(common.behaviour_sample("mixture", problem, w, x, k), y, length) > 0

        found, draws = _draws_until(k1, jnp.where(on_policy, 0.0, draw_cap(hyper.log_m)), mixture_hit)
        success = on_policy | found
        return success.astype(jnp.float32), jnp.log(1.0 + draws), success


def token_steps(fmap, w, xs, ys, coef):
    """Adaptive token steps in order of position: for ``i = 1..N``,
    ``w += mean_b c_{b,i}·g_b/(4 + 2‖g_b‖²)`` with ``g_b = ∇_w log p_w(y_{b,i}|x_b,
    y_{b,<i})`` taken at the current ``w`` (``coef (B, N)``; 0 skips a token). A batch of
    one walk is one SGD step per verified token; a batch is averaged per position, as
    the response-level step averages it per response.

    In order, not summed at the iteration's ``w``: on a task whose positions share weights
    ``L`` steps taken at one point move ``w`` ``L`` times as far as one step, past what the
    adaptive step keeps stable (at ``N = 512`` a single walk put every logit gap of a
    planted context above 20). The bigram map takes the closed form
    :func:`lpg.kernels.bigram_token_steps`; any other map :func:`token_steps_reference`."""
    if kernels.fast_bigram(fmap):
        return kernels.bigram_token_steps(w, xs, ys, coef)
    return token_steps_reference(fmap, w, xs, ys, coef)


def token_steps_reference(fmap, w, xs, ys, coef):
    """The plain JAX path of :func:`token_steps` (autodiff per context and position)."""

    def log_lik(v, x, prev, y):
        return jax.nn.log_softmax(fmap.step_logits(v, fmap.encode(v, x), prev))[y]

    grads = jax.vmap(jax.grad(log_lik), in_axes=(None, 0, 0, 0))

    def position(w, inp):
        prev, y, c = inp
        g = grads(w, xs, prev, y)
        sq = sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree_util.tree_leaves(g))
        eta = c / (4.0 + 2.0 * sq) / c.shape[0]
        return jax.tree_util.tree_map(lambda a, d: a + jnp.tensordot(eta, d, axes=1), w, g), None

    prevs = jax.vmap(previous_tokens)(ys)
    return jax.lax.scan(position, w, (prevs.T, ys.T.astype(jnp.int32), coef.T))[0]


class TokenBestOfM(_BestOfMBase):
    """Algorithm 2: PRM with token-level best-of-m fallback to ``½q0(·|x, y*_<i) + ½Unif(Y)``.

    ``step_unit`` (with ``optimizer="adaptive"``): ``"token"`` (default) takes the
    paper's adaptive step ``η = 1/(4 + 2‖g‖²)`` once per verified token, in order, ``g``
    the gradient of that token's log-likelihood at the current weights — the process
    reward's unit, so a verified prefix of length ``L`` is ``L`` token-level SGD steps
    (:func:`token_steps`); ``"response"`` takes one step on the sum over the prefix, as
    Algorithm 1 does on a whole response. On tasks whose positions share weights the
    summed gradient's norm grows like ``L``, so the response-level step shrinks like
    ``1/L`` and the number of failed iterations grows with ``N`` (measured in
    ``scaling-n``)."""

    step_unit: str = eqx.field(static=True)

    def __init__(self, *, batch_size: int = 1, optimizer: str = "adaptive", path: str = "event",
                 step_unit: str | None = None):
        super().__init__(batch_size=batch_size, optimizer=optimizer, path=path)
        if step_unit is None:
            step_unit = "token" if self.optimizer == "adaptive" else "response"
        self.step_unit = _checks.one_of("step_unit", step_unit, STEP_UNITS)
        if self.step_unit == "token" and self.optimizer != "adaptive":
            raise ValueError(f"step_unit must be 'response' with optimizer={self.optimizer!r} (a per-token step "
                             f"is the adaptive step's), got step_unit='token'")

    def _update(self, state, problem, xs, ys, coef, log_q, hyper):
        if self.step_unit != "token":
            return super()._update(state, problem, xs, ys, coef, log_q, hyper)
        w = token_steps(problem.fmap, state.w, xs, ys, coef * hyper.lr)
        new = state._replace(w=w, step=state.step + 1, log_queries=jnp.logaddexp(state.log_queries, log_q))
        return new, common.tree_norm(jax.tree_util.tree_map(jnp.subtract, w, state.w))

    def _event_one(self, w, key, problem, x, y, hyper):
        N, length, fmap = problem.N, problem.length, problem.fmap
        k0, k1 = jax.random.split(key)
        on_policy = bernoulli_log(k0, log_prob(fmap, w, x, y, length))
        tq0 = token_log_probs(fmap, problem.base_weights(), x, y)
        log_rho = common.mixture_log_prob(tq0, jnp.log(float(fmap.k)))
        found, log_draws = log_truncated_geometric(k1, log_rho, hyper.log_m)
        return self._finish(on_policy, found, log_draws, N, length)

    def _sample_one(self, w, key, problem, x, y, hyper):
        N, length, fmap = problem.N, problem.length, problem.fmap
        k0, k1 = jax.random.split(key)
        on_policy = outcome_reward(common.behaviour_sample("on_policy", problem, w, x, k0), y, length) > 0
        w0 = problem.base_weights()
        code0 = fmap.encode(w0, x)
        prevs = jnp.concatenate([jnp.full((1,), START, jnp.int32), y[:-1]])
        m = draw_cap(hyper.log_m)

        def position(k, prev, target):
            logits0 = fmap.step_logits(w0, code0, prev)

            def mixture_hit(kk):
                ka, kb, kc = jax.random.split(kk, 3)
                from_q0 = sample_from_logits(logits0, jax.random.uniform(ka))
                unif = jax.random.randint(kb, (), 0, fmap.k)
                return jnp.where(jax.random.bernoulli(kc), unif, from_q0) == target

            return _draws_until(k, m, mixture_hit)

        # Every position is simulated; _finish keeps only the walked ones.
        found, draws = jax.vmap(position)(jax.random.split(k1, N), prevs, y)
        return self._finish(on_policy, found, jnp.log(draws), N, length)

    @staticmethod
    def _finish(on_policy, found, log_draws, N, length):
        """From the on-policy verdict and the per-position walk to
        (update coefficients, log queries, success)."""
        L_walk = leading_true(found, length)
        L = jnp.where(on_policy, length, L_walk)
        walked = jnp.arange(N) < jnp.minimum(L_walk + 1, length)
        log_walk = jax.nn.logsumexp(jnp.where(walked, log_draws, -jnp.inf))
        log_q = jnp.where(on_policy, 0.0, jnp.logaddexp(0.0, log_walk))
        coef = (jnp.arange(N) < L).astype(jnp.float32)
        return coef, log_q, L == length
