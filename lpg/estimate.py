"""Estimating the Likelihood Quantile from samples (the paper's open question Q4).

A user of a real model can only sample. For each of ``S`` contexts ``x`` draw ``m``
responses from ``q0(·|x)`` and ask the outcome verifier about each (``m`` reward queries
per context): the number of hits ``H_x`` (draws equal to ``y*(x)``) is
``Binomial(m, q0(y*|x))``. Per context:

* ``plugin``: ``p̂ = H/m``, the pass@1 estimate of ``q0(y*|x)``: unbiased, variance
  ``q(1 − q)/m``, and ``0`` whenever no draw hit;
* ``jeffreys``: ``(H + 1/2)/(m + 1)``, the posterior mean under the Jeffreys prior
  ``Beta(1/2, 1/2)``: never ``0`` (about ``1/(2m)`` without a hit), so its logarithm and
  the cost ``1/Q̂`` it predicts stay finite.

The estimated LQ is the ε-quantile over contexts of ``p̂`` (:func:`lpg.likelihood_quantile`
of ``log p̂``); the token-level LQ likewise from ``m`` draws of one token at every
position of the correct prefix (``H_{x,i} ~ Binomial(m, q0(y*_i | x, y*_<i))``, the
minimum over positions, then the quantile).

Two paths draw the hits (PAPER.md §6): the *event path* draws them from their exact law
(:func:`nested_hits`: one path over increasing ``m``, the first ``m_1`` draws of
``m_2`` are those of ``m_1``), the *sampled path* draws real responses or tokens from the
policy and compares them with ``y*`` (:func:`sampled_hits`, :func:`sampled_token_hits`).
:func:`first_hit_log_times` draws each context's first hit ``T_x ~ Geometric(q0(y*|x))``
and :func:`log_samples_until_nonzero` the fewest samples per context after which the
plug-in quantile is nonzero: the ``(j+1)``-th largest ``T_x`` (``j = ⌊εS⌋``).

:func:`order_statistic_cdf` and :func:`hits_quantile_law` give the exact law of the
quantile of the estimates (NumPy, float64): both estimators are increasing functions of
``H`` with one ``m`` for every context, so each is that function of ``H_(j+1)``, the
``(j+1)``-th smallest hit count, and ``P(H_(j+1) ≤ h) = P(#{x : H_x ≤ h} ≥ j + 1)``, a
Poisson-binomial tail over the independent contexts.

JAX functions work in log space (``log 0 = -inf``) and are jit/vmap-able.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from lpg import _checks
from lpg.metrics import likelihood_quantile, quantile_index, token_likelihood_quantile
from lpg.policy import log_probs_table, sample
from lpg.rewards import log_truncated_geometric

__all__ = ["ESTIMATORS", "estimated_lq", "estimated_token_lq", "first_hit_log_times", "hits_quantile_law",
           "jeffreys_log", "log_samples_until_nonzero", "log_sequential_queries", "nested_hits", "nonzero_probability",
           "order_statistic_cdf", "plugin_log", "sampled_hits", "sampled_token_hits"]

# ---------------------------------------------------------------------------------
# Per-context estimators (log space)
# ---------------------------------------------------------------------------------


def plugin_log(hits, m) -> Float[Array, "*b"]:
    """``log(H/m)`` (``-inf`` without a hit)."""
    hits = jnp.asarray(hits, jnp.float32)
    return jnp.where(hits > 0, jnp.log(jnp.maximum(hits, 1.0)), -jnp.inf) - jnp.log(jnp.asarray(m, jnp.float32))


def jeffreys_log(hits, m) -> Float[Array, "*b"]:
    """``log((H + 1/2)/(m + 1))``: the posterior mean under the Jeffreys prior."""
    return jnp.log(jnp.asarray(hits, jnp.float32) + 0.5) - jnp.log(jnp.asarray(m, jnp.float32) + 1.0)


ESTIMATORS = {"plugin": plugin_log, "jeffreys": jeffreys_log}
"""The per-context estimators of ``log q0(y*|x)`` from ``(hits, m)``, by name."""

_VALUES = {"plugin": lambda h, m: h / m, "jeffreys": lambda h, m: (h + 0.5) / (m + 1.0)}


def _estimator(name: str):
    if name not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {name!r}")
    return ESTIMATORS[name]


def estimated_lq(hits: Float[Array, "*b S"], m, eps: float, estimator: str = "plugin") -> Float[Array, "*b"]:
    """``log Q̂_q0(ε)``: the ε-quantile over the ``S`` contexts (last axis) of the estimates."""
    return likelihood_quantile(_estimator(estimator)(hits, m), eps)


def estimated_token_lq(hits: Float[Array, "*b S N"], m, eps: float, estimator: str = "plugin") -> Float[Array, "*b"]:
    """``log Q̂^TL_q0(ε)``: the quantile over contexts of the smallest per-position estimate."""
    return token_likelihood_quantile(_estimator(estimator)(hits, m), eps)


# ---------------------------------------------------------------------------------
# Drawing the hits: the event path and the sampled path
# ---------------------------------------------------------------------------------


def nested_hits(key: PRNGKeyArray, log_q, ms) -> Float[Array, "M *b"]:
    """Hits after each of the increasing sample counts ``ms`` (``(M,)``), drawn from their
    exact law: ``H(m_i) = H(m_{i-1}) + Binomial(m_i − m_{i-1}, q)`` with ``q = exp(log_q)``
    (any shape), so the estimates along ``ms`` are those of one user adding samples."""
    q = jnp.exp(jnp.asarray(log_q, jnp.float32))
    ms = jnp.asarray(ms, jnp.float32)
    steps = jnp.diff(ms, prepend=0.0).reshape(ms.shape + (1,) * q.ndim)
    shape = ms.shape + q.shape
    return jnp.cumsum(jax.random.binomial(key, jnp.broadcast_to(steps, shape), jnp.broadcast_to(q, shape)), axis=0)


def sampled_hits(key: PRNGKeyArray, fmap, w: PyTree, x: Float[Array, "d"], y_star: Int[Array, "N"],
                 m: int) -> Int[Array, ""]:
    """Hits among ``m`` whole responses drawn from ``p_w(·|x)``: ``#{y = y*}``."""
    _checks.int_at_least("m", m, 1)
    ys = jax.vmap(lambda k: sample(fmap, w, x, y_star.shape[0], key=k))(jax.random.split(key, m))
    return jnp.sum(jnp.all(ys == y_star, axis=-1))


