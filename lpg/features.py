"""Feature maps ``φ(x, y_<i, y)`` of the linear autoregressive policy (PAPER.md §1).

A feature map is an immutable, static description (an ``eqx.Module`` whose fields are
all static) of how trained weights ``w`` (a pytree) turn into next-token logits
``logits_i(y) = <w, φ(x, y_<i, y)>``. Both built-in maps are *Markov*: ``φ`` depends on
the prefix only through the previous token, which lets the policy encode the context
once per example (``encode``) and then pay ``O(k)`` per token (``step_logits``).

Because the logits are linear in ``w``, the feature vector itself is recovered exactly
as a Jacobian (:meth:`FeatureMap.features`); tests and margin computations use it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lpg import _checks

START = -1
"""Value of the "previous token" at position 1 (there is none)."""


class FeatureMap(eqx.Module):
    """Interface of a Markov feature map. Subclasses define ``init_params``, ``encode``
    and ``step_logits``; ``k`` (vocabulary) and ``d`` (context dimension) are static."""

    k: int = eqx.field(static=True)
    d: int = eqx.field(static=True)

    def init_params(self, dtype=jnp.float32):
        """Zero weights: the uniform policy (PAPER.md §1)."""
        raise NotImplementedError

    def encode(self, w, x):
        """Per-example context code, computed once per response."""
        raise NotImplementedError

    def step_logits(self, w, code, prev):
        """Logits ``(k,)`` of the next token given the previous one (``START`` at i=1)."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        flat, _ = ravel_pytree(self.init_params())
        return int(flat.size)

    def features(self, x, prev):
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


class BigramParams(NamedTuple):
    """Weights of the bigram policy: ``W1 (d, k)`` and ``W2 (k, k)`` indexed ``W2[prev, y]``."""

    W1: jax.Array
    W2: jax.Array


class Bigram(FeatureMap):
    """The paper's bigram features ``φ = [vec(x e_yᵀ); vec(e_{y_{i-1}} e_yᵀ)]``
    (second block zero at ``i = 1``), i.e. ``logits_i(y) = <x, W1[:, y]> + W2[y_{i-1}, y]``,
    ``D = dk + k²`` (PAPER.md §1)."""

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


class PlantedShift(FeatureMap):
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
