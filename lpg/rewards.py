"""Outcome and process rewards, and exact reward-query accounting (PAPER.md §2).

* Outcome reward (ORM): one verdict on the whole response, ``1[y = y*]``.
* Process reward (PRM): one verdict per prefix, ``1[y_1..i = y*_1..i]``.

Both come in 0/1 form (the paper's analysis) and ±1 form (the authors' experiments,
``signed=True``). Padding positions (``i >= length``) carry reward 0.

Query accounting. One query is one verifier call on one object (a whole response for
the ORM, one prefix for the PRM). Counts are carried as natural logarithms
(``log 0 = -inf``) so ``32^128`` queries are an ordinary float32 (``≈ 443.6``).
A PRM verifier is called prefix by prefix until the first failure: every later prefix
is known to fail without asking, so a response with correct-prefix length ``L`` costs
``min(L + 1, length)`` queries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lpg.policy import position_mask


def leading_true(ok, length=None) -> jax.Array:
    """The number of leading ``True`` entries of ``ok`` along its last axis, counting
    only the first ``length`` positions. Taken at the first ``False``, a min-reduction:
    a cumulative product lowers to an ``O(N²)`` window reduction on CPU."""
    n = ok.shape[-1]
    real = position_mask(n, length)
    end = jnp.sum(real, dtype=jnp.int32)
    return jnp.min(jnp.where(real & ~ok, jnp.arange(n, dtype=jnp.int32), end), axis=-1)


def correct_prefix_length(y, y_star, length=None) -> jax.Array:
    """``L``: the number of leading positions where ``y`` agrees with ``y*``."""
    return leading_true(y == y_star, length)


def outcome_reward(y, y_star, length=None, signed: bool = False) -> jax.Array:
    """``r(x, y) = 1[y = y*]`` (or ``±1`` when ``signed``), comparing real positions only."""
    mask = position_mask(y.shape[0], length)
    hit = jnp.all((y == y_star) | ~mask)
    return _signed(hit, signed)


def process_rewards(y, y_star, length=None, signed: bool = False) -> jax.Array:
    """``r_i = 1[y_1..i = y*_1..i]`` (or ``±1``) for every position, 0 at padding: ``(N,)``."""
    return prefix_rewards(correct_prefix_length(y, y_star, length), y.shape[0], length, signed)


def prefix_rewards(prefix_len, n: int, length=None, signed: bool = False) -> jax.Array:
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
# Log-space counting
# ---------------------------------------------------------------------------------


def log_count(n) -> jax.Array:
    """``log n`` of a (float or int) count; ``-inf`` for 0."""
    return jnp.log(jnp.asarray(n, jnp.float32))


def log_add(a, b) -> jax.Array:
    """``log(e^a + e^b)``: adds two log-counts exactly to float precision."""
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


def log_truncated_geometric(key, log_p, log_m):
    """Best-of-m in log space (PAPER.md §6): ``G ~ Geometric(p)`` on ``{1, 2, …}`` is the
    index of the first success among i.i.d. draws with success probability
    ``p = exp(log_p)``; at most ``m = exp(log_m)`` draws are made.

    Returns ``(success, log_draws)``: ``success = G ≤ m`` and ``log min(G, m)``.
    Exact (integer ``G``) while ``G < 2^22``; beyond that ``G`` is carried as
    ``log ⌈E/λ⌉ ≈ log(E/λ)``, ``E ~ Exp(1)``, ``λ = −log(1 − p)``, which is exact to
    float precision."""
    e = jax.random.exponential(key, jnp.shape(log_p))
    t = jnp.log(e) - _log_rate(log_p)
    g_small = jnp.maximum(1.0, jnp.ceil(jnp.exp(jnp.minimum(t, 30.0))))
    small = t < jnp.log(_EXACT_BELOW)
    log_g = jnp.where(small, jnp.log(g_small), t)
    log_m = jnp.asarray(log_m, log_g.dtype)
    # In the exact range compare integers: log G and log m can round apart at G = m.
    success = jnp.where(small, g_small <= draw_cap(log_m), log_g <= log_m)
    return success, jnp.minimum(log_g, log_m)


def bernoulli_log(key, log_p, shape=None) -> jax.Array:
    """``Bernoulli(exp(log_p))`` without leaving log space: ``log U < log p``."""
    shape = jnp.shape(log_p) if shape is None else shape
    return jnp.log(jax.random.uniform(key, shape, minval=0.0, maxval=1.0)) < log_p