def sampled_token_hits(key: PRNGKeyArray, fmap, w: PyTree, x: Float[Array, "d"], y_star: Int[Array, "N"],
                       m: int) -> Int[Array, "N"]:
    """Hits among ``m`` tokens drawn at every position from ``p_w(·|x, y*_<i)``: ``(N,)``."""
    _checks.int_at_least("m", m, 1)
    table = log_probs_table(fmap, w, x, y_star)
    tokens = jax.random.categorical(key, table, axis=-1, shape=(m, y_star.shape[0]))
    return jnp.sum(tokens == y_star, axis=0)


def first_hit_log_times(key: PRNGKeyArray, log_q) -> Float[Array, "*b"]:
    """``log T`` of each context's first hit, ``T ~ Geometric(q)`` on ``{1, 2, …}`` (exact
    integers below ``2^22``, :func:`lpg.rewards.truncated_geometric`)."""
    return log_truncated_geometric(key, jnp.asarray(log_q, jnp.float32), jnp.inf)[1]


def log_samples_until_nonzero(log_times: Float[Array, "*b S"], eps: float) -> Float[Array, "*b"]:
    """``log m*``: the fewest samples per context after which the plug-in ``Q̂_q0(ε) > 0``,
    i.e. at most ``j = ⌊εS⌋`` contexts still without a hit: the ``(j+1)``-th largest first-hit time."""
    eps = _checks.in_open("eps", eps, 0.0, 1.0)
    S = jnp.shape(log_times)[-1]
    j = quantile_index(S, eps)
    return jnp.sort(log_times, axis=-1)[..., S - 1 - j]


def log_sequential_queries(log_times: Float[Array, "*b S"], log_m) -> Float[Array, "*b"]:
    """``log Σ_x min(T_x, m)``: the verifier queries of a user who stops sampling a context
    at its first hit and every context at ``m``."""
    return jax.nn.logsumexp(jnp.minimum(log_times, jnp.asarray(log_m)[..., None]), axis=-1)


# ---------------------------------------------------------------------------------
# Exact laws (NumPy, float64)
# ---------------------------------------------------------------------------------


def order_statistic_cdf(cdfs, j: int) -> np.ndarray:
    """``P(X_(j+1) ≤ h)`` for independent ``X_1..X_S`` with ``cdfs[c, h] = P(X_c ≤ h)``:
    ``P(#{c : X_c ≤ h} ≥ j + 1)``, by dynamic programming over the contexts (counts
    above ``j`` are pooled)."""
    F = np.clip(np.asarray(cdfs, np.float64), 0.0, 1.0)
    S = F.shape[0]
    if not 0 <= j < S:
        raise ValueError(f"j must lie in [0, {S}) for {S} variables, got {j}")
    count = np.zeros((j + 2,) + F.shape[1:])
    count[0] = 1.0
    for f in F:  # count[i]: P(i of the variables so far are <= h), i = j+1 pooled
        below = count * f
        count = count * (1.0 - f)
        count[1:] += below[:-1]
        count[-1] += below[-1]
    return count[-1]


