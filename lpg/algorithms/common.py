"""What every algorithm shares: the problem bundle, traced hyperparameters, state,
fixed-shape metrics, optimisers (the paper's adaptive step among them), behaviour
policies, the weighted policy gradient, and the scan-based training loop.

An algorithm is an ``eqx.Module`` whose fields are static settings (shape-deciding:
batch size, reward type, path…) with two pure methods::

    state = alg.init(w0, hyper)
    state, metrics = alg.step(state, key, problem, hyper)

``hyper`` (:class:`Hyper`) holds the traced settings — learning rate, ``log m``,
``ζ`` — so a sweep over them is a ``vmap``, not a recompile (optax's
``inject_hyperparams`` keeps the learning rate in the optimiser state).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lpg import _checks, kernels
from lpg.features import FeatureMap
from lpg.metrics import error, sequence_log_likelihoods
from lpg.policy import log_prob, sample, token_log_probs

# ---------------------------------------------------------------------------------
# Optimisers
# ---------------------------------------------------------------------------------


def adaptive_step(learning_rate: float = 1.0) -> optax.GradientTransformation:
    """The paper's adaptive step ``η_t = 1/(4 + 2‖g_t‖²)`` (PAPER.md §3; claim C1), as an
    optax transformation. Incoming ``updates`` are loss gradients ``−g``; the output is
    ``η_t·g`` (times ``learning_rate``, 1 in the paper)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        sq = optax.tree_utils.tree_norm(updates, squared=True)
        eta = learning_rate / (4.0 + 2.0 * sq)
        return jax.tree_util.tree_map(lambda u: -eta * u, updates), state

    return optax.GradientTransformation(init, update)


def _adagrad(learning_rate):
    # torch.optim.Adagrad's defaults (the authors' optimiser): no initial accumulator.
    return optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=1e-10)


OPTIMIZERS = {
    "adaptive": adaptive_step,
    "constant": optax.sgd,
    "adagrad": _adagrad,
    "adam": optax.adam,
}


def optimizer(name: str, learning_rate) -> optax.GradientTransformation:
    """An optimiser whose learning rate lives in its state (traced, sweepable)."""
    _checks.one_of("optimizer", name, OPTIMIZERS)
    return optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=learning_rate)


# ---------------------------------------------------------------------------------
# Problem, hyperparameters, state, metrics
# ---------------------------------------------------------------------------------


class Problem(eqx.Module):
    """Everything a run is about: the task, the policy's feature map, the base model
    ``q0`` (weights, or ``None`` for uniform), a fixed test set and a tracked set, and the
    real response length (``length <= task.N``; traced, so ``N`` can be swept)."""

    task: Any
    fmap: FeatureMap
    base: Any
    test_x: jax.Array
    test_y: jax.Array
    track_x: jax.Array
    track_y: jax.Array
    length: jax.Array

    @property
    def N(self) -> int:
        return self.task.N

    @property
    def k(self) -> int:
        return self.fmap.k

    def base_weights(self):
        return self.fmap.init_params() if self.base is None else self.base

    def contexts(self, key, n: int):
        """``n`` fresh contexts and their correct responses."""
        x = self.task.sample_contexts(key, n)
        return x, jax.vmap(self.task.response)(x)


def make_problem(task, *, key, fmap=None, base=None, n_test: int = 1024, track_x=None, length=None) -> Problem:
    """Bundle a task into a :class:`Problem` with a test set of ``n_test`` fresh contexts
    and a tracked set (``track_x``; by default the test set)."""
    n_test = _checks.int_at_least("n_test", n_test, 1)
    fmap = task.feature_map() if fmap is None else fmap
    if fmap.k != task.k:
        raise ValueError(f"fmap.k must equal the task's k={task.k}, got {fmap.k}")
    if base is not None:
        fmap.check_params(base)
    if length is None:
        length = task.N
    elif not isinstance(length, jax.core.Tracer):
        length = _checks.int_at_least("length", length, 1)
        if length > task.N:
            raise ValueError(f"length must be at most N={task.N}, got {length}")
    test_x = task.sample_contexts(key, n_test)
    test_y = jax.vmap(task.response)(test_x)
    if track_x is None:
        track_x, track_y = test_x, test_y
    else:
        track_y = jax.vmap(task.response)(track_x)
    return Problem(task, fmap, base, test_x, test_y, track_x, track_y, jnp.asarray(length, jnp.int32))


class Hyper(NamedTuple):
    """Traced hyperparameters (vmappable): learning rate, ``log m`` for best-of-m
    (``inf``: unbounded) and the importance-ratio clip ``ζ`` (``ratio ∈ [1/ζ, ζ]``)."""

    lr: Any = 1.0
    log_m: Any = math.inf
    zeta: Any = math.inf


