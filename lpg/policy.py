"""The linear autoregressive softmax policy over ``Y^N`` (PAPER.md §1).

``p_w(y_i = y | x, y_<i) = softmax_y <w, φ(x, y_<i, y)>`` and
``p_w(y | x) = Π_i p_w(y_i | x, y_<i)``.

Everything is written for one example and batched with ``jax.vmap``. Functions take
the feature map (static) and the weights ``w`` (a pytree) separately so algorithms can
differentiate with respect to ``w``; :class:`LinearAR` bundles the two for users.

Two layers. The ``*_reference`` functions here are the plain JAX paths, written only in
terms of a feature map's ``encode`` and ``step_logits``, so they serve any map; they are
the defaults of :class:`lpg.features.AbstractFeatureMap`'s methods, which a map may
override with a faster path (the bigram map does, with :mod:`lpg.kernels`). The public
functions (:func:`token_log_probs`, :func:`log_prob`, :func:`sample`, :func:`weighted_grad`)
call the feature map's methods.

Variable lengths: every function that takes a response accepts ``length`` (a traced
integer, default ``N``); positions ``i >= length`` are padding and contribute nothing
(log-probability 0, no gradient).

Inputs. The public functions check the shapes of ``x`` (``(d,)``) and ``y`` (integer,
``(N,)``) always, and the values of ``y`` (``[0, k)``, padding included: it is computed,
then masked) and of ``length`` (``[0, N]``) when they are concrete. Under ``jit`` those values are tracers and
are not checked; :func:`lpg.checked` runs a function with them checked at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from lpg import _checks
from lpg.optim import adaptive_scale

if TYPE_CHECKING:
    from lpg.features import AbstractFeatureMap

START = -1
"""Value of the "previous token" at position 1 (there is none)."""


def position_mask(n: int, length=None) -> Bool[Array, "n"]:
    """Boolean ``(n,)``: ``True`` at real positions ``i < length``."""
    if length is None:
        return jnp.ones((n,), bool)
    return jnp.arange(n) < length


def previous_tokens(y: Int[Array, "N"]) -> Int[Array, "N"]:
    """``(y_0, ..., y_{N-1})`` with ``y_0 = START``: the conditioning token per position."""
    return jnp.concatenate([jnp.full((1,), START, y.dtype), y[:-1]])


def logits_table(fmap: AbstractFeatureMap, w: PyTree, x: Float[Array, "d"], y: Int[Array, "N"]) -> Float[Array, "N k"]:
    """Teacher-forced logits ``(N, k)`` of every position, computed in parallel."""
    code = fmap.encode(w, x)
    return jax.vmap(lambda p: fmap.step_logits(w, code, p))(previous_tokens(y))


def log_probs_table(fmap: AbstractFeatureMap, w: PyTree, x: Float[Array, "d"], y: Int[Array, "N"]) -> Float[Array, "N k"]:
    """Teacher-forced ``log p_w(· | x, y_<i)`` for every position: ``(N, k)``."""
    return jax.nn.log_softmax(logits_table(fmap, w, x, y), axis=-1)


# ---------------------------------------------------------------------------------
# Reference paths (any feature map)
# ---------------------------------------------------------------------------------


def token_log_probs_reference(fmap, w, x, y, length=None) -> Float[Array, "N"]:
    """Plain JAX ``log p_w(y_i | x, y_<i)`` (``(N,)``, 0 at padding), for any map."""
    table = log_probs_table(fmap, w, x, y)
    lp = jnp.take_along_axis(table, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jnp.where(position_mask(y.shape[0], length), lp, 0.0)


def sample_from_logits(logits: Float[Array, "k"], u: Float[Array, ""]) -> Int[Array, ""]:
    """Inverse-CDF draw of one token from unnormalised ``logits`` with one uniform ``u``."""
    p = jnp.exp(logits - jnp.max(logits))
    cdf = jnp.cumsum(p)
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    return jnp.minimum(idx, logits.shape[-1] - 1).astype(jnp.int32)


def sample_tokens_reference(fmap, w, x, us: Float[Array, "n"]) -> Int[Array, "n"]:
    """Plain JAX autoregressive draw with the given uniforms (``lax.scan`` over
    positions, logits and ``exp`` per token), for any map."""
    code = fmap.encode(w, x)

    def body(prev, u):
        tok = sample_from_logits(fmap.step_logits(w, code, prev), u)
        return tok, tok

    _, ys = jax.lax.scan(body, jnp.asarray(START, jnp.int32), us)
    return ys


def greedy_reference(fmap, w, x, n: int) -> Int[Array, "n"]:
    """The greedy response ``y_i = argmax_y logits_i(y)`` along its own prefix, for any
    map (the teacher's ``y*`` is the greedy response of its weights, PAPER.md §1)."""
    code = fmap.encode(w, x)

    def body(prev, _):
        tok = jnp.argmax(fmap.step_logits(w, code, prev)).astype(jnp.int32)
        return tok, tok

    _, ys = jax.lax.scan(body, jnp.asarray(START, jnp.int32), None, length=n)
    return ys


def weighted_grad_reference(fmap, w, xs, ys, coef, length) -> PyTree:
    """Plain JAX ``∇_w Σ_b c_b log p_w(y_b|x_b)`` (``coef (B,)``) or
    ``∇_w Σ_{b,i} c_{b,i} log p_w(y_{b,i}|x_b, y_{b,<i})`` (``coef (B, N)``): autodiff
    through :func:`token_log_probs_reference`, for any map."""
    coef = jax.lax.stop_gradient(coef)

    def objective(w):
        tl = jax.vmap(lambda x, y: token_log_probs_reference(fmap, w, x, y, length))(xs, ys)
        if coef.ndim == 1:
            return jnp.sum(coef * jnp.sum(tl, axis=-1))
        return jnp.sum(coef * tl)

    return jax.grad(objective)(w)


def token_steps_reference(fmap, w, xs, ys, coef) -> PyTree:
    """Plain JAX path of the adaptive token steps (autodiff per context and position),
    for any map; see :meth:`lpg.features.AbstractFeatureMap.token_steps`."""

    def log_lik(v, x, prev, y):
        return jax.nn.log_softmax(fmap.step_logits(v, fmap.encode(v, x), prev))[y]

    grads = jax.vmap(jax.grad(log_lik), in_axes=(None, 0, 0, 0))

    def position(w, inp):
        prev, y, c = inp
        g = grads(w, xs, prev, y)
        sq = sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree_util.tree_leaves(g))
        eta = adaptive_scale(sq, c) / c.shape[0]
        return jax.tree_util.tree_map(lambda a, d: a + jnp.tensordot(eta, d, axes=1), w, g), None

    prevs = jax.vmap(previous_tokens)(ys)
    return jax.lax.scan(position, w, (prevs.T, ys.T.astype(jnp.int32), coef.T))[0]


