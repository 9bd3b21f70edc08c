"""Noisy verifiers (issue 14, question Q1): outcome and process verifiers that accept a
wrong response (prefix) with probability ``ρ₊`` and reject a correct one with probability
``ρ₋``, and Algorithms 1 and 2 (PAPER.md §3) run with them.

The noise model. Every query is answered independently given the truth of the object
queried: a correct object (``y = y*``, or a prefix ``y_1..i = y*_1..i``) is accepted with
probability ``1 − ρ₋``, a wrong one with probability ``ρ₊``. ``ρ₊ = ρ₋ = 0`` is the exact
verifier of :mod:`lpg.rewards`; ``ρ₊ + ρ₋ = 1`` is a verdict independent of the truth.
``rho_plus`` and ``rho_minus`` are traced array fields: a sweep over them is one program.

* :class:`NoisyOutcome`: one verdict per response, one query (0/1, or ±1 with ``signed``).
* :class:`NoisyProcess`: asked prefix by prefix until its first rejection, as the exact
  process verifier; the reward is ``r_i = 1[i < R]`` (``±1``), ``R`` the number of leading
  accepted prefixes, and the response costs ``min(R + 1, length)`` queries. After a false
  accept the walk of queries goes on: every later prefix contains the error, so each is
  accepted with probability ``ρ₊`` again, and a response whose correct prefix has length
  ``L`` is credited with ``R = L + j`` tokens with probability ``(1−ρ₋)^L·ρ₊^j·(1 − ρ₊)``
  (no last factor when ``L + j = length``), and with ``R < L`` tokens with probability
  ``(1−ρ₋)^R·ρ₋``: a false reject cuts the credited prefix short, a false accept credits
  the wrong tokens that follow it until the next (true) reject.
* :class:`NoisyBestOfM`: Algorithm 1 (:class:`lpg.BestOfM`) with a noisy outcome verifier,
  with an exact event path: each fallback draw is accepted with probability
  ``a = ρ(1 − ρ₋) + (1 − ρ)ρ₊`` (``ρ`` the fallback's probability of ``y*``), so the draws
  until the first accept are truncated-geometric with ``a``; the accepted response is
  ``y*`` with probability ``ρ(1 − ρ₋)/a`` and otherwise a draw of the fallback conditioned
  on ``≠ y*`` (rejection sampling, ``≤ 2`` draws on average since ``ρ ≤ ½ + ½k^-N``).
* :class:`NoisyTokenBestOfM`: Algorithm 2 with a noisy process verifier (below).

Algorithm 2 under noise: which reading. PAPER.md §3 writes the walk as "draw up to ``m``
candidate tokens, querying the PRM on each extended prefix, accept the first correct;
truncate if none verifies". The algorithm only sees verdicts, so a false reject of the
correct candidate is, to it, a rejected candidate like any other: it draws the next
candidate, and the walk ends only when ``m`` candidates in a row are rejected. We take this
reading (a false reject rejects that candidate). The other reading, "a false reject ends
the walk", is not an algorithm (it needs to know that the rejection was false); it is what
a *single sampled response* scored prefix by prefix gets (:class:`NoisyProcess`, e.g. in
policy gradient), where the first rejection does end the credited prefix. So at a
position whose candidates are correct with probability ``ρ_i`` (the fallback
``½q0(·|x, y_<i) + ½Unif(Y)``), a candidate is accepted with probability
``a_i = ρ_i(1 − ρ₋) + (1 − ρ_i)ρ₊``; the draws until the first accept are
truncated-geometric with ``a_i`` (at most ``m``); the accepted token is ``y*_i`` with
probability ``ρ_i(1 − ρ₋)/a_i`` and otherwise a wrong token drawn from the fallback without
``y*_i``. After a false accept the prefix is wrong, every candidate is accepted with
probability ``ρ₊`` whatever it is, and the accepted token is a plain draw of the fallback
given the (wrong) prefix. The on-policy check is one query on the complete sampled response
(accepted with probability ``1 − ρ₋`` if it is ``y*``, ``ρ₊`` if not). The update is on the
accepted tokens, wrong or not: one adaptive step per accepted token, in order
(``step_unit="token"``, Algorithm 2's default), or one on their summed gradient.

Both noisy algorithms have an exact event path (the law above, drawn with
:func:`lpg.rewards.truncated_geometric` in log space) and a sampled path that draws every
candidate and every verdict; tests check one against the other. The on-policy sample is
drawn for real on both paths (with ``ρ₊ > 0`` a wrong sample can be accepted, and its
identity then matters). The walk is a scan over positions (the prefix may leave ``y*``).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from lpg import _checks, rewards
from lpg.algorithms.best_of_m import BestOfM, TokenBestOfM, _draws_until
from lpg.behaviours import Mixture, OnPolicy, mixture_log_prob
from lpg.policy import log_prob
from lpg.rewards import (
    add_counts,
    correct_prefix_length,
    count,
    draw_cap,
    leading_true,
    outcome_reward,
    prefix_rewards,
    select_count,
    truncated_geometric,
)

__all__ = ["NoisyBestOfM", "NoisyOutcome", "NoisyProcess", "NoisyTokenBestOfM", "acceptance_log_prob",
           "noisy_verdict"]


def _rate(name: str, value) -> jax.Array:
    """A noise rate as a float32 array; checked to lie in ``[0, 1]`` when not traced."""
    if not _checks._is_tracer(value):
        import numpy as np

        a = np.asarray(value, np.float64)
        if a.ndim or not (0.0 <= float(a) <= 1.0):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return jnp.asarray(value, jnp.float32)


def noisy_verdict(key, correct: Bool[Array, "..."], rho_plus, rho_minus) -> Bool[Array, "..."]:
    """Independent verdicts: a correct object is accepted with probability ``1 − ρ₋``, a
    wrong one with probability ``ρ₊``."""
    u = jax.random.uniform(key, jnp.shape(correct))
    return jnp.where(correct, u >= rho_minus, u < rho_plus)


def acceptance_log_prob(log_rho, rho_plus, rho_minus) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """``(log a, log P(the accepted draw is correct))`` for a draw that is correct with
    probability ``ρ = exp(log_rho)``: ``a = ρ(1 − ρ₋) + (1 − ρ)ρ₊`` and ``ρ(1 − ρ₋)/a``."""
    log_true = log_rho + jnp.log1p(-rho_minus)
    log_false = jnp.log1p(-jnp.minimum(jnp.exp(log_rho), 1.0)) + jnp.log(rho_plus)
    log_a = jnp.logaddexp(log_true, log_false)
    return log_a, jnp.where(log_a > -jnp.inf, log_true - log_a, -jnp.inf)


class _Noise(rewards.AbstractReward):
    rho_plus: jax.Array
    rho_minus: jax.Array
    signed: bool = eqx.field(default=False, static=True)

    def __init__(self, rho_plus=0.0, rho_minus=0.0, *, signed: bool = False):
        self.rho_plus = _rate("rho_plus", rho_plus)
        self.rho_minus = _rate("rho_minus", rho_minus)
        self.signed = bool(signed)


class NoisyOutcome(_Noise):
    """The outcome verifier ``1[y = y*]`` answering with noise: a wrong response is
    accepted with probability ``rho_plus``, ``y*`` rejected with probability ``rho_minus``
    (``±1`` when ``signed``); one query per response. No exact event path for policy
    gradient (wrong responses move ``w``)."""

    def __call__(self, x, y, y_star, length, *, key):
        verdict = noisy_verdict(key, outcome_reward(y, y_star, length) > 0, self.rho_plus, self.rho_minus)
        return rewards._signed(verdict, self.signed)

    def queries(self, x, y, y_star, length, *, key=None):
        return jnp.ones((), jnp.int32)


class NoisyProcess(_Noise):
    """The process verifier answering every prefix query with noise (module docstring):
    ``r_i = 1[i < R]`` (``±1``; 0 at padding) with ``R`` the number of leading accepted
    prefixes, asked until the first rejection, ``min(R + 1, length)`` queries.

    The query count depends on the verdicts, so :meth:`queries` needs the ``key`` that
    :meth:`__call__` got (``lpg.PolicyGradient`` passes it)."""

    per_token = True

    def accepted_prefix(self, y, y_star, length, key):
        """``R``: the number of leading prefixes the verifier accepts."""
        L = correct_prefix_length(y, y_star, length)
        verdicts = noisy_verdict(key, jnp.arange(y.shape[0]) < L, self.rho_plus, self.rho_minus)
        return leading_true(verdicts, length)

    def __call__(self, x, y, y_star, length, *, key):
        return prefix_rewards(self.accepted_prefix(y, y_star, length, key), y.shape[0], length, self.signed)

    def queries(self, x, y, y_star, length, *, key=None):
        if key is None:
            raise ValueError("key must be the key the reward was drawn with: a noisy process verifier's query "
                             "count depends on its verdicts")
        return rewards.process_queries(self.accepted_prefix(y, y_star, length, key), length)


def _on_policy(alg, w, key, problem, x, y):
    """The on-policy check, the same on both paths: a real sample ``ŷ ~ p_w`` and one noisy
    verdict on it: ``(accepted, ŷ)``."""
    k_s, k_v = jax.random.split(key)
    guess = OnPolicy().sample(problem, w, x, k_s)
    correct = outcome_reward(guess, y, problem.length) > 0
    return noisy_verdict(k_v, correct, alg.verifier.rho_plus, alg.verifier.rho_minus), guess


class NoisyBestOfM(BestOfM):
    """Algorithm 1 with a :class:`NoisyOutcome` verifier: the sampled path of
    :class:`lpg.BestOfM`, and an exact event path (module docstring) that carries counts
    like ``4^64`` in log space. ``event_path`` defaults to ``True``. A step's ``success``
    (:class:`~lpg.algorithms.base.StepMetrics`) counts accepted responses that are ``y*``:
    a false accept is not a success (the same for :class:`NoisyTokenBestOfM`)."""

    def __init__(self, verifier: NoisyOutcome, *, batch_size: int = 1, optimizer="adaptive",
                 event_path: bool = True, step_unit: str = "response"):
        if not isinstance(verifier, NoisyOutcome):
            raise ValueError(f"verifier must be a NoisyOutcome, got {verifier!r}")
        super().__init__(reward=verifier, batch_size=batch_size, optimizer=optimizer, event_path=False,
                         step_unit=step_unit)
        self.event_path = bool(event_path)

    @property
    def verifier(self) -> NoisyOutcome:
        return self.reward

    def _event_one(self, w, key, problem, x, y, hyper):
        k0, k1, k2, k3 = jax.random.split(key, 4)
        fmap, length = problem.fmap, problem.length
        on_policy, first = _on_policy(self, w, k0, problem, x, y)
        lq0 = log_prob(fmap, problem.base_weights(), x, y, length)
        log_rho = mixture_log_prob(lq0, length * jnp.log(float(fmap.k)))
        log_a, log_right = acceptance_log_prob(log_rho, self.verifier.rho_plus, self.verifier.rho_minus)
        m = jnp.where(on_policy, -jnp.inf, hyper.log_m)  # no fallback after an accepted on-policy sample
        found, draws = truncated_geometric(k1, log_a, m)
        found = found & (log_a > -jnp.inf) & ~on_policy
        right = rewards.bernoulli_log(k2, log_right)
        wrong = self._wrong_response(k3, w, problem, x, y, found & ~right)
        accepted = jnp.where(on_policy, first, jnp.where(right, y, wrong))
        success = on_policy | found
        queries = select_count(on_policy, count(1), add_counts(count(1), draws))
        correct = success & (outcome_reward(accepted, y, length) > 0)
        return success.astype(jnp.float32), queries, correct, accepted

    def _sample_one(self, w, key, problem, x, y, hyper):
        coef, queries, success, accepted = super()._sample_one(w, key, problem, x, y, hyper)
        return coef, queries, success & (outcome_reward(accepted, y, problem.length) > 0), accepted

    @staticmethod
    def _wrong_response(key, w, problem, x, y, needed):
        """A draw of the fallback ``½q0 + ½Unif(Y^N)`` conditioned on ``≠ y*`` (rejection
        sampling; no draw unless ``needed``)."""
        def draw(k):
            guess = Mixture().sample(problem, w, x, k)
            return ~(outcome_reward(guess, y, problem.length) > 0), guess

        _, _, guess = _draws_until(key, jnp.where(needed, jnp.inf, 0.0), draw)
        return guess


class NoisyTokenBestOfM(TokenBestOfM):
    """Algorithm 2 with a :class:`NoisyProcess` verifier (reading and law in the module
    docstring): a false reject rejects that candidate, a false accept sends the walk down a
    wrong prefix, the update is on the accepted tokens. ``event_path=True`` (default)
    draws each position's candidates as one truncated-geometric count; ``False`` draws
    every candidate and verdict."""

    verifier: NoisyProcess

    def __init__(self, verifier: NoisyProcess, *, batch_size: int = 1, optimizer="adaptive", event_path: bool = True,
                 step_unit: str | None = None):
        if not isinstance(verifier, NoisyProcess):
            raise ValueError(f"verifier must be a NoisyProcess, got {verifier!r}")
        super().__init__(batch_size=batch_size, optimizer=optimizer, event_path=event_path, step_unit=step_unit)
        self.verifier = verifier

    def _event_one(self, w, key, problem, x, y, hyper):
        return self._one(w, key, problem, x, y, hyper, self._event_position)

    def _sample_one(self, w, key, problem, x, y, hyper):
        return self._one(w, key, problem, x, y, hyper, self._sample_position)

    def _one(self, w, key, problem, x, y, hyper, position):
        N, length = problem.N, problem.length
        k0, k1 = jax.random.split(key)
        on_policy, first = _on_policy(self, w, k0, problem, x, y)
        L_walk, tokens, walk_q = self._walk(k1, problem, x, y, hyper.log_m, position)
        L = jnp.where(on_policy, length, L_walk)
        accepted = jnp.where(on_policy, first, tokens)
        coef = (jnp.arange(N) < L).astype(jnp.float32)
        queries = select_count(on_policy, count(1), add_counts(count(1), walk_q))
        correct = (L == length) & (outcome_reward(accepted, y, length) > 0)
        return coef, queries, correct, accepted

    def _walk(self, key, problem, x, y, log_m, position):
        """The token-level walk: ``(L, accepted tokens (N,), queries)``, a scan over the
        positions carrying (walking, on ``y*``, previous token, accepted so far)."""
        fmap, N, length = problem.fmap, problem.N, problem.length
        w0 = problem.base_weights()
        code0 = fmap.encode(w0, x)
        log_k = math.log(fmap.k)

        def step(carry, inp):
            alive, on_track, prev, L, total = carry
            i, target, k = inp
            walking = alive & (i < length)
            log_mix = jnp.logaddexp(jax.nn.log_softmax(fmap.step_logits(w0, code0, prev)), -log_k) - jnp.log(2.0)
            found, draws, tok, right = position(k, log_mix, target, on_track, walking, log_m)
            found = found & walking
            draws = select_count(walking, draws, count(0))
            carry = (found, on_track & right, jnp.where(found, tok, prev), L + found.astype(jnp.int32),
                     add_counts(total, draws))
            return carry, jnp.where(found, tok, target)

        init = (jnp.ones((), bool), jnp.ones((), bool), jnp.full((), -1, jnp.int32), jnp.zeros((), jnp.int32),
                count(0))
        (_, _, _, L, total), tokens = jax.lax.scan(step, init, (jnp.arange(N), y, jax.random.split(key, N)))
        return L, tokens.astype(jnp.int32), total

    def _event_position(self, key, log_mix, target, on_track, walking, log_m):
        """One position by its law: ``(found, draws (Count), token, token is y*_i on y*)``."""
        rp, rm = self.verifier.rho_plus, self.verifier.rho_minus
        k_g, k_r, k_w, k_o = jax.random.split(key, 4)
        log_a_on, log_right = acceptance_log_prob(log_mix[target], rp, rm)
        log_a = jnp.where(on_track, log_a_on, jnp.log(rp))
        found, draws = truncated_geometric(k_g, log_a, jnp.where(walking, log_m, 0.0))
        found = found & (log_a > -jnp.inf)
        is_target = jnp.arange(log_mix.shape[0]) == target
        right = rewards.bernoulli_log(k_r, log_right)
        wrong_tok = jax.random.categorical(k_w, jnp.where(is_target, -jnp.inf, log_mix))
        any_tok = jax.random.categorical(k_o, log_mix)
        tok = jnp.where(on_track, jnp.where(right, target, wrong_tok), any_tok)
        return found, draws, tok.astype(jnp.int32), on_track & right

    def _sample_position(self, key, log_mix, target, on_track, walking, log_m):
        """One position drawn candidate by candidate, each with its own noisy verdict."""
        rp, rm = self.verifier.rho_plus, self.verifier.rho_minus

        def candidate(k):
            ka, kv = jax.random.split(k)
            tok = jax.random.categorical(ka, log_mix).astype(jnp.int32)
            return noisy_verdict(kv, on_track & (tok == target), rp, rm), tok

        found, draws, tok = _draws_until(key, jnp.where(walking, draw_cap(log_m), 0.0), candidate)
        return found, count(draws.astype(jnp.int32)), tok, on_track & (tok == target)