def hyper(lr=1.0, m=None, log_m=None, zeta=math.inf) -> Hyper:
    """Validated :class:`Hyper`. Give ``m`` (a count ``>= 1``) or ``log_m``."""
    _checks.positive("lr", lr)
    if m is not None and log_m is not None:
        raise ValueError(f"give m or log_m, not both; got m={m!r}, log_m={log_m!r}")
    if m is not None:
        _checks.at_least("m", m, 1)
        log_m = math.log(m)
    if log_m is None:
        log_m = math.inf
    _checks.at_least("log_m", log_m, 0.0)
    _checks.at_least("zeta", zeta, 1.0)
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return Hyper(f(lr), f(log_m), f(zeta))


class TrainState(NamedTuple):
    w: Any
    opt_state: Any
    step: jax.Array
    log_queries: jax.Array  # cumulative reward queries, natural log
    mistakes: jax.Array  # cumulative Σ_t (1 − p_{w_t}(y*_t|x_t)) (online learning)


class StepMetrics(NamedTuple):
    """Fixed-shape per-step metrics."""

    log_queries: jax.Array  # reward queries this step (log)
    grad_norm: jax.Array  # ‖g_t‖ of the followed log-likelihood gradient
    success: jax.Array  # fraction of contexts that produced a verified success
    zero_var: jax.Array  # fraction of zero-variance groups (nan where no groups)


def init_state(w0, opt_name: str, hyper: Hyper) -> TrainState:
    opt = optimizer(opt_name, hyper.lr)
    z = jnp.zeros((), jnp.float32)
    return TrainState(w0, opt.init(w0), jnp.zeros((), jnp.int32), jnp.asarray(-jnp.inf, jnp.float32), z)


def apply_ascent(state: TrainState, g, opt_name: str, log_queries, mistakes=0.0) -> TrainState:
    """Follow the ascent direction ``g`` (a gradient of a log-likelihood objective)."""
    opt = optimizer(opt_name, 0.0)  # the learning rate is read from the state
    neg = jax.tree_util.tree_map(jnp.negative, g)
    updates, opt_state = opt.update(neg, state.opt_state, state.w)
    return TrainState(
        optax.apply_updates(state.w, updates),
        opt_state,
        state.step + 1,
        jnp.logaddexp(state.log_queries, log_queries),
        state.mistakes + mistakes,
    )


def tree_norm(g) -> jax.Array:
    return optax.tree_utils.tree_norm(g)


# ---------------------------------------------------------------------------------
# Gradients and behaviour policies
# ---------------------------------------------------------------------------------


def weighted_grad(fmap: FeatureMap, w, xs, ys, coef, length) -> Any:
    """``∇_w Σ_b c_b log p_w(y_b|x_b)`` (``coef (B,)``) or, per token,
    ``∇_w Σ_b Σ_i c_{b,i} log p_w(y_{b,i}|x_b, y_{b,<i})`` (``coef (B, N)``).

    The paper's :class:`~lpg.features.Bigram` map takes the closed form
    :func:`lpg.kernels.bigram_weighted_grad`; any other map the autodiff reference
    :func:`weighted_grad_reference` (they agree to float32 tolerance)."""
    coef = jax.lax.stop_gradient(coef)
    if kernels.fast_bigram(fmap):
        return kernels.bigram_weighted_grad(w, xs, ys, coef, length)
    return weighted_grad_reference(fmap, w, xs, ys, coef, length)


def weighted_grad_reference(fmap: FeatureMap, w, xs, ys, coef, length) -> Any:
    """The plain JAX path of :func:`weighted_grad`: autodiff through
    :func:`lpg.policy.token_log_probs`, for any feature map."""
    coef = jax.lax.stop_gradient(coef)

    def objective(w):
        tl = jax.vmap(lambda x, y: token_log_probs(fmap, w, x, y, length))(xs, ys)
        if coef.ndim == 1:
            return jnp.sum(coef * jnp.sum(tl, axis=-1))
        return jnp.sum(coef * tl)

    return jax.grad(objective)(w)


BEHAVIOURS = ("on_policy", "base", "mixture")
"""Behaviour policies: ``p_w`` itself, the frozen base ``q0``, and ``½q0 + ½Unif(Y^N)``."""


def behaviour_sample(kind: str, problem: Problem, w, x, key) -> jax.Array:
    """One response from the behaviour policy for context ``x``."""
    fmap, n = problem.fmap, problem.N
    if kind == "on_policy":
        return sample(fmap, w, x, n, key=key)
    if kind == "base":
        return sample(fmap, problem.base_weights(), x, n, key=key)
    k1, k2, k3 = jax.random.split(key, 3)
    from_base = sample(fmap, problem.base_weights(), x, n, key=k1)
    unif = jax.random.randint(k2, (n,), 0, fmap.k).astype(jnp.int32)
    return jnp.where(jax.random.bernoulli(k3), unif, from_base)


