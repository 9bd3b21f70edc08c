"""Policy gradient with outcome or process rewards (PAPER.md §3).

* Outcome reward: ``w += η_t · mean_j A_j ρ_j ∇ log p_w(y_j|x_j)``, ``y_j ~ q_t``.
* Process reward: loss ``−Σ_i r_i log p_w(y_i | x, y_<i)`` with ``r_i`` the prefix
  reward itself (not reward-to-go).

Behaviour ``q_t``: on-policy (``p_w``), the frozen base ``q0``, or ``½q0 + ½Unif(Y^N)``.
Optional importance ratio ``ρ = p_w/q_t`` clipped to ``[1/ζ, ζ]`` (``ζ`` traced, in
:class:`~lpg.algorithms.common.Hyper`). Advantages: ``none`` (the reward), ``batch_mean``
(the authors' baseline: batch mean, per position for process rewards), ``rloo``
(leave-one-out mean of the group) and ``grpo`` (group-normalised). A batch is
``batch_size`` contexts × ``group_size`` samples each.

Two simulation paths (PAPER.md §6). With 0/1 rewards and no baseline an update only
ever happens on ``y*`` itself, so the ``event`` path draws the success events with their
exact probabilities (teacher-forced, no token loop): ORM success ``~ Bernoulli(q(y*|x))``;
PRM correct-prefix length with ``P(L ≥ i) = Π_{j≤i} q(y*_j|x, y*_<j)``. It has the same
law as the ``sample`` path (proved in tests). ±1 rewards and baselines need failed
samples, so they always sample.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from lpg import _checks
from lpg.algorithms import common
from lpg.algorithms.common import BEHAVIOURS, OPTIMIZERS, Problem, StepMetrics
from lpg.policy import log_prob, position_mask, token_log_probs
from lpg.rewards import correct_prefix_length, leading_true, log_count, outcome_reward, prefix_rewards, process_queries

REWARDS = ("outcome", "process")
BASELINES = ("none", "batch_mean", "rloo", "grpo")
PATHS = ("auto", "event", "sample")
LOSS_NORMS = ("sequence", "token")


class PolicyGradient(eqx.Module):
    """PG with an outcome or a process reward; see the module docstring.

    ``loss_norm="sequence"`` follows ``mean_b Σ_i`` (the paper); ``"token"`` divides by
    the length as well (the authors' ``mean`` over batch and positions)."""

    reward: str = eqx.field(static=True)
    signed: bool = eqx.field(static=True)
    behaviour: str = eqx.field(static=True)
    importance: bool = eqx.field(static=True)
    baseline: str = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    group_size: int = eqx.field(static=True)
    optimizer: str = eqx.field(static=True)
    loss_norm: str = eqx.field(static=True)
    path: str = eqx.field(static=True)

    def __init__(
        self,
        reward: str = "outcome",
        *,
        signed: bool = False,
        behaviour: str = "on_policy",
        importance: bool = False,
        baseline: str = "none",
        batch_size: int = 1,
        group_size: int = 1,
        optimizer: str = "adaptive",
        loss_norm: str = "sequence",
        path: str = "auto",
    ):
        self.reward = _checks.one_of("reward", reward, REWARDS)
        self.signed = bool(signed)
        self.behaviour = _checks.one_of("behaviour", behaviour, BEHAVIOURS)
        self.importance = bool(importance)
        self.baseline = _checks.one_of("baseline", baseline, BASELINES)
        self.batch_size = _checks.int_at_least("batch_size", batch_size, 1)
        self.group_size = _checks.int_at_least("group_size", group_size, 1)
        self.optimizer = _checks.one_of("optimizer", optimizer, OPTIMIZERS)
        self.loss_norm = _checks.one_of("loss_norm", loss_norm, LOSS_NORMS)
        _checks.one_of("path", path, PATHS)
        if baseline in ("rloo", "grpo") and group_size < 2:
            raise ValueError(f"group_size must be >= 2 for baseline={baseline!r}, got {group_size}")
        event_ok = self.event_path_valid
        if path == "event" and not event_ok:
            raise ValueError(
                "path must be 'sample' or 'auto' here: the event path needs 0/1 rewards "
                "(signed=False), baseline='none' and, for process rewards off-policy, importance=False; "
                f"got path='event' with signed={signed}, baseline={baseline!r}, importance={importance}"
            )
        self.path = ("event" if event_ok else "sample") if path == "auto" else path

    @property
    def event_path_valid(self) -> bool:
        off_policy_ratio = self.importance and self.behaviour != "on_policy"
        return (not self.signed) and self.baseline == "none" and not (self.reward == "process" and off_policy_ratio)

    def init(self, w0, hyper):
        return common.init_state(w0, self.optimizer, hyper)

    def step(self, state, key, problem: Problem, hyper):
        k_ctx, k_run = jax.random.split(key)
        xs, ys = problem.contexts(k_ctx, self.batch_size)
        if self.path == "event":
            xg, yg, coef, log_q, success, zero_var = self._event(state.w, k_run, problem, xs, ys, hyper)
        else:
            xg, yg, coef, log_q, success, zero_var = self._sample(state.w, k_run, problem, xs, ys, hyper)
        norm = self.batch_size * self.group_size
        if self.loss_norm == "token":
            norm = norm * problem.length
        g = common.weighted_grad(problem.fmap, state.w, xg, yg, coef / norm, problem.length)
        new = common.apply_ascent(state, g, self.optimizer, log_q)
        return new, StepMetrics(log_q, common.tree_norm(g), success, zero_var)

    # -- helpers ---------------------------------------------------------------------

    def _ratio(self, problem, w, x, y, hyper):
        if not self.importance:
            return jnp.ones(())
        lp = log_prob(problem.fmap, w, x, y, problem.length)
        lq = common.behaviour_log_prob(self.behaviour, problem, w, x, y)
        return common.clipped_ratio(lp, lq, hyper.zeta)

    def _zero_var(self, per_sample):
        """Fraction of groups whose samples all got the same reward (nan without groups)."""
        if self.group_size < 2:
            return jnp.asarray(jnp.nan, jnp.float32)
        same = jnp.all(per_sample == per_sample[:, :1], axis=1)
        return jnp.mean(same.reshape(same.shape[0], -1).all(axis=-1).astype(jnp.float32))

    def _event(self, w, key, problem, xs, ys, hyper):
        B, G, N = self.batch_size, self.group_size, problem.N
        length = problem.length
        if self.reward == "outcome":
            log_q = jax.vmap(lambda x, y: common.behaviour_log_prob(self.behaviour, problem, w, x, y))(xs, ys)
            succ = jnp.log(jax.random.uniform(key, (B, G))) < log_q[:, None]
            ratio = jax.vmap(lambda x, y: self._ratio(problem, w, x, y, hyper))(xs, ys)
            coef = jnp.sum(succ, axis=1) * ratio
            return xs, ys, coef, log_count(B * G), jnp.mean(succ), self._zero_var(succ)
        k_coin, k_u = jax.random.split(key)
        tlp = self._behaviour_token_log_probs(problem, w, xs, ys, k_coin)  # (B, G, N)
        L = leading_true(jnp.log(jax.random.uniform(k_u, (B, G, N))) < tlp, length)  # (B, G)
        coef = jnp.sum(jnp.arange(N) < L[..., None], axis=1).astype(jnp.float32)  # (B, N)
        log_q = jnp.log(jnp.sum(process_queries(L, length)).astype(jnp.float32))
        return xs, ys, coef, log_q, jnp.mean(L == length), self._zero_var(L)

    def _behaviour_token_log_probs(self, problem, w, xs, ys, key):
        """Per-token log-probabilities of ``y*`` under the behaviour, one row per sample."""
        B, G = self.batch_size, self.group_size
        tl = lambda v: jax.vmap(lambda x, y: token_log_probs(problem.fmap, v, x, y))(xs, ys)  # noqa: E731
        if self.behaviour == "on_policy":
            out = tl(w)[:, None]
        else:
            out = tl(problem.base_weights())[:, None]
            if self.behaviour == "mixture":
                coin = jax.random.bernoulli(key, 0.5, (B, G, 1))
                out = jnp.where(coin, -jnp.log(float(problem.k)), out)
        return jnp.broadcast_to(out, (B, G, problem.N))

    def _sample(self, w, key, problem, xs, ys, hyper):
        B, G, N = self.batch_size, self.group_size, problem.N
        length = problem.length
        keys = jax.random.split(key, B * G).reshape((B, G) + key.shape)
        draw = lambda x, kk: jax.vmap(lambda k1: common.behaviour_sample(self.behaviour, problem, w, x, k1))(kk)  # noqa: E731
        y = jax.vmap(draw)(xs, keys)  # (B, G, N)
        per = lambda f: jax.vmap(lambda yb, ysb: jax.vmap(lambda yy: f(yy, ysb))(yb))(y, ys)  # noqa: E731
        full = per(lambda yy, s: outcome_reward(yy, s, length, False))  # (B, G) 0/1
        ratio = jax.vmap(lambda x, yb: jax.vmap(lambda yy: self._ratio(problem, w, x, yy, hyper))(yb))(xs, y)
        if self.reward == "outcome":
            r = per(lambda yy, s: outcome_reward(yy, s, length, self.signed))
            adv = self._advantage(r, axis_batch=(0, 1))
            coef = adv * ratio
            log_q = log_count(B * G)
            zero_var = self._zero_var(r)
        else:
            L = per(lambda yy, s: correct_prefix_length(yy, s, length))  # (B, G)
            r = jax.vmap(jax.vmap(lambda n: prefix_rewards(n, N, length, self.signed)))(L)  # (B, G, N)
            adv = self._advantage(r, axis_batch=(0, 1)) * position_mask(N, length)
            coef = adv * ratio[..., None]
            log_q = jnp.log(jnp.sum(process_queries(L, length)).astype(jnp.float32))
            zero_var = self._zero_var(L)
        xg = jnp.repeat(xs, G, axis=0)
        flat = lambda a: a.reshape((B * G,) + a.shape[2:])  # noqa: E731
        return xg, flat(y), flat(coef), log_q, jnp.mean(full), zero_var

    def _advantage(self, r, axis_batch):
        """Advantages from rewards ``r`` of shape ``(B, G)`` or ``(B, G, N)``."""
        if self.baseline == "none":
            return r
        if self.baseline == "batch_mean":
            return r - jnp.mean(r, axis=axis_batch, keepdims=True)
        G = self.group_size
        total = jnp.sum(r, axis=1, keepdims=True)
        if self.baseline == "rloo":
            return r - (total - r) / (G - 1)
        mean = total / G
        std = jnp.sqrt(jnp.mean((r - mean) ** 2, axis=1, keepdims=True))
        return (r - mean) / (std + 1e-8)