# ---------------------------------------------------------------------------------
# The public functions: each calls the feature map's method (its fast path, if any)
# ---------------------------------------------------------------------------------


def check_inputs(fmap, x, y, length=None) -> None:
    """Raise ``ValueError`` unless ``x`` has shape ``(d,)`` and ``y`` holds integer tokens of
    shape ``(N,)`` in ``[0, k)`` with ``length`` in ``[0, N]`` (values only when concrete;
    inside :func:`lpg.checked`, at run time)."""
    _check_context(fmap, x)
    _checks.tokens("y", y, fmap.k, length_value=length)


def _check_context(fmap, x) -> None:
    _checks.shape("x", x, (fmap.d,), f" (d = {fmap.d}, the feature map's context dimension)")


def token_log_probs(fmap, w, x, y, length=None) -> Float[Array, "N"]:
    """``log p_w(y_i | x, y_<i)`` for ``i = 1..N`` (shape ``(N,)``); 0 at padding.
    Under ``jit`` the tokens and ``length`` are not checked (shapes are); use
    :func:`lpg.checked` to check them while debugging."""
    check_inputs(fmap, x, y, length)
    return fmap.token_log_probs(w, x, y, length)


def log_prob(fmap, w, x, y, length=None) -> Float[Array, ""]:
    """``log p_w(y | x)``: a scalar. Under ``jit`` the tokens and ``length`` are not
    checked (shapes are); use :func:`lpg.checked` to check them while debugging."""
    check_inputs(fmap, x, y, length)
    return jnp.sum(fmap.token_log_probs(w, x, y, length))


def sample(fmap, w, x, n: int, *, key: PRNGKeyArray, length=None) -> Int[Array, "n"]:
    """Autoregressive draw ``y ~ p_w(·|x)``: ``(n,)`` int32, one uniform per token
    (inverse CDF), :meth:`~lpg.features.AbstractFeatureMap.sample_tokens`. Padding
    positions are drawn but carry no meaning. Under ``jit`` ``length`` is not checked;
    use :func:`lpg.checked` to check it while debugging."""
    _checks.int_at_least("n", n, 1)
    _check_context(fmap, x)
    _checks.length("length", length, n)
    return fmap.sample_tokens(w, x, jax.random.uniform(key, (n,)))


def sample_reference(fmap, w, x, n: int, *, key: PRNGKeyArray, length=None) -> Int[Array, "n"]:
    """:func:`sample` on the plain JAX path, the reference fast paths are tested against
    (the same uniforms, so the same tokens up to float32 rounding at CDF boundaries)."""
    return sample_tokens_reference(fmap, w, x, jax.random.uniform(key, (n,)))


def weighted_grad(fmap, w, xs, ys, coef, length) -> PyTree:
    """``∇_w`` of the weighted log-likelihood (see :func:`weighted_grad_reference`) by the
    feature map's path; ``coef`` is a constant (no gradient flows through it)."""
    return fmap.weighted_grad(w, xs, ys, jax.lax.stop_gradient(coef), length)


class LinearAR(eqx.Module):
    """A linear autoregressive softmax policy: a static feature map plus weights ``w``.

    >>> pi = LinearAR.from_bigram(W1, W2)
    >>> pi.log_prob(x, y), pi.sample(x, N, key=key)
    """

    features: AbstractFeatureMap
    w: PyTree

    def __init__(self, features: AbstractFeatureMap, w=None):
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
        from lpg.features import Bigram, BigramParams

        W1, W2 = jnp.asarray(W1), jnp.asarray(W2)
        if W1.ndim != 2:
            raise ValueError(f"W1 must have shape (d, k), got shape {W1.shape}")
        d, k = W1.shape
        _checks.int_at_least("k (columns of W1)", k, 2)
        _checks.shape("W2", W2, (k, k))
        return cls(Bigram(d, k), BigramParams(W1, W2))

    @classmethod
    def uniform(cls, features: AbstractFeatureMap) -> "LinearAR":
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
        check_inputs(self.features, x, y)
        return log_probs_table(self.features, self.w, x, y)

    def sample(self, x, N: int, *, key, length=None):
        _checks.int_at_least("N", N, 1)
        return sample(self.features, self.w, x, N, key=key, length=length)
