"""Outcome and process rewards, and exact reward-query accounting (PAPER.md §2).

* Outcome reward (ORM): one verdict on the whole response, ``1[y = y*]``.
* Process reward (PRM): one verdict per prefix, ``1[y_1..i = y*_1..i]``.

Both come in 0/1 form (the paper's analysis) and ±1 form (the authors' experiments,
``signed=True``). Padding positions (``i >= length``) carry reward 0.

Reward objects. The algorithms take a reward as an :class:`AbstractReward` object
(:class:`Outcome`, :class:`Process`, or one defined outside lpg), which owns everything
that depends on it: the reward of a sampled response, the queries it costs, whether an
exact event path exists (PAPER.md §6) and that path's law (:meth:`AbstractReward.event`).
A new verifier (a noisy one, a learned one) subclasses :class:`AbstractReward` and
defines ``__call__`` and ``queries``; ``examples/custom_reward.py`` shows one.

Query accounting. One query is one verifier call on one object (a whole response for
the ORM, one prefix for the PRM). A :class:`Count` holds a number of queries exactly as
an integer while it fits (two int32 limbs, up to ``2^61``) and in log space beyond (the
exact event path draws counts like ``32^128``, an ordinary float32 ``≈ 443.6`` as a
natural log): a run of ``3·10^6`` single queries counts ``3·10^6``, not a float32 sum of
logarithms that stops growing at ``2^21``.
A PRM verifier is called prefix by prefix until the first failure: every later prefix
is known to fail without asking, so a response with correct-prefix length ``L`` costs
``min(L + 1, length)`` queries.
"""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from lpg import _checks
from lpg.policy import position_mask


def leading_true(ok: Bool[Array, "*b n"], length=None) -> Int[Array, "*b"]:
    """The number of leading ``True`` entries of ``ok`` along its last axis, counting
    only the first ``length`` positions. Taken at the first ``False``, a min-reduction:
    a cumulative product lowers to an ``O(N²)`` window reduction on CPU."""
    n = ok.shape[-1]
    real = position_mask(n, length)
    end = jnp.sum(real, dtype=jnp.int32)
    return jnp.min(jnp.where(real & ~ok, jnp.arange(n, dtype=jnp.int32), end), axis=-1)


def correct_prefix_length(y: Int[Array, "N"], y_star: Int[Array, "N"], length=None) -> Int[Array, ""]:
    """``L``: the number of leading positions where ``y`` agrees with ``y*``."""
    return leading_true(y == y_star, length)


def outcome_reward(y: Int[Array, "N"], y_star: Int[Array, "N"], length=None, signed: bool = False) -> Float[Array, ""]:
    """``r(x, y) = 1[y = y*]`` (or ``±1`` when ``signed``), comparing real positions only."""
    mask = position_mask(y.shape[0], length)
    hit = jnp.all((y == y_star) | ~mask)
    return _signed(hit, signed)


def process_rewards(y: Int[Array, "N"], y_star: Int[Array, "N"], length=None, signed: bool = False) -> Float[Array, "N"]:
    """``r_i = 1[y_1..i = y*_1..i]`` (or ``±1``) for every position, 0 at padding: ``(N,)``."""
    return prefix_rewards(correct_prefix_length(y, y_star, length), y.shape[0], length, signed)


def prefix_rewards(prefix_len: Int[Array, ""], n: int, length=None, signed: bool = False) -> Float[Array, "n"]:
    """The process rewards of a response whose correct-prefix length is ``prefix_len``."""
    r = _signed(jnp.arange(n) < prefix_len, signed)
    return jnp.where(position_mask(n, length), r, 0.0)


def _signed(hit, signed: bool):
    hit = hit.astype(jnp.float32)
    return 2.0 * hit - 1.0 if signed else hit


def process_queries(prefix_len, length) -> jax.Array:
    """PRM queries spent on one response with correct-prefix length ``L``: ``min(L+1, length)``."""
    return jnp.minimum(prefix_len + 1, length)


# ---------------------------------------------------------------------------------
# Reward objects
# ---------------------------------------------------------------------------------


