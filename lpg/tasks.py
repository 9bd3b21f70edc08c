"""Tasks: context distributions, the correct response ``y*(x)``, margins and base models.

A task is an :class:`AbstractTask`: static ``N`` (the response length, ``N_max`` when
lengths vary), ``d`` (context dimension), ``k`` (vocabulary), and three pure methods
written for one example: ``sample_contexts(key, n) -> (n, d)``, ``response(x) -> (N,)``
and ``feature_map()``, the policy class the task is posed for.

* :class:`Teacher` — the paper's teacher (PAPER.md §1, paper §6) with Rademacher or
  Gaussian-mixture contexts; the mixture centres are the tracked set of Figure 1.
* :class:`PlantedTask` — the planted-margin family of :class:`lpg.features.PlantedShift`
  (exact margin ``γ`` at every ``N``), for the lower-bound regime of claims C3 and C6.
* :class:`WeightedPlantedTask` — a planted task whose contexts are drawn with integer
  weights instead of uniformly (the rare contexts of claim C8).
"""


import abc
import math

import equinox as eqx
from equinox import AbstractVar
import jax
import jax.numpy as jnp

from jaxtyping import Array, Float, Int, PRNGKeyArray

from lpg import _checks
from lpg.features import AbstractFeatureMap, Bigram, BigramParams, PlantedShift
from lpg.policy import START, log_prob, logits_table, position_mask

CONTEXTS = ("rademacher", "mixture")


class AbstractTask(eqx.Module):
    """A context distribution ``D`` with one correct response ``y*(x)`` per context
    (PAPER.md §1). ``N``, ``k`` and ``d`` are static; the methods are pure and written for
    one example (batch them with ``jax.vmap``)."""

    N: AbstractVar[int]  # response length (N_max when lengths vary)
    k: AbstractVar[int]  # vocabulary size
    d: AbstractVar[int]  # context dimension

    @abc.abstractmethod
    def sample_contexts(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """``n`` i.i.d. contexts from ``D``."""

    @abc.abstractmethod
    def response(self, x: Float[Array, "d"]) -> Int[Array, "N"]:
        """The correct response ``y*(x)`` (int32)."""

    @abc.abstractmethod
    def feature_map(self) -> AbstractFeatureMap:
        """The feature map of the policy class the task is posed for."""


def teacher_response(A, B, x, N: int) -> jax.Array:
    """``y*(x)`` of PAPER.md §1: ``y*_1 = argmax_y (A x)_y``,
    ``y*_i = argmax_y (A x + B[:, y*_{i-1}])_y``. ``A (k, d)``, ``B (k, k)``; returns
    int32 ``(N,)``."""
    N = _checks.int_at_least("N", N, 1)
    base = A @ x

    def body(prev, _):
        logits = base + jnp.where(prev >= 0, B[:, jnp.maximum(prev, 0)], 0.0)
        tok = jnp.argmax(logits).astype(jnp.int32)
        return tok, tok

    _, ys = jax.lax.scan(body, jnp.asarray(START, jnp.int32), None, length=N)
    return ys


def _normalise_to_sqrt_d(x):
    d = x.shape[-1]
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12) * math.sqrt(d)


def mixture_centres(n_centres: int, d: int) -> jax.Array:
    """The mixture centres ``e_1..e_M`` (index taken mod ``d``), rescaled to norm ``√d``."""
    idx = jnp.arange(n_centres) % d
    return _normalise_to_sqrt_d(jax.nn.one_hot(idx, d))


