"""Several correct responses per context (issue 14, question 3).

The paper's verifiers accept exactly one response ``y*(x)``. Here a context has a *set*
``S(x)`` of correct responses, given by an answer-set object (:class:`AbstractAnswers`):

* :class:`FreePositions`: ``y*`` with free positions, where any token is accepted:
  ``|S(x)| = k^f`` for ``f`` free positions;
* :class:`Teachers`: the responses of ``c`` linear teachers (PAPER.md §1) to ``x``, the
  first being the task's own ``y*``; teachers that agree on ``x`` give one member, so
  ``|S(x)| ≤ c``. Where two members share a prefix and then differ, both next tokens are
  correct and no weight vector has a positive margin over the whole set (a margin
  violation): a linear policy cannot put more than half its mass on each branch.

A set has a static capacity ``C`` (the rows of :meth:`AbstractAnswers.members`) and a
traced size (``n_free`` free positions, ``n_teachers`` teachers), so sweeping ``c`` is
one compiled program; :meth:`AbstractAnswers.active` marks the members that are in the set
and distinct from every earlier one, so sums over members count each response once.

Rewards (:class:`lpg.rewards.AbstractReward` subclasses; the problem's ``ys`` stay the
first teacher's ``y*``): :class:`SetOutcome`, ``1[y ∈ S(x)]``, one query;
:class:`SetProcess`, ``r_i = 1[y_≤i extends to some member]``, asked prefix by prefix
until the first rejection, so a response whose longest correct prefix has length ``L``
costs ``min(L + 1, length)`` queries, as the single-answer process reward.

Exact event paths (PAPER.md §6 extended to a set). With 0/1 rewards a sample moves ``w``
only when it is a member, and then through that member, so a draw needs only *which*
member it is: a categorical over the ``C`` members (probabilities ``q(m_j|x)``,
teacher-forced) and a miss. The engine's :class:`lpg.rewards.Event` carries only the
weight of ``y*``, so the event paths live in algorithm subclasses that update on the
drawn member: :class:`SetPolicyGradient` (PG), :class:`SetBestOfM` (Algorithm 1: the
number of fallback draws is ``Geometric(Σ_j ρ(m_j))``, the accepted member ``∝ ρ(m_j)``,
``ρ = ½q0 + ½Unif(Y^N)``) and :class:`SetTokenBestOfM` (Algorithm 2 on the trie of the
members' prefixes: at a correct prefix the accepted tokens are the children of the
prefix, the draws ``Geometric(Σ_{t child} ρ(t|·))`` and the accepted child ``∝ ρ(t|·)``).
The rewards themselves report ``has_event_path = False``, so the engine's own
algorithms take them on their (correct) sampled paths.
"""

from __future__ import annotations

import abc
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from lpg import _checks
from lpg.algorithms.best_of_m import BestOfM, TokenBestOfM, _draws_until
from lpg.algorithms.pg import PolicyGradient
from lpg.behaviours import Mixture, OnPolicy, mixture_log_prob, mixture_token
from lpg.policy import log_prob, position_mask
from lpg.rewards import (AbstractReward, add_counts, count, correct_prefix_length, draw_cap, prefix_rewards,
                         process_queries, select_count, sum_counts, truncated_geometric)
from lpg.tasks import teacher_response

__all__ = ["AbstractAnswers", "FreePositions", "SetBestOfM", "SetOutcome", "SetPolicyGradient", "SetProcess",
           "SetTokenBestOfM", "Teachers", "distinct_first", "draw_member", "log_set_prob", "make_teachers",
           "member_log_probs", "set_likelihood_at_least"]


def distinct_first(members: Int[Array, "C N"], length=None) -> Bool[Array, "C"]:
    """Members that differ (on the real positions) from every earlier member."""
    real = position_mask(members.shape[-1], length)
    same = jnp.all((members[:, None, :] == members[None, :, :]) | ~real, axis=-1)  # (C, C)
    earlier = jnp.tril(jnp.ones(same.shape, bool), -1)
    return ~jnp.any(same & earlier, axis=-1)


