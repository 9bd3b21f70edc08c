"""Feature maps ``φ(x, y_<i, y)`` of the linear autoregressive policy (PAPER.md §1).

A feature map is an immutable, static description (an ``eqx.Module`` whose fields are
all static) of how trained weights ``w`` (a pytree) turn into next-token logits
``logits_i(y) = <w, φ(x, y_<i, y)>``. Both built-in maps are *Markov*: ``φ`` depends on
the prefix only through the previous token, which lets the policy encode the context
once per example (``encode``) and then pay ``O(k)`` per token (``step_logits``).

A new map subclasses :class:`AbstractFeatureMap` and defines ``init_params``, ``encode``
and ``step_logits``; everything else works from those. The map also owns the paths the
algorithms run through — token log-probabilities, sampling, the weighted policy
gradient, Algorithm 2's token steps and the greedy (teacher) response — whose defaults
are the plain JAX references of :mod:`lpg.policy`; a map with a faster closed form
overrides them (:class:`Bigram` does, with :mod:`lpg.kernels`), and tests hold each
override to its reference.

Because the logits are linear in ``w``, the feature vector itself is recovered exactly
as a Jacobian (:meth:`AbstractFeatureMap.features`); tests and margin computations use it.
"""


import abc
import math
from typing import NamedTuple

import equinox as eqx
from equinox import AbstractVar
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PyTree

from lpg import _checks, kernels, policy
from lpg.policy import START

__all__ = ["START", "AbstractFeatureMap", "Bigram", "BigramParams", "FeatureMap", "PlantedShift",
           "max_planted_contexts"]


class AbstractFeatureMap(eqx.Module):
    """A Markov feature map: ``k`` (vocabulary) and ``d`` (context dimension) are static;
    subclasses define :meth:`init_params`, :meth:`encode` and :meth:`step_logits`, and may
    override the paths below with faster ones that agree with the references."""

    k: AbstractVar[int]
    d: AbstractVar[int]

    @abc.abstractmethod
    def init_params(self, dtype=jnp.float32) -> PyTree:
        """Zero weights: the uniform policy (PAPER.md §1)."""

    @abc.abstractmethod
    def encode(self, w: PyTree, x: Float[Array, "d"]) -> PyTree:
        """Per-example context code, computed once per response."""

    @abc.abstractmethod
    def step_logits(self, w: PyTree, code: PyTree, prev: Int[Array, ""]) -> Float[Array, "k"]:
        """Logits ``(k,)`` of the next token given the previous one (``START`` at i=1)."""

    # -- the paths the algorithms run through (plain JAX references by default) -----

    def token_log_probs(self, w: PyTree, x: Float[Array, "d"], y: Int[Array, "N"], length=None) -> Float[Array, "N"]:
        """``log p_w(y_i | x, y_<i)`` for every position (0 at padding)."""
        return policy.token_log_probs_reference(self, w, x, y, length)

    def sample_tokens(self, w: PyTree, x: Float[Array, "d"], us: Float[Array, "n"]) -> Int[Array, "n"]:
        """``y ~ p_w(·|x)`` with one uniform per token (inverse CDF)."""
        return policy.sample_tokens_reference(self, w, x, us)

    def weighted_grad(self, w: PyTree, xs: Float[Array, "B d"], ys: Int[Array, "B N"],
                      coef: Float[Array, "B"] | Float[Array, "B N"], length) -> PyTree:
        """``∇_w Σ_b c_b log p_w(y_b|x_b)`` (``coef (B,)``) or the per-token
        ``∇_w Σ_{b,i} c_{b,i} log p_w(y_{b,i}|x_b, y_{b,<i})`` (``coef (B, N)``)."""
        return policy.weighted_grad_reference(self, w, xs, ys, coef, length)

    def token_steps(self, w: PyTree, xs: Float[Array, "B d"], ys: Int[Array, "B N"],
                    coef: Float[Array, "B N"]) -> PyTree:
        """Adaptive token steps in order of position (Algorithm 2, PAPER.md §3): for
        ``i = 1..N``, ``w += mean_b c_{b,i}·g_b/(4 + 2‖g_b‖²)`` with
        ``g_b = ∇_w log p_w(y_{b,i}|x_b, y_{b,<i})`` at the current ``w`` (0 skips a token).

        In order, not summed at the iteration's ``w``: on a task whose positions share
        weights ``L`` steps taken at one point move ``w`` ``L`` times as far as one step,
        past what the adaptive step keeps stable."""
        return policy.token_steps_reference(self, w, xs, ys, coef)

    def greedy(self, w: PyTree, x: Float[Array, "d"], n: int) -> Int[Array, "n"]:
        """The greedy response of length ``n`` (the teacher's ``y*``, PAPER.md §1)."""
        return policy.greedy_reference(self, w, x, n)

    # -- derived -----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        flat, _ = ravel_pytree(self.init_params())
        return int(flat.size)

    def features(self, x, prev) -> Float[Array, "k D"]:
        """``φ(x, prev, y)`` for every ``y``: array ``(k, D)`` in the flat order of
        ``ravel_pytree(w)``. Exact, since logits are linear in ``w``."""
        w0 = self.init_params(jnp.result_type(float))
        flat0, unravel = ravel_pytree(w0)

        def logits_of(flat):
            w = unravel(flat)
            return self.step_logits(w, self.encode(w, x), prev)

        return jax.jacfwd(logits_of)(flat0)

    def check_params(self, w) -> None:
        """Raise ``ValueError`` if ``w`` does not have this map's structure and shapes."""
        ref = self.init_params()
        ref_leaves, ref_def = jax.tree_util.tree_flatten(ref)
        leaves, tdef = jax.tree_util.tree_flatten(w)
        if tdef != ref_def:
            raise ValueError(f"w must be a pytree like {ref_def}, got {tdef}")
        for i, (a, b) in enumerate(zip(leaves, ref_leaves)):
            _checks.shape(f"w[{i}]", a, b.shape)


