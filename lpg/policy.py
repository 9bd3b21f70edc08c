"""The linear autoregressive softmax policy over ``Y^N`` (PAPER.md §1).

``p_w(y_i = y | x, y_<i) = softmax_y <w, φ(x, y_<i, y)>`` and
``p_w(y | x) = Π_i p_w(y_i | x, y_<i)``.

Everything is written for one example and batched with ``jax.vmap``. Functions take
the feature map (static) and the weights ``w`` (a pytree) separately so algorithms can
differentiate with respect to ``w``; :class:`LinearAR` bundles the two for users.

Variable lengths: every function that takes a response accepts ``length`` (a traced
integer, default ``N``); positions ``i >= length`` are padding and contribute nothing
(log-probability 0, no gradient).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from lpg import _checks, kernels
from lpg.features import START, Bigram, BigramParams, FeatureMap


def position_mask(n: int, length=None) -> jax.Array:
    """Boolean ``(n,)``: ``True`` at real positions ``i < length``."""
    if length is None:
        return jnp.ones((n,), bool)
    return jnp.arange(n) < length


def previous_tokens(y: jax.Array) -> jax.Array:
    """``(y_0, ..., y_{N-1})`` with ``y_0 = START``: the conditioning token per position."""
    return jnp.concatenate([jnp.full((1,), START, y.dtype), y[:-1]])


def logits_table(fmap: FeatureMap, w, x, y) -> jax.Array:
    """Teacher-forced logits ``(N, k)`` of every position, computed in parallel."""
    code = fmap.encode(w, x)
    return jax.vmap(lambda p: fmap.step_logits(w, code, p))(previous_tokens(y))


def log_probs_table(fmap: FeatureMap, w, x, y) -> jax.Array:
    """Teacher-forced ``log p_w(· | x, y_<i)`` for every position: ``(N, k)``."""
    return jax.nn.log_softmax(logits_table(fmap, w, x, y), axis=-1)


def token_log_probs(fmap: FeatureMap, w, x, y, length=None) -> jax.Array:
    """``log p_w(y_i | x, y_<i)`` for ``i = 1..N`` (shape ``(N,)``); 0 at padding.
    The bigram map takes :func:`lpg.kernels.bigram_token_log_probs` (one softmax row per
    previous token instead of one per position); others the reference below."""
    if kernels.fast_bigram(fmap, y.shape[0]):
        return kernels.bigram_token_log_probs(w, x, y, length)
    return token_log_probs_reference(fmap, w, x, y, length)


def token_log_probs_reference(fmap: FeatureMap, w, x, y, length=None) -> jax.Array:
    """Plain JAX path of :func:`token_log_probs`, for any feature map."""
    table = log_probs_table(fmap, w, x, y)
    lp = jnp.take_along_axis(table, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jnp.where(position_mask(y.shape[0], length), lp, 0.0)


def log_prob(fmap: FeatureMap, w, x, y, length=None) -> jax.Array:
    """``log p_w(y | x)``: a scalar."""
    return jnp.sum(token_log_probs(fmap, w, x, y, length))


def sample_from_logits(logits: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse-CDF draw of one token from unnormalised ``logits`` with one uniform ``u``."""
    p = jnp.exp(logits - jnp.max(logits))
    cdf = jnp.cumsum(p)
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    return jnp.minimum(idx, logits.shape[-1] - 1).astype(jnp.int32)


def sample(fmap: FeatureMap, w, x, n: int, *, key, length=None) -> jax.Array:
    """Autoregressive draw ``y ~ p_w(·|x)``: ``(n,)`` int32, one uniform per token
    (inverse CDF). Padding positions are drawn but carry no meaning.

    The paper's :class:`~lpg.features.Bigram` map takes the fast path
    :func:`lpg.kernels.bigram_sample` (CDF rows tabulated per previous token, no ``exp``
    in the token loop); any other map, and short responses, the plain reference
    :func:`sample_reference`. Both use the same uniforms, so they draw the same tokens
    up to float32 rounding at CDF boundaries."""
    us = jax.random.uniform(key, (n,))
    if kernels.fast_bigram(fmap, n):
        return kernels.bigram_sample(w, x, us)
    return _sample_tokens(fmap, w, x, us)


def sample_reference(fmap: FeatureMap, w, x, n: int, *, key, length=None) -> jax.Array:
    """The plain JAX path of :func:`sample` (``lax.scan`` over positions, logits and
    ``exp`` per token), for any feature map; the reference the fast paths are tested
    against."""
    return _sample_tokens(fmap, w, x, jax.random.uniform(key, (n,)))


def _sample_tokens(fmap: FeatureMap, w, x, us) -> jax.Array:
    code = fmap.encode(w, x)

    def body(prev, u):
        tok = sample_from_logits(fmap.step_logits(w, code, prev), u)
        return tok, tok

    _, ys = jax.lax.scan(body, jnp.asarray(START, jnp.int32), us)
    return ys


class LinearAR(eqx.Module):
    """A linear autoregressive softmax policy: a static feature map plus weights ``w``.

    >>> pi = LinearAR.from_bigram(W1, W2)
    >>> pi.log_prob(x, y), pi.sample(x, N, key=key)
    """

    features: FeatureMap
    w: object

    def __init__(self, features: FeatureMap, w=None):
        if w is None:
            w = features.init_params()
        else:
            features.check_params(w)
        self.features = features
        self.w = w

    @classmethod
    def from_bigram(cls, W1, W2) -> "LinearAR":
        """The bigram policy of PAPER.md §1: ``W1 (d, k)``, ``W2 (k, k)`` indexed
        ``W2[prev, y]``; logits_i(y) = ``x @ W1[:, y] + W2[y_{i-1}, y]``."""
        W1, W2 = jnp.asarray(W1), jnp.asarray(W2)
        if W1.ndim != 2:
            raise ValueError(f"W1 must have shape (d, k), got shape {W1.shape}")
        d, k = W1.shape
        _checks.int_at_least("k (columns of W1)", k, 2)
        _checks.shape("W2", W2, (k, k))
        return cls(Bigram(d, k), BigramParams(W1, W2))

    @classmethod
    def uniform(cls, features: FeatureMap) -> "LinearAR":
        """Zero weights: ``p(y|x) = k^-N`` for every response."""
        return cls(features)

    @property
    def k(self) -> int:
        return self.features.k

    def token_log_probs(self, x, y, length=None):
        return token_log_probs(self.features, self.w, x, y, length)

    def log_prob(self, x, y, length=None):
        return log_prob(self.features, self.w, x, y, length)

    def log_probs_table(self, x, y):
        return log_probs_table(self.features, self.w, x, y)

    def sample(self, x, N: int, *, key, length=None):
        _checks.int_at_least("N", N, 1)
        return sample(self.features, self.w, x, N, key=key, length=length)