class AbstractAnswers(eqx.Module):
    """The set ``S(x)`` of correct responses of a context: ``members(x, y*)``, ``(C, N)``
    with a static capacity ``C``, and ``active(x, y*, length)``, the members in the set
    (each response once)."""

    @abc.abstractmethod
    def members(self, x: Float[Array, "d"], y_star: Int[Array, "N"]) -> Int[Array, "C N"]:
        """Every candidate member."""

    @abc.abstractmethod
    def in_set(self, x: Float[Array, "d"], y_star: Int[Array, "N"]) -> Bool[Array, "C"]:
        """Which candidates belong to the set at its traced size (before removing repeats)."""

    def active(self, x, y_star, length=None) -> Bool[Array, "C"]:
        """The members of the set, each response once (its first occurrence)."""
        m = self.members(x, y_star)
        return self.in_set(x, y_star) & distinct_first(m, length)

    def size(self, x, y_star, length=None) -> Int[Array, ""]:
        """``|S(x)|``."""
        return jnp.sum(self.active(x, y_star, length), dtype=jnp.int32)


class FreePositions(AbstractAnswers):
    """``y*`` with free positions: the first ``n_free`` (traced) of the static
    ``positions`` accept any token, so ``|S(x)| = k^n_free``. Capacity ``k^len(positions)``."""

    k: int = eqx.field(static=True)
    positions: tuple = eqx.field(static=True)
    n_free: Int[Array, ""]

    def __init__(self, k: int, positions, n_free=None):
        self.k = _checks.int_at_least("k", k, 2)
        self.positions = tuple(int(p) for p in positions)
        if len(set(self.positions)) != len(self.positions) or any(p < 0 for p in self.positions):
            raise ValueError(f"positions must be distinct indices >= 0, got {positions!r}")
        if n_free is None:
            n_free = len(self.positions)
        if not isinstance(n_free, jax.core.Tracer):
            _checks.int_in("n_free", n_free, 0, len(self.positions), " (the number of positions given)")
        self.n_free = jnp.asarray(n_free, jnp.int32)

    def _digits(self) -> np.ndarray:
        return np.array(list(itertools.product(range(self.k), repeat=len(self.positions))), np.int32).reshape(
            -1, len(self.positions))

    def members(self, x, y_star):
        digits = jnp.asarray(self._digits())
        if not self.positions:
            return y_star[None]
        return jnp.broadcast_to(y_star, (digits.shape[0],) + y_star.shape).at[:, jnp.asarray(self.positions)].set(
            digits)

    def in_set(self, x, y_star):
        digits = jnp.asarray(self._digits())
        used = jnp.arange(len(self.positions)) < self.n_free
        return jnp.all((digits == y_star[jnp.asarray(self.positions, jnp.int32)]) | used, axis=-1) \
            if self.positions else jnp.ones((1,), bool)


class Teachers(AbstractAnswers):
    """The responses of ``n_teachers`` (traced, ``1 ≤ n_teachers ≤ C``) linear teachers:
    the task's own ``y*`` and ``teacher_response(A_j, B_j, x, N)`` of the extra teachers
    ``A (C − 1, k, d)``, ``B (C − 1, k, k)``."""

    A: Float[Array, "c k d"]
    B: Float[Array, "c k k"]
    n_teachers: Int[Array, ""]

    def __init__(self, A, B, n_teachers=None):
        self.A, self.B = jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32)
        if self.A.ndim != 3 or self.B.shape != (self.A.shape[0], self.A.shape[1], self.A.shape[1]):
            raise ValueError(f"A must be (c, k, d) and B (c, k, k), got {self.A.shape} and {self.B.shape}")
        cap = self.A.shape[0] + 1
        if n_teachers is None:
            n_teachers = cap
        if not isinstance(n_teachers, jax.core.Tracer):
            _checks.int_in("n_teachers", n_teachers, 1, cap, f" (the task's teacher and {cap - 1} extra)")
        self.n_teachers = jnp.asarray(n_teachers, jnp.int32)

    def members(self, x, y_star):
        others = jax.vmap(lambda A, B: teacher_response(A, B, x, y_star.shape[0]))(self.A, self.B)
        return jnp.concatenate([y_star[None], others], axis=0)

    def in_set(self, x, y_star):
        return jnp.arange(self.A.shape[0] + 1) < self.n_teachers