class Event(NamedTuple):
    """One batch of verifier calls on ``G`` samples of each of ``B`` contexts, drawn by
    the exact event path (PAPER.md §6): with 0/1 rewards a sample moves ``w`` only
    through ``y*`` itself, so only its coefficient on ``y*`` is drawn."""

    coef: Float[Array, "B G *e"]  # weight of y* (per position for a per-token reward)
    queries: Int[Array, "B G"]  # verifier calls spent on each sample
    correct: Bool[Array, "B G"]  # the sample is y*
    outcome: Array  # (B, G): per-sample value whose equality over a group means zero variance


class AbstractReward(eqx.Module):
    """A verifier and the reward it pays.

    ``per_token`` (a class attribute): ``False`` for one reward per response (shape
    ``()``), ``True`` for one per position (shape ``(N,)``, 0 at padding), weighting
    ``log p_w(y_i | x, y_<i)`` in the policy gradient. Subclasses define ``__call__``
    (the reward of a sampled response; ``key`` for verifiers that are random) and
    ``queries`` (the verifier calls spent on it, given the same ``key``); one with an exact event path sets
    :attr:`has_event_path` and defines :meth:`event`."""

    per_token: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "d"], y: Int[Array, "N"], y_star: Int[Array, "N"], length, *,
                 key: PRNGKeyArray) -> Float[Array, ""] | Float[Array, "N"]:
        """The reward of response ``y`` to context ``x`` whose correct response is ``y_star``."""

    @abc.abstractmethod
    def queries(self, x: Float[Array, "d"], y: Int[Array, "N"], y_star: Int[Array, "N"], length, *,
                key: PRNGKeyArray | None = None) -> Int[Array, ""]:
        """Verifier calls spent to reward ``y``; ``key`` is the one :meth:`__call__` got, for a
        verifier whose number of calls depends on its random verdicts (one asked prefix by
        prefix until its first rejection)."""

    @property
    def has_event_path(self) -> bool:
        """Whether :meth:`event` draws this reward's updates exactly (PAPER.md §6)."""
        return False

    def event(self, key: PRNGKeyArray, behaviour, problem, w, xs: Float[Array, "B d"], ys: Int[Array, "B N"],
              group_size: int) -> Event:
        """Draw ``G`` samples per context from ``behaviour`` as events (see :class:`Event`)."""
        raise NotImplementedError(f"{type(self).__name__} has no exact event path")


class Outcome(AbstractReward):
    """The outcome reward ``1[y = y*]`` (``±1`` when ``signed``), one query per response.
    Its 0/1 form has an exact event path: a sample is ``y*`` with probability
    ``q(y*|x)`` under the behaviour, a Bernoulli draw teacher-forced on ``y*``."""

    signed: bool = eqx.field(default=False, static=True)

    def __call__(self, x, y, y_star, length, *, key=None):
        return outcome_reward(y, y_star, length, self.signed)

    def queries(self, x, y, y_star, length, *, key=None):
        return jnp.ones((), jnp.int32)

    @property
    def has_event_path(self) -> bool:
        return not self.signed

    def event(self, key, behaviour, problem, w, xs, ys, group_size):
        log_q = jax.vmap(lambda x, y: behaviour.log_prob(problem, w, x, y))(xs, ys)
        correct = jnp.log(jax.random.uniform(key, (xs.shape[0], group_size))) < log_q[:, None]
        return Event(correct.astype(jnp.float32), jnp.ones(correct.shape, jnp.int32), correct, correct)


class Process(AbstractReward):
    """The process reward ``r_i = 1[y_1..i = y*_1..i]`` (``±1`` when ``signed``), 0 at
    padding. The verifier is asked prefix by prefix until the first rejection, so a
    response with correct-prefix length ``L`` costs ``min(L + 1, length)`` queries. Its
    0/1 form has an exact event path: ``P(L ≥ i) = Π_{j≤i} q(y*_j | x, y*_<j)``."""

    per_token: ClassVar[bool] = True
    signed: bool = eqx.field(default=False, static=True)

    def __call__(self, x, y, y_star, length, *, key=None):
        return prefix_rewards(correct_prefix_length(y, y_star, length), y.shape[0], length, self.signed)

    def queries(self, x, y, y_star, length, *, key=None):
        return process_queries(correct_prefix_length(y, y_star, length), length)

    @property
    def has_event_path(self) -> bool:
        return not self.signed

    def event(self, key, behaviour, problem, w, xs, ys, group_size):
        B, N, length = xs.shape[0], problem.N, problem.length
        k_coin, k_u = jax.random.split(key)
        tlp = behaviour.star_token_log_probs(problem, w, xs, ys, k_coin, group_size)  # (B, G, N)
        L = leading_true(jnp.log(jax.random.uniform(k_u, (B, group_size, N))) < tlp, length)  # (B, G)
        coef = (jnp.arange(N) < L[..., None]).astype(jnp.float32)
        return Event(coef, process_queries(L, length), L == length, L)