class Teacher(AbstractTask):
    """The paper's teacher task: ``A (k, d)``, ``B (k, k)`` with N(0, 1) entries.

    Contexts: ``"rademacher"`` (``x ∈ {±1}^d``) or ``"mixture"`` (one of ``M`` centres
    ``e_1..e_M`` plus isotropic noise of std ``σ`` clipped to norm ``≤ σ``, rescaled to
    norm ``√d``). The teacher is realisable by the bigram policy with
    ``W1 = Aᵀ, W2 = Bᵀ`` (:meth:`teacher_weights`).
    """

    A: jax.Array
    B: jax.Array
    N: int = eqx.field(static=True)
    context: str = eqx.field(static=True)
    n_centres: int = eqx.field(static=True)
    sigma: float = eqx.field(static=True)

    @property
    def k(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    @property
    def centres(self) -> jax.Array:
        """The mixture centres (the tracked set of Figure 1), ``(M, d)``."""
        return mixture_centres(self.n_centres, self.d)

    def sample_contexts(self, key, n: int) -> jax.Array:
        if self.context == "rademacher":
            return jax.random.rademacher(key, (n, self.d), dtype=jnp.float32)
        k_idx, k_eps = jax.random.split(key)
        idx = jax.random.randint(k_idx, (n,), 0, self.n_centres)
        means = jax.nn.one_hot(idx % self.d, self.d)
        eps = self.sigma * jax.random.normal(k_eps, (n, self.d))
        norms = jnp.maximum(jnp.linalg.norm(eps, axis=-1, keepdims=True), 1e-12)
        eps = eps * jnp.minimum(1.0, self.sigma / norms)
        return _normalise_to_sqrt_d(means + eps)

    def response(self, x) -> jax.Array:
        # y* is the greedy response of the teacher's own bigram weights; the bigram map's
        # argmax table gives exactly teacher_response's y* (tests/test_kernels.py).
        return self.feature_map().greedy(self.teacher_weights(), x, self.N)

    def teacher_weights(self) -> BigramParams:
        """Bigram weights that realise the teacher (``W1 = Aᵀ``, ``W2 = Bᵀ``)."""
        return BigramParams(self.A.T, self.B.T)

    def feature_map(self) -> Bigram:
        return Bigram(self.d, self.k)


def make_teacher(
    key, *, d: int, k: int, N: int, context: str = "rademacher", n_centres: int = 32, sigma: float = 0.05
) -> Teacher:
    """Draw the teacher of PAPER.md §1 (N(0, 1) entries). ``d >= 1``, ``k >= 2``, ``N >= 1``;
    for ``context="mixture"`` the centres are ``e_1..e_M``, so ``1 <= n_centres <= d``;
    ``sigma`` finite ``>= 0``."""
    d = _checks.int_at_least("d", d, 1)
    k = _checks.int_at_least("k", k, 2)
    N = _checks.int_at_least("N", N, 1)
    _checks.one_of("context", context, CONTEXTS)
    sigma = _checks.at_least("sigma", sigma, 0.0, finite=True)
    if context == "mixture":
        n_centres = _checks.int_in("n_centres", n_centres, 1, d, f" (at most d = {d}: the centres are e_1..e_M)")
    n_centres = _checks.int_at_least("n_centres", n_centres, 1)
    ka, kb = jax.random.split(key)
    A = jax.random.normal(ka, (k, d))
    B = jax.random.normal(kb, (k, k))
    return Teacher(A, B, N, context, n_centres, float(sigma))


class PlantedTask(AbstractTask):
    """Planted-margin task for :class:`~lpg.features.PlantedShift`: context ``c`` is
    ``e_c`` (uniform over ``S`` contexts) and ``y*_i(c) = i·δ_c mod k``. Its margin is
    exactly ``fmap.gamma`` for every ``N`` (see ``PlantedShift``)."""

    shifts: jax.Array
    fmap: PlantedShift
    N: int = eqx.field(static=True)

    @property
    def k(self) -> int:
        return self.fmap.k

    @property
    def d(self) -> int:
        return self.fmap.d

    @property
    def contexts(self) -> jax.Array:
        """All ``S`` contexts (one-hot rows)."""
        return jnp.eye(self.d)

    def sample_contexts(self, key, n: int) -> jax.Array:
        return jax.nn.one_hot(jax.random.randint(key, (n,), 0, self.d), self.d)

    def response(self, x) -> jax.Array:
        delta = self.shifts[jnp.argmax(x)]
        return ((jnp.arange(1, self.N + 1) * delta) % self.k).astype(jnp.int32)

    def planted_weights(self):
        return self.fmap.planted_weights(self.shifts)

    def weighted(self, log_weights) -> "WeightedPlantedTask":
        """This task with contexts drawn with weights ``exp(log_weights)``."""
        return WeightedPlantedTask(shifts=self.shifts, fmap=self.fmap, N=self.N, log_weights=log_weights)

    def feature_map(self) -> PlantedShift:
        return self.fmap


def make_planted(key, *, k: int, N: int, gamma: float, n_contexts: int | None = None) -> PlantedTask:
    """A planted-margin task with margin exactly ``gamma`` (in ``(0, 1]``); shifts ``δ_c``
    uniform in ``Y``. ``k >= 2``, ``N >= 1``; ``n_contexts`` at most ``k/((k-1)γ²)``
    (:class:`~lpg.features.PlantedShift`)."""
    N = _checks.int_at_least("N", N, 1)
    fmap = PlantedShift(k, gamma, n_contexts)
    shifts = jax.random.randint(key, (fmap.d,), 0, fmap.k).astype(jnp.int32)
    return PlantedTask(shifts=shifts, fmap=fmap, N=N)


class WeightedPlantedTask(PlantedTask):
    """A planted task whose contexts are drawn with integer weights ``m_c`` instead of
    uniformly (``log_weights = log m``); everything else is the planted task's. With
    integer weights the distribution is exactly ``Σ m_c`` equally likely atoms, so
    quantiles over the atoms are exact (claim C8's rare contexts)."""

    log_weights: Float[Array, "S"]

    def sample_contexts(self, key, n: int) -> jax.Array:
        idx = jax.random.categorical(key, self.log_weights, shape=(n,))
        return jax.nn.one_hot(idx, self.d)


# ---------------------------------------------------------------------------------
# Margins
# ---------------------------------------------------------------------------------


def feature_norm_bound(fmap: AbstractFeatureMap, xs) -> jax.Array:
    """``max ‖φ(x, prev, y)‖`` over the given contexts, every previous token (and
    ``START``) and every ``y`` — the ``R`` that normalises features to ``‖φ‖ ≤ 1``."""
    prevs = jnp.arange(-1, fmap.k)

    def per_context(x):
        feats = jax.vmap(lambda p: fmap.features(x, p))(prevs)
        return jnp.max(jnp.linalg.norm(feats, axis=-1))

    return jnp.max(jax.lax.map(per_context, xs))


def margin(fmap: AbstractFeatureMap, w_star, xs, ys, length=None) -> jax.Array:
    """The γ-margin of PAPER.md §1 achieved by ``w_star`` on a finite context set:
    ``min_{x, i, y ≠ y*_i} <w*, φ(x, y*_<i, y*_i) − φ(x, y*_<i, y)>`` with ``w*``
    rescaled to unit norm and, where :func:`feature_norm_bound` ``R > 1``, features
    divided by ``R`` so that ``‖φ‖ ≤ 1`` (features already inside the unit ball are kept
    as they are, as in the definition). Logits are linear in ``w``, so
    ``<w*, φ(·, y)>`` is the logit of ``y``."""
    flat = jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(w_star)])
    w_unit = jax.tree_util.tree_map(lambda a: a / jnp.linalg.norm(flat), w_star)
    n = ys.shape[-1]
    mask = position_mask(n, length)

    def per_context(x, y):
        lg = logits_table(fmap, w_unit, x, y)
        correct = jnp.take_along_axis(lg, y[:, None], axis=-1)[:, 0]
        wrong = jnp.where(jax.nn.one_hot(y, fmap.k, dtype=bool), -jnp.inf, lg)
        gaps = correct - jnp.max(wrong, axis=-1)
        return jnp.min(jnp.where(mask, gaps, jnp.inf))

    return jnp.min(jax.vmap(per_context)(xs, ys)) / jnp.maximum(feature_norm_bound(fmap, xs), 1.0)