FeatureMap = AbstractFeatureMap
"""The name the first version used for :class:`AbstractFeatureMap`."""


class BigramParams(NamedTuple):
    """Weights of the bigram policy: ``W1 (d, k)`` and ``W2 (k, k)`` indexed ``W2[prev, y]``."""

    W1: jax.Array
    W2: jax.Array


class Bigram(AbstractFeatureMap):
    """The paper's bigram features ``φ = [vec(x e_yᵀ); vec(e_{y_{i-1}} e_yᵀ)]``
    (second block zero at ``i = 1``), i.e. ``logits_i(y) = <x, W1[:, y]> + W2[y_{i-1}, y]``,
    ``D = dk + k²`` (PAPER.md §1).

    Every path the algorithms run through is a closed form of :mod:`lpg.kernels`: the
    prefix enters the logits only through the previous token, so everything a token loop
    needs is a table of ``k + 1`` rows per context. The row tables of token
    log-probabilities and sampling are used when ``k + 1 <= n`` (otherwise building them
    costs more than the ``n`` positions the loop visits). A subclass that changes
    ``encode`` or ``step_logits`` gets the plain references instead."""

    d: int = eqx.field(static=True)
    k: int = eqx.field(static=True)

    def __init__(self, d: int, k: int):
        self.d = _checks.int_at_least("d", d, 1)
        self.k = _checks.int_at_least("k", k, 2)

    def init_params(self, dtype=jnp.float32):
        return BigramParams(jnp.zeros((self.d, self.k), dtype), jnp.zeros((self.k, self.k), dtype))

    def encode(self, w, x):
        return x @ w.W1

    def step_logits(self, w, code, prev):
        row = w.W2[jnp.maximum(prev, 0)]
        return code + jnp.where(prev >= 0, row, jnp.zeros_like(row))

    def uses_kernels(self, n: int | None = None) -> bool:
        """Whether the kernels compute this map's logits (not a subclass that changed
        them) and, for the row tables, ``k + 1 <= n``."""
        own = type(self).encode is Bigram.encode and type(self).step_logits is Bigram.step_logits
        return own and (n is None or self.k + 1 <= n)

    def token_log_probs(self, w, x, y, length=None):
        if self.uses_kernels(y.shape[0]):
            return kernels.bigram_token_log_probs(w, x, y, length)
        return super().token_log_probs(w, x, y, length)

    def sample_tokens(self, w, x, us):
        if self.uses_kernels(us.shape[0]):
            return kernels.bigram_sample(w, x, us)
        return super().sample_tokens(w, x, us)

    def weighted_grad(self, w, xs, ys, coef, length):
        if self.uses_kernels():
            return kernels.bigram_weighted_grad(w, xs, ys, coef, length)
        return super().weighted_grad(w, xs, ys, coef, length)

    def token_steps(self, w, xs, ys, coef):
        if self.uses_kernels():
            return kernels.bigram_token_steps(w, xs, ys, coef)
        return super().token_steps(w, xs, ys, coef)

    def greedy(self, w, x, n):
        if self.uses_kernels():
            # y* of the teacher A = W1ᵀ, B = W2ᵀ: the argmax table, then gathers.
            return kernels.teacher_response(w.W1.T, w.W2.T, x, n)
        return super().greedy(w, x, n)


