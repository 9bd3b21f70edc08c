"""Fast paths for the paper's bigram policy (PAPER.md §1), measured in ``benchmarks/``.

The bigram logits ``logits_i(y) = <x, W1[:, y]> + W2[y_{i-1}, y]`` depend on the prefix
only through the previous token, which takes one of ``k + 1`` values (``START`` or a
token). So everything the token loop needs is a table with ``k + 1`` rows per context,
built once, in parallel, before the loop; the loop itself only gathers rows:

* sampling: the unnormalised CDF of every row (``(k + 1)·k`` exponentials per context
  instead of ``N·k``, and no ``exp`` inside the loop), then one uniform per token
  (inverse CDF, the same arithmetic as :func:`lpg.policy.sample_from_logits`);
* gradients of ``Σ_b Σ_i c_{b,i} log p_w(y_{b,i} | x_b, y_{b,<i})``: analytic,
  ``∂/∂logits_i = c_i (e_{y_i} − p_i)``, grouped by the previous token, so
  ``∇W1 = Xᵀ (Hy − Σ_j C_j P_j)`` and ``∇W2[j] = H[j] − Σ_b C_{b,j} P_{b,j}``
  with ``C``, ``Hy``, ``H`` weighted histograms (scatter-adds) and ``P`` the softmax;
  ``P`` factorises as ``exp(x W1)·exp(W2[j]) / Z``, so the sums are three ``B×k×k``
  matmuls — no ``(B, N, k)`` tensor, no autodiff scatter and no ``exp`` per token;
* Algorithm 2's per-token adaptive steps: the same residuals ``e_{y_i} − p_i``, one
  position at a time (the steps are sequential), as two small matmuls per position;
* the teacher's ``y*`` (PAPER.md §1): the next correct token as a function of the
  previous one is an argmax table, after which the loop is a gather.

Underflow. A product of separately shifted exponentials can underflow when logit
ranges are large (hundreds); the sampling tables therefore shift every row by its own
maximum, and the factorised gradient checks its normalisers and falls back to the
row-shifted softmax table when any is too small (tests cover both).

Every function here agrees with the plain JAX reference path that serves any other
feature map (``tests/test_kernels.py``): the same samples for the same uniforms up to
float32 rounding at CDF boundaries, the same gradients to float32 tolerance, the same
``y*`` exactly. :class:`lpg.features.Bigram` decides when a fast path applies.

``w`` is a :class:`lpg.features.BigramParams` (``W1 (d, k)``, ``W2 (k, k)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from lpg.optim import adaptive_scale
from lpg.policy import START

_UNROLL = 8
"""Unroll of the teacher's gather loop: fewer loop iterations for XLA to schedule, at a
small compile cost."""

_ARGMAX_UNROLL_MAX_K = 64
"""Up to this ``k`` the table argmax is an unrolled running maximum (XLA's variadic
argmax reduction is an order of magnitude slower on CPU); above it, ``jnp.argmax``."""


def _prev_rows(W2: Float[Array, "k k"]) -> Float[Array, "k+1 k"]:
    """``(k + 1, k)``: row 0 is the ``START`` row (zeros), row ``j + 1`` is ``W2[j]``."""
    return jnp.concatenate([jnp.zeros((1, W2.shape[-1]), W2.dtype), W2], axis=-2)


def _prev_rows_index(ys: Int[Array, "*b N"]) -> Int[Array, "*b N"]:
    """The table row of each position's previous token, ``prev + 1`` (``0``: ``START``),
    along the last axis of int32 ``ys``."""
    start = jnp.zeros(ys.shape[:-1] + (1,), jnp.int32)
    return jnp.concatenate([start, ys[..., :-1] + 1], axis=-1)


def _cumsum_last(p) -> jax.Array:
    """Cumulative sum over the last (short) axis as a matmul with a triangle of ones:
    several times faster than XLA's cumsum on CPU. ``HIGHEST`` keeps full float32 on
    accelerators whose default matmul precision is lower."""
    k = p.shape[-1]
    tri = jnp.triu(jnp.ones((k, k), p.dtype))
    return jnp.matmul(p, tri, precision=jax.lax.Precision.HIGHEST)


def bigram_cdf_table(w, x: Float[Array, "d"]) -> Float[Array, "k+1 k"]:
    """Unnormalised CDF of the next token for every previous token: ``(k + 1, k)``,
    row ``prev + 1`` (row 0: ``START``), each row from ``exp(logits − max logits)``."""
    logits = (x @ w.W1)[None, :] + _prev_rows(w.W2)
    p = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    return _cumsum_last(p)


def bigram_sample(w, x: Float[Array, "d"], us: Float[Array, "n"]) -> Int[Array, "n"]:
    """``y ~ p_w(·|x)`` for the bigram policy with the given uniforms ``us`` (one per
    token, shape ``(n,)``): ``y_i`` is the first ``y`` with ``CDF(y) > u_i·CDF(k−1)``
    (inverse CDF, as :func:`lpg.policy.sample_from_logits`). Returns int32 ``(n,)``."""
    cdf = bigram_cdf_table(w, x)
    total = cdf[:, -1]
    k = cdf.shape[-1]

    def body(prev, u):
        # total is gathered on its own so that the row gather fuses into the count.
        tok = jnp.sum(cdf[prev + 1] <= u * total[prev + 1])
        tok = jnp.minimum(tok, k - 1).astype(jnp.int32)
        return tok, tok

    _, ys = jax.lax.scan(body, jnp.asarray(START, jnp.int32), us)
    return ys


def bigram_softmax_table(w, xs: Float[Array, "B d"]) -> Float[Array, "B k+1 k"]:
    """``p_w(· | x_b, prev = j)`` for every context and previous token: ``(B, k + 1, k)``."""
    logits = (xs @ w.W1)[:, None, :] + _prev_rows(w.W2)[None]
    return jax.nn.softmax(logits, axis=-1)


_SAFE_NORMALISER = 1e-20
"""Smallest normaliser ``Z[b, j]`` of the factorised softmax accepted as exact: terms it
loses to underflow have probability below ``1e-38 / Z``, far under float32 rounding."""


def _expected_one_hots(w, xs, C):
    """``(Σ_j C[b, j] p(·|x_b, j), Σ_b C[b, j] p(·|x_b, j))`` — shapes ``(B, k)`` and
    ``(k + 1, k)`` — without forming the ``(B, k + 1, k)`` softmax table when that is
    safe: ``p(y|b, j) = E1[b, y] E2[j, y] / Z[b, j]`` with ``E1 = exp(x W1 − max)``,
    ``E2 = exp(W2 rows − max)`` and ``Z = E1 E2ᵀ``, three small matmuls. When logit
    ranges are so large that some ``Z`` underflows, the table is formed instead (each
    row shifted by its own maximum)."""
    hi = jax.lax.Precision.HIGHEST
    code = xs @ w.W1
    rows = _prev_rows(w.W2)
    E1 = jnp.exp(code - jnp.max(code, axis=-1, keepdims=True))
    E2 = jnp.exp(rows - jnp.max(rows, axis=-1, keepdims=True))
    Z = jnp.matmul(E1, E2.T, precision=hi)  # (B, k + 1)

    def factorised(_):
        R = C / Z
        return E1 * jnp.matmul(R, E2, precision=hi), E2 * jnp.matmul(R.T, E1, precision=hi)

    def table(_):
        P = bigram_softmax_table(w, xs)
        return jnp.einsum("bj,bjy->by", C, P, precision=hi), jnp.einsum("bj,bjy->jy", C, P, precision=hi)

    return jax.lax.cond(jnp.min(Z) > _SAFE_NORMALISER, factorised, table, None)


def _weighted_hist(index, weights, size: int) -> jax.Array:
    return jnp.zeros((size,), weights.dtype).at[index.ravel()].add(weights.ravel())


def bigram_weighted_grad(w, xs: Float[Array, "B d"], ys: Int[Array, "B N"],
                         coef: Float[Array, "B"] | Float[Array, "B N"], length=None) -> tuple:
    """``∇_w Σ_b c_b log p_w(y_b|x_b)`` (``coef (B,)``) or
    ``∇_w Σ_{b,i} c_{b,i} log p_w(y_{b,i}|x_b, y_{b,<i})`` (``coef (B, N)``), in closed
    form; positions ``i >= length`` contribute nothing."""
    B, N = ys.shape
    k = w.W2.shape[0]
    dtype = w.W1.dtype
    mask = jnp.arange(N) < (N if length is None else length)
    coef = jnp.asarray(coef, dtype)
    c = jnp.where(mask, coef if coef.ndim == 2 else coef[:, None], 0.0).astype(dtype)
    ys = ys.astype(jnp.int32)
    prev1 = _prev_rows_index(ys)
    row = jnp.arange(B, dtype=jnp.int32)[:, None]
    C = _weighted_hist(row * (k + 1) + prev1, c, B * (k + 1)).reshape(B, k + 1)
    Hy = _weighted_hist(row * k + ys, c, B * k).reshape(B, k)
    H = _weighted_hist(prev1 * k + ys, c, (k + 1) * k).reshape(k + 1, k)
    per_context, per_prev = _expected_one_hots(w, xs, C)
    gW1 = jnp.matmul(xs.T.astype(dtype), Hy - per_context, precision=jax.lax.Precision.HIGHEST)
    return w._replace(W1=gW1, W2=H[1:] - per_prev[1:])


def bigram_token_steps(w, xs: Float[Array, "B d"], ys: Int[Array, "B N"], coef: Float[Array, "B N"]) -> tuple:
    """Algorithm 2's token steps (:meth:`lpg.features.AbstractFeatureMap.token_steps`) in closed
    form: at position ``i`` the gradient of ``log p(y_{b,i}|·)`` is ``x_b ⊗ r_b`` on ``W1``
    and ``r_b`` on the row ``W2[y_{b,i−1}]`` (none at ``i = 1``), ``r_b = e_{y_{b,i}} − p_b``,
    so ``‖g_b‖² = (‖x_b‖² + [i > 1])·‖r_b‖²`` and the batch mean of the steps is two
    ``k``-column matmuls: no per-context gradient is stored."""
    B, N = ys.shape
    k = w.W2.shape[0]
    dtype = w.W1.dtype
    xs = xs.astype(dtype)
    ys = ys.astype(jnp.int32)
    prev1 = _prev_rows_index(ys)
    x_sq = jnp.sum(xs * xs, axis=-1)
    hi = jax.lax.Precision.HIGHEST

    def position(w, inp):
        prev1, y, c = inp
        logits = jnp.matmul(xs, w.W1, precision=hi) + _prev_rows(w.W2)[prev1]
        r = jax.nn.one_hot(y, k, dtype=dtype) - jax.nn.softmax(logits, axis=-1)
        sq = (x_sq + (prev1 > 0)) * jnp.sum(r * r, axis=-1)
        s = (adaptive_scale(sq, c) / B)[:, None] * r
        rows = jax.nn.one_hot(prev1 - 1, k, dtype=dtype)  # START (−1) adds to no row
        return w._replace(W1=w.W1 + jnp.matmul(xs.T, s, precision=hi),
                          W2=w.W2 + jnp.matmul(rows.T, s, precision=hi)), None

    return jax.lax.scan(position, w, (prev1.T, ys.T, jnp.asarray(coef, dtype).T))[0]


def _table_argmax(base, rows) -> jax.Array:
    """``argmax_y (base[y] + rows[j, y])`` for every row ``j`` (first maximum on ties),
    int32 ``(rows.shape[0],)``. For small ``k`` an unrolled running maximum over ``y``
    whose terms are formed on the fly: the ``(k + 1, k)`` table is never stored (XLA's
    variadic argmax reduction is an order of magnitude slower on CPU, and a stored
    table falls out of cache once a seed sweep vmaps over it)."""
    k = base.shape[-1]
    if k > _ARGMAX_UNROLL_MAX_K:
        return jnp.argmax(base[None, :] + rows, axis=-1).astype(jnp.int32)
    best = base[0] + rows[:, 0]
    arg = jnp.zeros(best.shape, jnp.int32)
    for y in range(1, k):
        v = base[y] + rows[:, y]
        better = v > best
        best = jnp.where(better, v, best)
        arg = jnp.where(better, jnp.int32(y), arg)
    return arg


def teacher_response(A: Float[Array, "k d"], B: Float[Array, "k k"], x: Float[Array, "d"], N: int) -> Int[Array, "N"]:
    """``y*(x)`` of PAPER.md §1 (a drop-in for :func:`lpg.tasks.teacher_response`):
    the next correct token for every previous one is tabulated first,
    ``next[j] = argmax_y (A x + B[:, j])_y``, then the chain is followed by gathers."""
    nxt = _table_argmax(A @ x, _prev_rows(B.T))  # (k + 1,): row j+1 is A x + B[:, j]

    def body(prev, _):
        tok = nxt[prev + 1]
        return tok, tok

    _, ys = jax.lax.scan(body, jnp.asarray(START, jnp.int32), None, length=N, unroll=min(_UNROLL, N))
    return ys


def bigram_token_log_probs(w, x: Float[Array, "d"], y: Int[Array, "N"], length=None) -> Float[Array, "N"]:
    """``log p_w(y_i | x, y_<i)`` (``(N,)``, 0 at padding) from a ``(k + 1)``-row
    log-normaliser table: ``(k + 1)·k`` exponentials instead of ``N·k``."""
    N = y.shape[0]
    code = x @ w.W1
    logits = code[None, :] + _prev_rows(w.W2)
    log_z = jax.nn.logsumexp(logits, axis=-1)  # (k + 1,)
    y = y.astype(jnp.int32)
    prev1 = _prev_rows_index(y)
    lp = logits[prev1, y] - log_z[prev1]
    return jnp.where(jnp.arange(N) < (N if length is None else length), lp, 0.0)