def make_teachers(key, *, n_extra: int, k: int, d: int, n_teachers=None) -> Teachers:
    """``n_extra`` extra teachers with N(0, 1) entries (as :func:`lpg.make_teacher`)."""
    n_extra = _checks.int_at_least("n_extra", n_extra, 0)
    ka, kb = jax.random.split(key)
    return Teachers(jax.random.normal(ka, (n_extra, k, d)), jax.random.normal(kb, (n_extra, k, k)), n_teachers)


# ---------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------


def _matches(y, members, active, length):
    """Longest correct prefix of ``y`` over the active members, and whether ``y`` is one."""
    L = jax.vmap(lambda m: correct_prefix_length(y, m, length))(members)
    return jnp.max(jnp.where(active, L, 0))


class SetOutcome(AbstractReward):
    """The outcome reward ``1[y ∈ S(x)]`` (``±1`` when ``signed``), one query."""

    answers: AbstractAnswers
    signed: bool = eqx.field(default=False, static=True)

    def __call__(self, x, y, y_star, length, *, key=None):
        L = _matches(y, self.answers.members(x, y_star), self.answers.active(x, y_star, length), length)
        hit = (L == length).astype(jnp.float32)
        return 2.0 * hit - 1.0 if self.signed else hit

    def queries(self, x, y, y_star, length, *, key=None):
        return jnp.ones((), jnp.int32)


class SetProcess(AbstractReward):
    """The process reward ``r_i = 1[y_≤i is a prefix of some member]`` (``±1`` when
    ``signed``), 0 at padding; ``min(L + 1, length)`` queries for the longest correct
    prefix ``L``."""

    per_token = True
    answers: AbstractAnswers
    signed: bool = eqx.field(default=False, static=True)

    def prefix_length(self, x, y, y_star, length):
        return _matches(y, self.answers.members(x, y_star), self.answers.active(x, y_star, length), length)

    def __call__(self, x, y, y_star, length, *, key=None):
        return prefix_rewards(self.prefix_length(x, y, y_star, length), y.shape[0], length, self.signed)

    def queries(self, x, y, y_star, length, *, key=None):
        return process_queries(self.prefix_length(x, y, y_star, length), length)


# ---------------------------------------------------------------------------------
# Exact laws
# ---------------------------------------------------------------------------------


def member_log_probs(log_q, members, active) -> Float[Array, "C"]:
    """``log q(m_j|x)`` for every member (``log_q(y)``), ``-inf`` for inactive ones."""
    return jnp.where(active, jax.vmap(log_q)(members), -jnp.inf)


def log_set_prob(log_q, members, active) -> Float[Array, ""]:
    """``log q(S(x)|x) = log Σ_j q(m_j|x)`` over the active members."""
    return jax.nn.logsumexp(member_log_probs(log_q, members, active))


def draw_member(key, lp: Float[Array, "*b C"]) -> Int[Array, "*b"]:
    """Which member a draw is (index ``j`` with probability ``exp(lp_j)``), or ``-1``
    for a miss (probability ``1 − Σ_j exp(lp_j)``)."""
    total = jax.nn.logsumexp(lp, axis=-1, keepdims=True)
    log_miss = jnp.log(-jnp.expm1(jnp.minimum(total, -1e-12)))
    logits = jnp.concatenate([lp, jnp.where(total >= 0, -jnp.inf, log_miss)], axis=-1)
    j = jax.random.categorical(key, logits, axis=-1)
    return jnp.where(j == lp.shape[-1], -1, j).astype(jnp.int32)


def set_likelihood_at_least(answers: AbstractAnswers, eps: float):
    """Target ``min_{x ∈ track} p_w(S(x)|x) ≥ 1 − ε`` (:func:`lpg.hitting.run_until`)."""
    log_goal = jnp.log1p(-jnp.asarray(eps, jnp.float32))

    def target(problem, w):
        return jnp.min(track_set_log_lik(problem, answers, w)) >= log_goal

    return target


