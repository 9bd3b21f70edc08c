"""A process reward paid for with outcome queries: the Monte-Carlo process verifier
(Math-Shepherd-style labelling) and Algorithm 2 run with it (issue 14, question 2).

The verifier (:class:`MonteCarloVerifier`). The label of a prefix ``y_{≤i}`` is 1 when
at least one of ``r`` rollouts completing it is accepted by the exact outcome verifier
``1[y = y*]``; the rollouts are drawn from the base model ``q0`` (``rollout="base"``) or
from the current policy ``p_w`` (``rollout="current"``). Each rollout is one outcome
query. Rollouts stop at the first accepted one (``early_stop=True``, the default: the
label is already 1, asking further is waste); ``early_stop=False`` always spends all
``r``. The label of a complete response (the last real position) is the outcome
verifier itself: one query, no rollout. So, exactly:

* a wrong prefix is never labelled 1 (no completion of it is ``y*``) and costs ``r``
  queries (1 at the last position);
* the correct prefix ``y*_{≤i}`` is falsely rejected with probability
  ``fn_i = (1 − s_i)^r``, ``s_i = q(y*_{>i} | x, y*_{≤i})`` the suffix likelihood under
  the rollout policy ``q`` (``fn = 0`` at the last position); a false rejection costs
  ``r``, an acceptance ``G ~ Geometric(s_i)`` conditioned on ``G ≤ r`` (``r`` without
  early stopping).

Algorithm 2 with it (:class:`MonteCarloTokenBestOfM`, :class:`lpg.TokenBestOfM` with the
labels above): the on-policy sample is checked by the outcome verifier (one query);
when it is wrong, the walk draws up to ``m`` candidate tokens per position from
``½q0(·|x, y*_<i) + ½Unif(Y)`` and accepts the first one the verifier labels 1, and
truncates at the first position where none is. A candidate is accepted with probability
``ρ_i (1 − fn_i)`` (``ρ_i`` the mixture's probability of ``y*_i``), independently across
candidates and positions, so the exact event path of PAPER.md §6 carries over: per
position ``(found, D) ~`` truncated geometric (:func:`lpg.rewards.truncated_geometric`),
the queries ``r·(D − found) + found·G`` (``D`` at the last position), carried in a
:class:`lpg.rewards.Count` (log space for counts beyond ``2^22``). The sampled path
draws real candidate tokens and real rollouts and checks each completion with
:func:`lpg.rewards.outcome_reward`; the two are tested against each other and the
verifier's law against exact enumeration (``tests/test_mc_prm.py``).

Why not an :class:`lpg.rewards.AbstractReward`: its ``queries`` is a deterministic count
of a response, and this verifier's cost is random and depends on the rollout policy.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from lpg import _checks, optim
from lpg.algorithms.best_of_m import TokenBestOfM
from lpg.behaviours import OnPolicy, mixture_log_prob, mixture_token
from lpg.policy import START, previous_tokens, sample_from_logits, token_log_probs
from lpg.rewards import (Count, _log_rate, add_counts, bernoulli_log, count, draw_cap, outcome_reward,
                         select_count, truncated_geometric)

__all__ = ["ROLLOUTS", "LabelLaw", "MonteCarloTokenBestOfM", "MonteCarloVerifier", "scale_count"]

ROLLOUTS = ("base", "current")
"""Where the rollouts come from: the base model ``q0`` or the current policy ``p_w``."""

_LIMB = 2**30


def scale_count(c: Count, factor) -> Count:
    """``factor·c`` for a positive (traced) ``factor``: exact while the product stays
    below ``2^30`` and ``c`` has no log-space part, in log space beyond."""
    factor = jnp.asarray(factor, jnp.float32)
    exact = c.hi.astype(jnp.float32) * float(_LIMB) + c.lo.astype(jnp.float32)
    fits = (c.hi == 0) & (exact * factor < float(_LIMB) - 1.0) & jnp.isinf(c.log_big)
    log_f = jnp.log(factor)
    small = count(jnp.where(fits, jnp.round(exact * factor), 0.0).astype(jnp.int32))
    big = jnp.logaddexp(jnp.log(exact) + log_f, c.log_big + log_f)
    return select_count(fits, small, count(0, big))


def minus_one_if(c: Count, cond) -> Count:
    """``c − 1`` where ``cond`` and ``c ≥ 1`` has an exact part (a count held only in log
    space is beyond ``2^22``, where one query is below float precision)."""
    has = (c.hi > 0) | (c.lo > 0)
    take = jnp.asarray(cond) & has
    borrow = take & (c.lo == 0)
    lo = jnp.where(take, jnp.where(borrow, _LIMB - 1, c.lo - 1), c.lo)
    return Count(jnp.where(borrow, c.hi - 1, c.hi), lo, c.log_big)


def _log1m_exp_neg(log_x):
    """``log(1 − e^{−x})`` from ``log x`` (``x ≥ 0``; ``inf`` gives 0), stable for tiny ``x``."""
    x = jnp.exp(log_x)
    return jnp.where(log_x < -10.0, log_x - 0.5 * x, jnp.log(-jnp.expm1(-x)))


class LabelLaw(NamedTuple):
    """The verifier's law along ``y*`` at every position (``(N,)`` each; position ``i``
    is the prefix ``y*_{≤i}``, 0-based): ``log_suffix = log s_i`` (0 at the last real
    position and at padding), ``log_accept = log(1 − fn_i)`` (0 at the last real
    position), and ``last``, the last real position (labelled by the outcome verifier)."""

    log_suffix: Float[Array, "N"]
    log_accept: Float[Array, "N"]
    last: Bool[Array, "N"]


class MonteCarloVerifier(eqx.Module):
    """The Monte-Carlo process verifier (module docstring): ``r`` rollouts per label
    (a traced field, so a sweep over ``r`` does not recompile), from ``rollout``
    (``"base"`` or ``"current"``), stopping at the first accepted one when
    ``early_stop``."""

    r: Float[Array, ""]
    rollout: str = eqx.field(static=True)
    early_stop: bool = eqx.field(static=True)

    def __init__(self, r=8, *, rollout: str = "base", early_stop: bool = True):
        if not isinstance(r, jax.core.Tracer):
            r = _checks.int_at_least("r", r, 1)
        self.r = jnp.asarray(r, jnp.float32)
        self.rollout = _checks.one_of("rollout", rollout, ROLLOUTS)
        self.early_stop = bool(early_stop)

    def rollout_weights(self, problem, w):
        """The weights of the rollout policy: ``q0`` or the current ``w``."""
        return problem.base_weights() if self.rollout == "base" else w

    # -- the exact law along y* ----------------------------------------------------

    def law(self, problem, w, x, y_star) -> LabelLaw:
        """:class:`LabelLaw` of the labels of the correct prefixes of ``y_star``."""
        N, length = problem.N, problem.length
        tl = token_log_probs(problem.fmap, self.rollout_weights(problem, w), x, y_star, length)  # 0 at padding
        log_suffix = jnp.sum(tl) - jnp.cumsum(tl)  # Σ_{j>i} log q(y*_j | ·)
        last = jnp.arange(N) == length - 1
        log_suffix = jnp.where(last | (jnp.arange(N) >= length), 0.0, jnp.minimum(log_suffix, 0.0))
        # 1 − fn = 1 − (1 − s)^r = 1 − e^{−rλ}, λ = −log(1 − s)
        log_accept = _log1m_exp_neg(jnp.log(self.r) + _log_rate(log_suffix))
        return LabelLaw(log_suffix, jnp.where(last, 0.0, log_accept), last)

    def accepted_cost(self, key, log_suffix):
        """Rollouts spent on a correct prefix that is labelled 1: ``G ~ Geometric(s)``
        conditioned on ``G ≤ r`` (inverse CDF), or ``r`` without early stopping."""
        if not self.early_stop:
            return jnp.broadcast_to(self.r, jnp.shape(log_suffix))
        u = jax.random.uniform(key, jnp.shape(log_suffix))
        lam = jnp.exp(_log_rate(log_suffix))
        r_lam = self.r * lam
        t = jnp.where(r_lam < 1e-6, u * self.r, -jnp.log1p(-u * -jnp.expm1(-r_lam)) / lam)
        return jnp.clip(jnp.ceil(t), 1.0, self.r)

    # -- the sampled verifier ----------------------------------------------------------

    def complete(self, key, problem, w, x, head, i) -> Int[Array, "N"]:
        """One rollout: ``head``'s tokens at positions ``≤ i``, then the rollout policy's."""
        fmap = problem.fmap
        wr = self.rollout_weights(problem, w)
        code = fmap.encode(wr, x)
        us = jax.random.uniform(key, (problem.N,))

        def body(prev, inp):
            j, h, u = inp
            tok = jnp.where(j <= i, h, sample_from_logits(fmap.step_logits(wr, code, prev), u))
            return tok, tok

        _, ys = jax.lax.scan(body, jnp.asarray(START, jnp.int32), (jnp.arange(problem.N), head, us))
        return ys.astype(jnp.int32)

    def sample_label(self, key, problem, w, x, head, i, y_star) -> tuple[Bool[Array, ""], Int[Array, ""]]:
        """The label of the prefix ``head_{≤i}`` and the outcome queries it cost, by real
        rollouts checked with the outcome verifier (the complete response itself at the
        last real position)."""
        length = problem.length
        at_end = i >= length - 1
        whole = outcome_reward(head, y_star, length) > 0
        r = self.r

        def body(c):
            n, ok, k = c
            k, sub = jax.random.split(k)
            hit = outcome_reward(self.complete(sub, problem, w, x, head, i), y_star, length) > 0
            return n + 1.0, ok | hit, k

        more = (lambda c: (~c[1]) & (c[0] < r)) if self.early_stop else (lambda c: c[0] < r)
        n, ok, _ = jax.lax.while_loop(more, body, (jnp.zeros(()), at_end, key))  # no rollout at the end
        label = jnp.where(at_end, whole, ok)
        return label, jnp.where(at_end, 1, n.astype(jnp.int32))


class MonteCarloTokenBestOfM(TokenBestOfM):
    """Algorithm 2 with the Monte-Carlo process verifier ``verifier`` (module docstring):
    every query counted is an outcome query, the labelling's rollouts included."""

    verifier: MonteCarloVerifier

    def __init__(self, verifier: MonteCarloVerifier | None = None, *, batch_size: int = 1,
                 optimizer: str | optim.Factory = "adaptive", event_path: bool = True, step_unit: str | None = None):
        if verifier is None:
            verifier = MonteCarloVerifier()
        if not isinstance(verifier, MonteCarloVerifier):
            raise ValueError(f"verifier must be an lpg.mc_prm.MonteCarloVerifier, got {verifier!r}")
        self.verifier = verifier
        super().__init__(batch_size=batch_size, optimizer=optimizer, event_path=event_path, step_unit=step_unit)

    def _event_one(self, w, key, problem, x, y, hyper):
        N, length, fmap = problem.N, problem.length, problem.fmap
        k0, k1, k2 = jax.random.split(key, 3)
        on_policy = bernoulli_log(k0, OnPolicy().log_prob(problem, w, x, y))
        law = self.verifier.law(problem, w, x, y)
        log_rho = mixture_log_prob(token_log_probs(fmap, problem.base_weights(), x, y), math.log(fmap.k))
        found, draws = truncated_geometric(k1, log_rho + law.log_accept, hyper.log_m)
        rejected = scale_count(minus_one_if(draws, found), self.verifier.r)
        accepted = count(jnp.where(found, self.verifier.accepted_cost(k2, law.log_suffix), 0.0).astype(jnp.int32))
        cost = select_count(law.last, draws, add_counts(rejected, accepted))
        return self._finish(on_policy, found, cost, N, length) + (y,)

    def _sample_one(self, w, key, problem, x, y, hyper):
        N, length, fmap = problem.N, problem.length, problem.fmap
        k0, k1 = jax.random.split(key)
        on_policy = outcome_reward(OnPolicy().sample(problem, w, x, k0), y, length) > 0
        w0 = problem.base_weights()
        code0 = fmap.encode(w0, x)
        m = draw_cap(hyper.log_m)

        def position(k, i, prev, target):
            logits0 = fmap.step_logits(w0, code0, prev)

            def cond(c):
                n, ok, _, _ = c
                return (~ok) & (n < m)

            def body(c):
                n, _, spent, kk = c
                kk, ka, kb, kc, kd = jax.random.split(kk, 5)
                tok = mixture_token(logits0, (ka, kb, kc))
                label, q = self.verifier.sample_label(kd, problem, w, x, y.at[i].set(tok), i, y)
                return n + 1.0, label, spent + q, kk

            _, found, spent, _ = jax.lax.while_loop(cond, body, (jnp.zeros(()), jnp.zeros((), bool),
                                                                  jnp.zeros((), jnp.int32), k))
            return found, spent

        # Every position is simulated; _finish keeps only the walked ones.
        found, spent = jax.vmap(position)(jax.random.split(k1, N), jnp.arange(N), previous_tokens(y), y)
        return self._finish(on_policy, found, count(spent), N, length) + (y,)
