"""Metrics of PAPER.md §1: error, the likelihood CDF, the Likelihood Quantile (LQ), the
token-level LQ and the α-tail. Likelihoods are taken and returned in log space, so
``32^-128`` is an ordinary number here.

Shapes and settings are checked before anything is computed; token values and ``length``
only when concrete (under ``jit`` they are not checked: use :func:`lpg.checked`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
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
    _checks.nonempty("log_likelihoods", log_likelihoods, ("n",))
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
    ignored (``length`` is not checked under ``jit``). The uniform policy gives ``1/k`` at
    every ``N``; always ``Q^TL ≥ Q``."""
    _, N = _checks.nonempty("token_log_likelihoods", token_log_likelihoods, ("n", "N"))
    _checks.length("length", length, N)
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


def check_contexts_and_responses(fmap, xs, ys, length=None) -> None:
    """``xs (n, d)`` and integer ``ys (n, N)`` with tokens in ``[0, k)`` (when concrete)."""
    _checks.tokens("ys", ys, fmap.k, ("n", "N"), length_value=length)
    _checks.shape("xs", xs, (np.shape(ys)[0], fmap.d), " (one row per row of ys; d is the feature map's)")


def sequence_log_likelihoods(fmap, w: PyTree, xs: Float[Array, "n d"], ys: Int[Array, "n N"],
                             length=None) -> Float[Array, "n"]:
    """``log p_w(y*(x)|x)`` for each context: ``(n,)``. Under ``jit`` the tokens and
    ``length`` are not checked (shapes are); :func:`lpg.checked` checks them."""
    check_contexts_and_responses(fmap, xs, ys, length)
    return jax.vmap(lambda x, y: log_prob(fmap, w, x, y, length))(xs, ys)


def token_log_likelihoods(fmap, w: PyTree, xs: Float[Array, "n d"], ys: Int[Array, "n N"],
                          length=None) -> Float[Array, "n N"]:
    """``log p_w(y*_i | x, y*_<i)`` for each context and position: ``(n, N)``. Under ``jit``
    the tokens and ``length`` are not checked (shapes are); :func:`lpg.checked` checks them."""
    check_contexts_and_responses(fmap, xs, ys, length)
    return jax.vmap(lambda x, y: token_log_probs(fmap, w, x, y, length))(xs, ys)


def error(fmap, w: PyTree, xs: Float[Array, "n d"], ys: Int[Array, "n N"], length=None) -> Float[Array, ""]:
    """``err(w) = E_x[1 − p_w(y*(x)|x)]`` on a finite test set (PAPER.md §1). Under ``jit``
    the tokens and ``length`` are not checked (shapes are); :func:`lpg.checked` checks them."""
    return 1.0 - jnp.mean(jnp.exp(sequence_log_likelihoods(fmap, w, xs, ys, length)))