REWARDS = {"outcome": Outcome, "process": Process}
"""Short names of the built-in rewards (0/1 form; ``by_name(name, signed=True)`` for ±1)."""


def by_name(spec: str | AbstractReward, signed: bool = False) -> AbstractReward:
    """The reward object for ``spec`` (a name of :data:`REWARDS`, or an object)."""
    return _checks.strategy("reward", spec, REWARDS, AbstractReward, signed=bool(signed))


# ---------------------------------------------------------------------------------
# Log-space counting
# ---------------------------------------------------------------------------------


class Count(NamedTuple):
    """A number of reward queries: the exact integer ``hi·2^30 + lo`` (int32 limbs,
    ``0 ≤ lo < 2^30``) plus ``exp(log_big)``, the part too large to count exactly
    (natural log; ``-inf``: none). Any shape; built by :func:`count`, combined by
    :func:`add_counts` and :func:`sum_counts`, read by :func:`log_of` (in JAX) and
    :func:`value_of` (on the host, float64)."""

    hi: Int[Array, "*b"]
    lo: Int[Array, "*b"]
    log_big: Float[Array, "*b"]


_LIMB = 2**30
_HALF = 2**15
_MAX_TERMS = 2**16
"""The most terms one :func:`sum_counts` reduction adds (its int32 half-limb sums stay exact)."""