def teacher_margin(task: Teacher, xs) -> jax.Array:
    """Margin of the teacher's own weights (``w* ∝ (Aᵀ, Bᵀ)``) on contexts ``xs``."""
    ys = jax.vmap(task.response)(xs)
    return margin(task.feature_map(), task.teacher_weights(), xs, ys)


# ---------------------------------------------------------------------------------
# Base models q0
# ---------------------------------------------------------------------------------


def uniform_base(fmap: AbstractFeatureMap):
    """Zero weights: the uniform policy, ``q0(y*|x) = k^-N`` (so ``α = k^-N``)."""
    return fmap.init_params()


def planted_alpha_base(task: PlantedTask, alpha=None, *, log_alpha=None) -> jax.Array:
    """Base weights putting likelihood exactly ``alpha`` on ``y*(c)`` for every context
    (``alpha`` a scalar or one value per context, each in (0, 1)). Give ``log_alpha``
    (``< 0``) instead for likelihoods below float32's range, e.g. ``32^-128``.

    Row ``c`` is ``t_c·w*_c``; every position then has the same correct-token
    probability ``p = e^{γ t}/(e^{γ t} + k − 1)`` and ``p^N = α`` gives
    ``γ t = log((k−1) α^{1/N} / (1 − α^{1/N}))`` (negative when ``α < k^-N``),
    computed from ``log α``."""
    if (alpha is None) == (log_alpha is None):
        raise ValueError(f"give exactly one of alpha and log_alpha, got alpha={alpha!r}, log_alpha={log_alpha!r}")
    name, value = ("alpha", alpha) if log_alpha is None else ("log_alpha", log_alpha)
    value = jnp.asarray(value, jnp.float32)
    if not isinstance(value, jax.core.Tracer):
        import numpy as np

        a = np.asarray(value)
        if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != task.d):
            raise ValueError(f"{name} must be a scalar or have shape ({task.d},), got shape {a.shape}")
        ok = (a > 0) & (a < 1) if log_alpha is None else (a < 0)
        if not np.all(ok):
            allowed = "lie in (0, 1)" if log_alpha is None else "be < 0"
            raise ValueError(f"{name} must {allowed}, got {a!r}")
    log_a = jnp.log(value) if log_alpha is None else value
    log_p = log_a / task.N
    gamma_t = jnp.log(task.k - 1.0) + log_p - jnp.log(-jnp.expm1(log_p))
    t = jnp.broadcast_to(gamma_t / task.fmap.gamma, (task.d,))
    return task.planted_weights() * t[:, None]