def track_set_log_lik(problem, answers, w) -> Float[Array, "n_track"]:
    """``log p_w(S(x)|x)`` of every tracked context."""
    return jax.nn.logsumexp(track_member_log_lik(problem, answers, w), axis=-1)


def track_member_log_lik(problem, answers, w) -> Float[Array, "n_track C"]:
    """``log p_w(m_j|x)`` of every member of every tracked context (``-inf``: not in the set)."""
    fmap, length = problem.fmap, problem.length

    def one(x, y):
        return member_log_probs(lambda m: log_prob(fmap, w, x, m, length), answers.members(x, y),
                                answers.active(x, y, length))

    return jax.vmap(one)(problem.track_x, problem.track_y)


def _answers_of(reward, cls, algorithm):
    if not isinstance(reward, cls):
        raise ValueError(f"reward must be a {cls.__name__} for {algorithm}, got {reward!r}")
    return reward.answers


# ---------------------------------------------------------------------------------
# Algorithms with the set's event path
# ---------------------------------------------------------------------------------


class SetPolicyGradient(PolicyGradient):
    """:class:`lpg.PolicyGradient` with a :class:`SetOutcome` reward; ``event_path``
    (default ``True`` for the 0/1 reward without a baseline or importance ratio) draws
    each sample's member (:func:`draw_member`) and updates on it."""

    def __init__(self, reward: SetOutcome, *, event_path: bool | None = None, **kw):
        _answers_of(reward, SetOutcome, "SetPolicyGradient")
        super().__init__(reward, event_path=False, **kw)
        exact = (not reward.signed and type(self.advantage).keeps_event_path and not self.importance)
        if event_path and not exact:
            raise ValueError(f"event_path must be None or False for SetPolicyGradient with a signed reward, a "
                             f"baseline or an importance ratio, got event_path=True with reward={reward!r}, "
                             f"advantage={self.advantage!r}, importance={self.importance}")
        self.event_path = exact if event_path is None else bool(event_path)

    def _event(self, w, key, problem, xs, ys, hyper):
        B, G, length = self.batch_size, self.group_size, problem.length
        answers = self.reward.answers

        def one(x, y, k):
            members = answers.members(x, y)
            lp = member_log_probs(lambda m: self.behaviour.log_prob(problem, w, x, m), members,
                                  answers.active(x, y, length))
            j = draw_member(k, jnp.broadcast_to(lp, (G,) + lp.shape))
            return members[jnp.maximum(j, 0)], j >= 0

        yg, hit = jax.vmap(one)(xs, ys, jax.random.split(key, B))  # (B, G, N), (B, G)
        coef = hit.astype(jnp.float32)
        xg = jnp.repeat(xs, G, axis=0)
        return (xg, yg.reshape(B * G, -1), coef.reshape(B * G), jnp.ones((B, G), jnp.int32), hit, hit)


class SetBestOfM(BestOfM):
    """Algorithm 1 with a :class:`SetOutcome` reward: sample ``y ~ p_w``; if it is not a
    member, draw up to ``m`` responses from ``½q0 + ½Unif(Y^N)`` until one is; update on the
    accepted member. The event path draws the on-policy member, the number of fallback
    draws ``Geometric(ρ(S(x)))`` truncated at ``m`` and the accepted member ``∝ ρ(m_j)``."""

    def __init__(self, *, reward: SetOutcome, event_path: bool = True, **kw):
        _answers_of(reward, SetOutcome, "SetBestOfM")
        super().__init__(reward=reward, event_path=False, **kw)
        self.event_path = bool(event_path) and not reward.signed

    def _event_one(self, w, key, problem, x, y, hyper):
        k0, k1, k2 = jax.random.split(key, 3)
        length, fmap, answers = problem.length, problem.fmap, self.reward.answers
        members, active = answers.members(x, y), answers.active(x, y, length)
        j_on = draw_member(k0, member_log_probs(lambda m: log_prob(fmap, w, x, m, length), members, active))
        log_rho = member_log_probs(lambda m: Mixture().log_prob(problem, w, x, m), members, active)
        found, draws = truncated_geometric(k1, jax.nn.logsumexp(log_rho), hyper.log_m)
        j_fb = jax.random.categorical(k2, log_rho)
        on_policy = j_on >= 0
        queries = select_count(on_policy, count(1), add_counts(count(1), draws))
        success = on_policy | found
        return success.astype(jnp.float32), queries, success, members[jnp.where(on_policy, j_on, j_fb)]