def count(exact=0, log_big=-jnp.inf) -> Count:
    """``exact`` queries (integers ``0 ≤ n < 2^31``) plus ``exp(log_big)``."""
    n = jnp.asarray(exact, jnp.int32)
    log_big = jnp.asarray(log_big, jnp.float32)
    shape = jnp.broadcast_shapes(n.shape, log_big.shape)
    n, log_big = jnp.broadcast_to(n, shape), jnp.broadcast_to(log_big, shape)
    return Count(n // _LIMB, n % _LIMB, log_big)


def add_counts(a: Count, b: Count) -> Count:
    """``a + b``, exact in the integer part."""
    lo = a.lo + b.lo  # each < 2^30: no int32 overflow
    return Count(a.hi + b.hi + lo // _LIMB, lo % _LIMB, jnp.logaddexp(a.log_big, b.log_big))


def select_count(cond, a: Count, b: Count) -> Count:
    """``a`` where ``cond``, else ``b`` (elementwise)."""
    return Count(*(jnp.where(cond, x, y) for x, y in zip(a, b)))


def sum_counts(c: Count, axis: int = -1) -> Count:
    """The total over ``axis``, exact in the integer part: the low limb is summed in two
    15-bit halves so no int32 sum overflows, ``2^16`` terms at a time (a longer axis is
    summed in blocks, then over the blocks)."""
    axis = axis % c.lo.ndim
    n = c.lo.shape[axis]
    if n > _MAX_TERMS:
        blocks = -(-n // _MAX_TERMS)
        pad = [(0, 0)] * c.lo.ndim
        pad[axis] = (0, blocks * _MAX_TERMS - n)
        split = lambda a: jnp.moveaxis(a, axis, -1).reshape(*a.shape[:axis], *a.shape[axis + 1:], blocks,  # noqa: E731
                                                            _MAX_TERMS)
        padded = Count(*(split(jnp.pad(a, pad, constant_values=v)) for a, v in zip(c, (0, 0, -jnp.inf))))
        return sum_counts(sum_counts(padded, -1), -1)
    low = jnp.sum(c.lo % _HALF, axis=axis)
    high = jnp.sum(c.lo // _HALF, axis=axis) + low // _HALF
    lo = (high % _HALF) * _HALF + low % _HALF
    hi = jnp.sum(c.hi, axis=axis) + high // _HALF
    return Count(hi, lo, jax.nn.logsumexp(c.log_big, axis=axis))


def log_of(c: Count) -> Float[Array, "*b"]:
    """``log`` of the count (float32; ``-inf`` for none)."""
    exact = c.hi.astype(jnp.float32) * float(_LIMB) + c.lo.astype(jnp.float32)
    return jnp.logaddexp(jnp.log(exact), c.log_big)


def value_of(c: Count):
    """The count on the host as float64 (exact below ``2^53`` when nothing is in log
    space; ``inf`` beyond float64's range)."""
    import numpy as np

    with np.errstate(over="ignore"):
        return (np.asarray(c.hi, np.float64) * _LIMB + np.asarray(c.lo, np.float64)
                + np.exp(np.asarray(c.log_big, np.float64)))


def log_count(n) -> jax.Array:
    """``log n`` of a (float or int) count; ``-inf`` for 0."""
    return jnp.log(jnp.asarray(n, jnp.float32))


def log_add(a, b) -> jax.Array:
    """``log(e^a + e^b)``: adds two log-counts to float precision."""
    return jnp.logaddexp(a, b)


def log_sum(log_counts, axis=None) -> jax.Array:
    """``log Σ e^{a_j}``: the total of many log-counts."""
    return jax.nn.logsumexp(jnp.asarray(log_counts), axis=axis)


def _log_rate(log_p):
    """``log(−log(1 − p))`` from ``log p``, stable from ``p = 32^-128`` to ``p = 1``."""
    p = jnp.exp(log_p)
    direct = jnp.log(-jnp.log1p(-jnp.minimum(p, 1.0 - 1e-7)))
    small = log_p + 0.5 * p  # log(p + p²/2 + …) for tiny p
    exact_one = jnp.where(log_p >= 0.0, jnp.inf, direct)
    return jnp.where(log_p < -8.0, small, exact_one)


_EXACT_BELOW = 2.0**22


def draw_cap(log_m) -> jax.Array:
    """The most draws best-of-m may make, ``⌊m⌋``, from ``log m``. ``exp(log m)`` in
    float32 lands a hair above or below an integer ``m`` (``exp(log 11) > 11``), so the
    floor is taken with a relative slack of ``2·10⁻⁶``: exact for integers up to
    ``3·10⁵`` (beyond, within one draw); ``inf`` for ``log m = inf``."""
    return jnp.floor(jnp.exp(log_m) * (1.0 + 2e-6))


def truncated_geometric(key, log_p, log_m) -> tuple[Bool[Array, "*b"], Count]:
    """Best-of-m in log space (PAPER.md §6): ``G ~ Geometric(p)`` on ``{1, 2, …}`` is the
    index of the first success among i.i.d. draws with success probability
    ``p = exp(log_p)``; at most ``m = exp(log_m)`` draws are made.

    Returns ``(success, draws)``: ``success = G ≤ m`` and the :class:`Count`
    ``min(G, m)``, exact (integer ``G``, or ``⌊m⌋`` when the cap binds) while below
    ``2^22``; beyond that ``G`` is carried as ``log ⌈E/λ⌉ ≈ log(E/λ)``, ``E ~ Exp(1)``,
    ``λ = −log(1 − p)``, which is exact to float precision."""
    e = jax.random.exponential(key, jnp.shape(log_p))
    t = jnp.log(e) - _log_rate(log_p)
    g_small = jnp.maximum(1.0, jnp.ceil(jnp.exp(jnp.minimum(t, 30.0))))
    small = t < jnp.log(_EXACT_BELOW)
    log_m = jnp.asarray(log_m, t.dtype)
    cap = draw_cap(log_m)
    # In the exact range compare integers: log G and log m can round apart at G = m.
    success = jnp.where(small, g_small <= cap, t <= log_m)
    exact = small | (cap < _EXACT_BELOW)
    n = jnp.where(exact, jnp.minimum(jnp.minimum(g_small, cap), _EXACT_BELOW), 0.0).astype(jnp.int32)
    return success, count(n, jnp.where(exact, -jnp.inf, jnp.minimum(t, log_m)))


def log_truncated_geometric(key, log_p, log_m):
    """:func:`truncated_geometric` with the draws as a natural log: ``(success, log min(G, m))``."""
    success, draws = truncated_geometric(key, log_p, log_m)
    return success, log_of(draws)


def bernoulli_log(key, log_p, shape=None) -> jax.Array:
    """``Bernoulli(exp(log_p))`` without leaving log space: ``log U < log p``."""
    shape = jnp.shape(log_p) if shape is None else shape
    return jnp.log(jax.random.uniform(key, shape, minval=0.0, maxval=1.0)) < log_p