def log_alpha_planted_base(task: PlantedTask, w0) -> jax.Array:
    """``log q0(y*(c)|c)`` for every context of a planted task: ``(S,)``."""
    ys = jax.vmap(task.response)(task.contexts)
    return jax.vmap(lambda x, y: log_prob(task.fmap, w0, x, y))(task.contexts, ys)


def alpha_base(fmap: AbstractFeatureMap, w_star, xs, ys, alpha, *, iters: int = 100):
    """Base weights ``t·w*`` whose mean log-likelihood of ``y*`` over the contexts
    ``xs`` equals ``log alpha`` (exact for a single context; for the planted family
    :func:`planted_alpha_base` is exact for every context). ``t`` is found by bisection
    on ``[-T, T]``; the mean log-likelihood is monotone in ``t`` along the max-margin
    direction."""
    _checks.in_open("alpha", alpha, 0.0, 1.0)
    target = jnp.log(jnp.asarray(alpha, jnp.float32))

    def mean_ll(t):
        w = jax.tree_util.tree_map(lambda a: t * a, w_star)
        return jnp.mean(jax.vmap(lambda x, y: log_prob(fmap, w, x, y))(xs, ys))

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        up = mean_ll(mid) < target
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.float32(-1e4), jnp.float32(1e4)))
    t = 0.5 * (lo + hi)
    return jax.tree_util.tree_map(lambda a: t * a, w_star)
