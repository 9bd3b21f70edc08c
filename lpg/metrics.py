"""Metrics of PAPER.md §1: error, the likelihood CDF, the Likelihood Quantile (LQ), the
token-level LQ and the α-tail. Likelihoods are taken and returned in log space, so
``32^-128`` is an ordinary number here."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree

from lpg import _checks
from lpg.policy import log_prob, token_log_probs


def quantile_index(n: int, eps: float) -> int:
    """Largest ``j`` with ``j/n <= eps``, robust to ``eps·n`` landing a hair off an integer."""
    return int(math.floor(eps * n * (1 + 1e-9) + 1e-9))


def likelihood_quantile(log_likelihoods: Float[Array, "*b n"], eps: float) -> Float[Array, "*b"]:
    """Empirical Likelihood Quantile ``Q_q(ε) = sup{α : P_x(q(y*|x) ≤ α) ≤ ε}`` in log space.

    ``log_likelihoods`` holds ``log q(y*(x)|x)`` for ``n`` contexts drawn from ``D``
    (last axis; leading axes are batched). With sorted values ``v_(1) ≤ … ≤ v_(n)`` the
    empirical CDF stays ``≤ ε`` exactly below ``v_(j+1)``, ``j = ⌊εn⌋``, so
    ``Q = v_(j+1)``; when ``j ≥ n`` every α qualifies and ``Q = 1`` (log 0).
    The uniform policy gives ``Q = k^-N``.
    """
    eps = _checks.in_open("eps", eps, 0.0, 1.0)
    v = jnp.sort(jnp.asarray(log_likelihoods), axis=-1)
    n = v.shape[-1]
    j = quantile_index(n, eps)
    if j >= n:
        return jnp.zeros(v.shape[:-1], v.dtype)
    return v[..., j]


def token_likelihood_quantile(token_log_likelihoods: Float[Array, "*b n N"], eps: float,
                              length=None) -> Float[Array, "*b"]:
    """Token-level LQ ``Q^TL_q(ε)``: the LQ of ``min_i q(y*_i | x, y*_<i)``.

    ``token_log_likelihoods`` has shape ``(..., n, N)``; positions ``i >= length`` are
    ignored. The uniform policy gives ``1/k`` at every ``N``; always ``Q^TL ≥ Q``."""
    t = jnp.asarray(token_log_likelihoods)
    if length is not None:
        t = jnp.where(jnp.arange(t.shape[-1]) < length, t, 0.0)
    return likelihood_quantile(jnp.min(t, axis=-1), eps)


def likelihood_cdf(log_likelihoods: Float[Array, "*b n"], log_alphas: Float[Array, "a"]) -> Float[Array, "*b a"]:
    """``P_x(q(y*|x) ≤ α)`` at each ``α`` of ``log_alphas`` (Figure 2)."""
    v = jnp.asarray(log_likelihoods)
    return jnp.mean(v[..., None, :] <= jnp.asarray(log_alphas)[..., :, None], axis=-1)


def log_alpha_tail(log_likelihoods: Float[Array, "*b n"], log_alphas: Float[Array, "a"]) -> Float[Array, "*b a"]:
    """``log(α · P_x(q(y*|x) > α))`` at each α (the tail panel of Figure 2);
    ``-inf`` where no likelihood exceeds α."""
    tail = 1.0 - likelihood_cdf(log_likelihoods, log_alphas)
    return jnp.asarray(log_alphas) + jnp.log(tail)


def sequence_log_likelihoods(fmap, w: PyTree, xs: Float[Array, "n d"], ys: Int[Array, "n N"],
                             length=None) -> Float[Array, "n"]:
    """``log p_w(y*(x)|x)`` for each context: ``(n,)``."""
    return jax.vmap(lambda x, y: log_prob(fmap, w, x, y, length))(xs, ys)


def token_log_likelihoods(fmap, w: PyTree, xs: Float[Array, "n d"], ys: Int[Array, "n N"],
                          length=None) -> Float[Array, "n N"]:
    """``log p_w(y*_i | x, y*_<i)`` for each context and position: ``(n, N)``."""
    return jax.vmap(lambda x, y: token_log_probs(fmap, w, x, y, length))(xs, ys)


def error(fmap, w: PyTree, xs: Float[Array, "n d"], ys: Int[Array, "n N"], length=None) -> Float[Array, ""]:
    """``err(w) = E_x[1 − p_w(y*(x)|x)]`` on a finite test set (PAPER.md §1)."""
    return 1.0 - jnp.mean(jnp.exp(sequence_log_likelihoods(fmap, w, xs, ys, length)))
