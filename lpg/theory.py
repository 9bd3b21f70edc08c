"""The paper's closed forms (PAPER.md §3–4), each with the claim it belongs to.

* Algorithm 1's and Algorithm 2's ``m`` (C5, C9), from the base model's Likelihood
  Quantile and token-level LQ, in log space (``m = 32^128`` is a float32 here);
* the lower bounds drawn under the scaling figures: ``1/(Q_{q0}(ε)γ²)`` for any ORM
  method (C6) and the online bounds ``k^N/γ²``, ``k^N/(Nγ²)`` (C7);
* the expected-query floor ``Σ_c 1/q0(y*|c)`` of the outcome reward (C4, C6);
* the zero-variance law of group baselines, ``(1 − α)^G + α^G``;
* the coverage time of rare contexts (C8), a plain NumPy simulation of i.i.d. draws.

JAX functions take and return log values (traced or not); NumPy ones work on the host.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["coverage_times", "log_ceil", "log_online_bounds", "log_orm_lower_bound", "lq_floor", "orm_log_m",
           "prm_log_m", "zero_variance_probability"]

_EXACT_LOG = 22 * math.log(2.0)


def log_ceil(log_x) -> Float[Array, "*b"]:
    """``log ⌈x⌉`` from ``log x`` (``x ≥ 1``), exact to float32 where ``x < 2^22`` (a
    hair of relative slack absorbs ``exp(log 4) = 4.0000005``), ``log x`` beyond."""
    log_x = jnp.asarray(log_x, jnp.float32)
    small = log_x < _EXACT_LOG
    x = jnp.exp(jnp.minimum(log_x, _EXACT_LOG))
    return jnp.where(small, jnp.log(jnp.ceil(x * (1.0 - 2e-6))), log_x)


def orm_log_m(log_q, length, k: int) -> Float[Array, "*b"]:
    """Algorithm 1's ``log m`` with ``m = min(⌈1/Q_{q0}(ε)⌉, k^N)`` (PAPER.md §3; C5)."""
    return jnp.minimum(log_ceil(-log_q), length * math.log(k))


def prm_log_m(log_q_tl, k: int, length=None, delta: float | None = None) -> Float[Array, "*b"]:
    """Algorithm 2's ``log m``: ``m = min(⌈1/Q^TL_{q0}(ε)⌉, k)`` draws per position
    (PAPER.md §4, C9), times ``⌈ln(N/δ)⌉`` when ``delta`` is given.

    The log factor is the one C9's ``Õ`` hides: a position whose candidates verify with
    probability ``ρ ≥ 1/m₀`` is passed within ``m₀·ln(N/δ)`` draws except with
    probability ``δ/N``, so a walk reaches the end of the response with probability
    ``≥ 1 − δ``. With ``m = m₀`` alone, a walk from the uniform base is truncated after
    ``1/(1 − 1/e) ≈ 1.6`` positions on average, whatever ``N``."""
    log_m = jnp.minimum(log_ceil(-log_q_tl), math.log(k))
    if delta is None:
        return log_m
    return log_m + log_ceil(jnp.log(jnp.log(jnp.asarray(length, jnp.float32) / delta)))


def log_orm_lower_bound(log_q, gamma):
    """``ln(1/(Q γ²))``: the queries any ORM method needs up to log factors (C6), from
    ``log_q = ln Q_{q0}(ε)``. NumPy or JAX."""
    return -log_q - 2.0 * np.log(gamma)


def log_online_bounds(N, k: int, gamma) -> tuple:
    """``(ln(k^N/γ²), ln(k^N/(Nγ²)))``: the shapes of C7's upper and lower bounds on the
    mistakes of online learning with uniform exploration."""
    upper = np.asarray(N, np.float64) * math.log(k) - 2.0 * np.log(gamma)
    return upper, upper - np.log(N)


def lq_floor(alphas, eps: float) -> float:
    """Expected-query floor of outcome-reward learners for equally likely contexts with
    base likelihoods ``alphas`` (C4, C6): before its first success on a context a learner
    that samples from ``p_w``, ``q0`` or mixtures with uniform responses succeeds with
    probability at most ``q0(y*|x)`` per query, so it spends ``≥ 1/q0(y*|x)`` queries in
    expectation on every context it learns, and it must learn enough contexts for the
    untouched ones to carry error ``Σ (1 − α_c)/S ≤ ε``. Choosing the untouched set is a
    knapsack (weight ``1 − α``, value ``1/α``); this is its linear-programming relaxation
    (fill by value per weight, the last item fractionally), never above the exact
    minimum, so the floor stays a valid lower bound."""
    a = np.asarray(alphas, np.float64)
    budget = eps * a.size
    weight, value = 1.0 - a, 1.0 / a
    saved = 0.0
    for c in np.argsort(-value / np.maximum(weight, 1e-300)):
        if weight[c] <= budget:
            saved += value[c]
            budget -= weight[c]
        else:
            saved += value[c] * budget / weight[c]
            break
    return float(value.sum() - saved)


def zero_variance_probability(alpha, G: int):
    """Probability that a group of ``G`` samples, each correct with probability ``α``,
    gets one reward for all: ``(1 − α)^G + α^G`` (group baselines then give no update)."""
    a = np.asarray(alpha, np.float64)
    return (1.0 - a) ** G + a**G


def coverage_times(weights, eps: float, n_sims: int, seed: int = 0) -> np.ndarray:
    """The first ``n`` after which the never-drawn mass of i.i.d. context draws with
    probabilities ``∝ weights`` is ``≤ ε`` (``n_sims`` simulations; ``inf`` if not within
    ``50·Σ weights`` draws): the time pre-training on one-hot contexts leaves
    ``Q_q(ε) ≤ k^-N`` (C8), with no training at all."""
    w = np.asarray(weights, np.float64)
    p = w / w.sum()
    S = p.size
    length = int(50 * w.sum())
    rng = np.random.default_rng(seed)
    out = np.empty(n_sims)
    for i in range(n_sims):
        draws = rng.choice(S, size=length, p=p)
        ctx, first = np.unique(draws, return_index=True)
        order = np.argsort(first)
        seen_mass = np.cumsum(p[ctx[order]])
        done = np.flatnonzero(1.0 - seen_mass <= eps + 1e-12)
        out[i] = first[order][done[0]] + 1 if done.size else np.inf
    return out