class PlantedShift(AbstractFeatureMap):
    """Planted-margin family: a prescribed margin ``γ`` that does not change with ``N``.

    Construction. There are ``S`` contexts, ``x = e_c`` (one-hot in ``R^S``), and the
    features only see the *shift* ``(y − y_{i−1}) mod k`` between consecutive tokens
    (``y_0 := 0``)::

        φ(x, y_<i, y) = a · x ⊗ e_{(y − y_{i−1}) mod k},     D = S·k,  ‖φ‖ = a ≤ 1.

    Context ``c`` has a planted shift ``δ_c``, so ``y*_i(c) = i·δ_c mod k``. The planted
    weights (``planted_weights``) put ``u = m(k−1)/k`` on ``(c, δ_c)`` and ``−m/k`` on
    every other ``(c, j)`` with ``m = sqrt(k / (S(k−1)))``, so ``‖w*‖ = 1``. Along the
    correct prefix, for every context, position and wrong token,
    ``<w*, φ(y*_i) − φ(y)> = a·m``; we set ``a = γ/m``, so that margin is exactly ``γ``
    at every ``N``. ``w*`` is a non-negative combination of the active constraint
    directions ``φ(y*) − φ(y)``, so (KKT) no unit vector does better: ``γ`` is *the*
    margin of the class, not a lower bound on it (both proved in ``tests``).

    ``a ≤ 1`` requires ``S ≤ k / ((k−1) γ²)``; ``S`` defaults to that maximum, giving
    ``D = S·k ≈ k/γ²``, the regime of the lower bound C6 (``D ≥ k/γ²`` holds exactly
    when ``1/γ²`` is an integer, e.g. ``γ = 1/2``).
    """

    d: int = eqx.field(static=True)
    k: int = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, k: int, gamma: float, n_contexts: int | None = None):
        self.k = _checks.int_at_least("k", k, 2)
        self.gamma = _checks.in_open_closed("gamma", gamma, 0.0, 1.0)
        s_max = max_planted_contexts(self.k, self.gamma)
        if s_max < 1:
            raise ValueError(
                f"gamma must be at most sqrt(k/(k-1)) = {math.sqrt(k / (k - 1)):.4f} for "
                f"k={k} so that ||phi|| <= 1 with one context, got {gamma!r}"
            )
        if n_contexts is None:
            n_contexts = s_max
        n_contexts = _checks.int_at_least("n_contexts", n_contexts, 1)
        if n_contexts > s_max:
            raise ValueError(
                f"n_contexts must be at most k/((k-1)*gamma^2) = {s_max} for k={k}, "
                f"gamma={gamma} (so that ||phi|| <= 1), got {n_contexts}"
            )
        self.d = n_contexts
        self.scale = float(self.gamma / _planted_m(self.k, n_contexts))

    @property
    def n_contexts(self) -> int:
        return self.d

    def init_params(self, dtype=jnp.float32):
        return jnp.zeros((self.d, self.k), dtype)

    def encode(self, w, x):
        return self.scale * (x @ w)

    def step_logits(self, w, code, prev):
        shift = (jnp.arange(self.k) - jnp.maximum(prev, 0)) % self.k
        return code[shift]

    def planted_weights(self, shifts, dtype=jnp.float32):
        """The unit-norm max-margin ``w*`` for per-context shifts ``δ`` (shape ``(S,)``)."""
        _checks.shape("shifts", shifts, (self.d,))
        m = _planted_m(self.k, self.d)
        onehot = jax.nn.one_hot(jnp.asarray(shifts), self.k, dtype=dtype)
        return (m * (onehot - 1.0 / self.k)).astype(dtype)


def _planted_m(k: int, s: int) -> float:
    return math.sqrt(k / (s * (k - 1)))


def max_planted_contexts(k: int, gamma: float) -> int:
    """Largest ``S`` with ``‖φ‖ ≤ 1`` in :class:`PlantedShift` (``⌊k/((k−1)γ²)⌋``)."""
    return int(math.floor(k / ((k - 1) * gamma * gamma) * (1 + 1e-12)))