def _binomial_cdf(m: int, q, h_max: int) -> np.ndarray:
    """``P(Binomial(m, q) ≤ h)`` for ``h = 0..h_max`` and each ``q`` (``(len(q), h_max+1)``),
    from the log-pmf recursion (no SciPy)."""
    q = np.asarray(q, np.float64).reshape(-1, 1)
    h = np.arange(h_max + 1, dtype=np.float64)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log(m - h[:-1]) - np.log(h[1:]))]) if h_max else np.zeros(1)
    log_choose = np.where(h <= m, log_choose, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = log_choose + h * np.log(q) + (m - h) * np.log1p(-q)
    log_pmf = np.where(np.isnan(log_pmf), -np.inf, log_pmf)
    return np.minimum(np.cumsum(np.exp(log_pmf), axis=-1), 1.0)


def _h_max(m: int, q: float) -> int:
    """A hit count beyond which ``Binomial(m, q)`` has no mass worth keeping (``> 12`` sd)."""
    return int(min(m, math.ceil(m * q + 12.0 * math.sqrt(m * q * (1.0 - q)) + 12.0)))


def hits_quantile_law(log_alphas, m: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The exact law of ``H_(j+1)``, the hit count at the ε-quantile: ``(h, P(H_(j+1) = h))``.

    ``log_alphas``: ``(S,)`` sequence log-likelihoods ``log q0(y*|x)``, or ``(S, N)`` token
    log-likelihoods for the token-level quantile (the smallest of the ``N`` positions'
    hits, each ``Binomial(m, ·)``). The plug-in estimate is ``H_(j+1)/m``, the Jeffreys one
    ``(H_(j+1) + 1/2)/(m + 1)``; the law is cut where less than ``1e-25`` mass is left."""
    m = _checks.int_at_least("m", m, 1)
    eps = _checks.in_open("eps", eps, 0.0, 1.0)
    a = np.exp(np.asarray(log_alphas, np.float64))
    tokens = a.ndim == 2
    per_context = a.min(axis=1) if tokens else a
    S = per_context.shape[0]
    j = quantile_index(S, eps)
    h_max = _h_max(m, float(np.sort(per_context)[min(j, S - 1)]))
    values, index = np.unique(a, return_inverse=True)  # one binomial law per distinct likelihood
    cdf_of = _binomial_cdf(m, values, h_max)
    index = index.reshape(a.shape)
    if tokens:
        sf = 1.0 - cdf_of
        none_below = np.ones((S, h_max + 1))
        for i in range(a.shape[1]):
            none_below *= sf[index[:, i]]
        cdfs = 1.0 - none_below
    else:
        cdfs = cdf_of[index]
    cdf = order_statistic_cdf(cdfs, j)
    return np.arange(h_max + 1), np.diff(cdf, prepend=0.0)


def estimate_moments(log_alphas, m: int, eps: float) -> dict[str, tuple[float, float, float]]:
    """Exact ``(E[Q̂/Q], sd(Q̂/Q), P(Q̂_plugin = 0))`` of every estimator (by name), from
    :func:`hits_quantile_law` (``Q`` the exact LQ, or the token-level LQ for ``(S, N)`` input)."""
    la = np.asarray(log_alphas, np.float64)
    per_context = la.min(axis=1) if la.ndim == 2 else la
    q = math.exp(float(np.sort(per_context)[quantile_index(per_context.shape[0], eps)]))
    h, p = hits_quantile_law(la, m, eps)
    out = {}
    for name, value in _VALUES.items():
        v = value(h.astype(np.float64), float(m)) / q
        mean = float(np.sum(p * v))
        out[name] = (mean, float(math.sqrt(max(np.sum(p * v * v) - mean * mean, 0.0))), float(p[0]))
    return out


def nonzero_probability(log_alphas, m, eps: float) -> np.ndarray:
    """``P(m* ≤ m)``: the probability that the plug-in ``Q̂_q0(ε)`` is nonzero after ``m``
    samples per context (at most ``j`` contexts with ``(1 − q)^m`` chance of no hit remain
    without one), for each ``m`` of ``m`` (NumPy)."""
    a = np.exp(np.asarray(log_alphas, np.float64))
    ms = np.atleast_1d(np.asarray(m, np.float64))
    none = np.exp(ms[None, :] * np.log1p(-a)[:, None])  # P(no hit in m draws), (S, len(m))
    j = quantile_index(a.shape[0], _checks.in_open("eps", eps, 0.0, 1.0))
    return order_statistic_cdf(1.0 - none, a.shape[0] - 1 - j)  # at least S - j contexts have hit


def median_samples_until_nonzero(log_alphas, eps: float) -> float:
    """The median of ``m*`` (the smallest integer ``m`` with ``P(m* ≤ m) ≥ 1/2``), by bisection."""
    lo, hi = 1, 2
    while nonzero_probability(log_alphas, hi, eps)[0] < 0.5:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if nonzero_probability(log_alphas, mid, eps)[0] < 0.5 else (lo, mid)
    return float(hi if nonzero_probability(log_alphas, lo, eps)[0] < 0.5 else lo)