def behaviour_log_prob(kind: str, problem: Problem, w, x, y) -> jax.Array:
    """``log q(y|x)`` of the behaviour policy (teacher-forced)."""
    fmap, length = problem.fmap, problem.length
    if kind == "on_policy":
        return log_prob(fmap, w, x, y, length)
    lq0 = log_prob(fmap, problem.base_weights(), x, y, length)
    if kind == "base":
        return lq0
    return mixture_log_prob(lq0, length * jnp.log(float(fmap.k)))


def mixture_log_prob(log_q0, log_size) -> jax.Array:
    """``log(½ q0 + ½ / size)`` with ``log_size = log |support|`` (``N log k`` or ``log k``)."""
    return jnp.logaddexp(log_q0, -log_size) - jnp.log(2.0)


def clipped_ratio(log_p, log_q, zeta) -> jax.Array:
    """Importance ratio ``p/q`` clipped to ``[1/ζ, ζ]`` (``ζ = inf``: unclipped)."""
    log_zeta = jnp.log(zeta)
    return jnp.exp(jnp.clip(log_p - log_q, -log_zeta, log_zeta))


# ---------------------------------------------------------------------------------
# Evaluation and the training loop
# ---------------------------------------------------------------------------------


class Evaluation(NamedTuple):
    test_error: jax.Array  # err(w) on the test set
    track_log_lik: jax.Array  # log p_w(y*|x) of every tracked context


def evaluate(problem: Problem, w) -> Evaluation:
    fmap, length = problem.fmap, problem.length
    return Evaluation(
        error(fmap, w, problem.test_x, problem.test_y, length),
        sequence_log_likelihoods(fmap, w, problem.track_x, problem.track_y, length),
    )


class Curves(NamedTuple):
    """Metrics at the log points ``0, log_every, …, steps`` (``P + 1`` of them)."""

    step: jax.Array
    test_error: jax.Array
    track_log_lik: jax.Array  # (P + 1, n_track)
    log_queries: jax.Array  # cumulative
    mistakes: jax.Array  # cumulative
    grad_norm: jax.Array  # mean over the interval before the point (nan at 0)
    success: jax.Array  # mean over the interval
    zero_var: jax.Array  # mean over the interval


class TrainResult(NamedTuple):
    state: TrainState
    curves: Curves
    random_iterate: Any  # w_τ, τ uniform in {1..T} (the iterate the guarantees are for)
    random_eval: Evaluation


def train(alg, problem: Problem, hyper: Hyper, key, *, steps: int, log_every: int, w0=None) -> TrainResult:
    """Run ``steps`` steps of ``alg`` from ``w0`` (default: the base model, or zeros),
    logging every ``log_every`` steps. An outer ``lax.scan`` over log points wraps an
    inner one over steps, so memory grows with the number of log points only. Pure,
    jit- and vmap-able (``steps`` and ``log_every`` are static)."""
    steps = _checks.int_at_least("steps", steps, 1)
    log_every = _checks.int_at_least("log_every", log_every, 1)
    if steps % log_every:
        raise ValueError(f"log_every must divide steps={steps}, got {log_every}")
    if w0 is None:
        w0 = problem.base_weights()
    k_tau, k_run = jax.random.split(key)
    tau = jax.random.randint(k_tau, (), 1, steps + 1)
    state = alg.init(w0, hyper)

    def inner(carry, k):
        st, wr = carry
        st, m = alg.step(st, k, problem, hyper)
        wr = jax.tree_util.tree_map(lambda a, b: jnp.where(st.step == tau, a, b), st.w, wr)
        return (st, wr), m

    def outer(carry, k):
        carry, ms = jax.lax.scan(inner, carry, jax.random.split(k, log_every))
        st = carry[0]
        ev = evaluate(problem, st.w)
        means = [jnp.mean(v) for v in (ms.grad_norm, ms.success, ms.zero_var)]
        return carry, Curves(st.step, ev.test_error, ev.track_log_lik, st.log_queries, st.mistakes, *means)

    # The barrier stops XLA constant-folding the initial evaluation when problem and w0
    # are closed over by jit (~20 s of compile at the Figure-1 size).
    ev0 = evaluate(problem, jax.lax.optimization_barrier(state.w))
    nan = jnp.asarray(jnp.nan, jnp.float32)
    first = Curves(state.step, ev0.test_error, ev0.track_log_lik, state.log_queries, state.mistakes, nan, nan, nan)
    (state, w_rand), rest = jax.lax.scan(outer, (state, w0), jax.random.split(k_run, steps // log_every))
    curves = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return TrainResult(state, curves, w_rand, evaluate(problem, w_rand))