class SetTokenBestOfM(TokenBestOfM):
    """Algorithm 2 with a :class:`SetProcess` reward: sample ``y ~ p_w`` and query the
    verifier once on it; if it is not a member, walk the positions: at a correct prefix
    draw up to ``m`` tokens from ``½q0(·|x, prefix) + ½Unif(Y)`` until the extended prefix
    verifies (the accepted tokens are the prefix's children in the trie of members); the
    walk stops at the first position where none does. Update on the walked prefix (on the
    whole member when the on-policy sample was one)."""

    reward: SetProcess

    def __init__(self, *, reward: SetProcess, **kw):
        _answers_of(reward, SetProcess, "SetTokenBestOfM")
        super().__init__(**kw)
        self.reward = reward

    def _one(self, w, key, problem, x, y, hyper, event: bool):
        N, length, fmap, answers = problem.N, problem.length, problem.fmap, self.reward.answers
        k0, k1 = jax.random.split(key)
        members, active = answers.members(x, y), answers.active(x, y, length)
        if event:
            j_on = draw_member(k0, member_log_probs(lambda m: log_prob(fmap, w, x, m, length), members, active))
            on_policy, y_on = j_on >= 0, members[jnp.maximum(j_on, 0)]
        else:
            y_on = OnPolicy().sample(problem, w, x, k0)
            on_policy = self.reward.prefix_length(x, y_on, y, length) == length
        w0 = problem.base_weights()
        code0 = fmap.encode(w0, x)
        m = draw_cap(hyper.log_m)
        log_k = jnp.log(float(fmap.k))

        def position(carry, inp):
            alive, prev, going = carry
            i, kk = inp
            log_rho = mixture_log_prob(jax.nn.log_softmax(fmap.step_logits(w0, code0, prev)), log_k)  # (k,)
            children = jnp.any(alive[:, None] & (members[:, i][:, None] == jnp.arange(fmap.k)), axis=0)
            if event:
                ka, kb = jax.random.split(kk)
                found, draws = truncated_geometric(ka, jax.nn.logsumexp(jnp.where(children, log_rho, -jnp.inf)),
                                                   hyper.log_m)
                tok = jax.random.categorical(kb, jnp.where(children, log_rho, -jnp.inf)).astype(jnp.int32)
            else:
                def candidate(k3):
                    t = mixture_token(fmap.step_logits(w0, code0, prev), jax.random.split(k3, 3))
                    return children[t], t.astype(jnp.int32)

                found, n, tok = _draws_until(kk, m, candidate)
                draws = count(n.astype(jnp.int32))
            walked = going & (i < length)
            ok = walked & found
            alive = jnp.where(ok, alive & (members[:, i] == tok), alive)
            spent = select_count(walked, draws, count(0))
            return (alive, jnp.where(ok, tok, prev), ok), (jnp.where(ok, tok, 0), ok, spent)

        init = (active, jnp.asarray(-1, jnp.int32), jnp.asarray(True))
        _, (toks, oks, spent) = jax.lax.scan(position, init, (jnp.arange(N), jax.random.split(k1, N)))
        L_walk = jnp.sum(oks, dtype=jnp.int32)  # oks is a leading run of True
        L = jnp.where(on_policy, length, L_walk)
        queries = select_count(on_policy, count(1), add_counts(count(1), sum_counts(spent)))
        coef = (jnp.arange(N) < L).astype(jnp.float32)
        return coef, queries, L == length, jnp.where(on_policy, y_on, toks)

    def _event_one(self, w, key, problem, x, y, hyper):
        return self._one(w, key, problem, x, y, hyper, True)

    def _sample_one(self, w, key, problem, x, y, hyper):
        return self._one(w, key, problem, x, y, hyper, False)
