"""Policy gradient with any reward, advantage and behaviour policy (PAPER.md §3).

``w += η_t · mean_j A_j ρ_j ∇ log p_w(y_j|x_j)`` with ``y_j ~ q_t``, where the reward
(:mod:`lpg.rewards`) is one verdict per response — the outcome reward — or one per
prefix — the process reward, whose loss is ``−Σ_i r_i log p_w(y_i | x, y_<i)`` with
``r_i`` the prefix reward itself (not reward-to-go). The advantage ``A``
(:mod:`lpg.advantages`) is the reward or a baselined version of it; the behaviour ``q_t``
(:mod:`lpg.behaviours`) is ``p_w`` (on-policy), ``q0`` or ``½q0 + ½Unif(Y^N)``, with an
optional importance ratio ``ρ = p_w/q_t`` clipped to ``[1/ζ, ζ]`` (``ζ`` traced, in
:class:`~lpg.algorithms.base.Hyper`). A batch is ``batch_size`` contexts ×
``group_size`` samples each.

Two simulation paths (PAPER.md §6). With 0/1 rewards and no baseline an update only
ever happens on ``y*`` itself, so the event path draws the success events with their
exact probabilities (teacher-forced, no token loop; the law is the reward's,
:meth:`lpg.rewards.AbstractReward.event`). It has the same law as the sampled path
(proved in tests). ±1 rewards, baselines and rewards without an event path sample.

The step (``step_unit``, with the adaptive step and ``loss_norm="sequence"``). Write the
update's coefficients ``c_{j,i} = A_j ρ_j`` (outcome reward, the same at every real
position ``i`` of sample ``j``) or ``A_{j,i} ρ_j`` (process reward), over the ``B·G``
samples of the batch. ``"response"`` (default, PAPER.md §3): one adaptive step on
``g = Σ_{j,i} c_{j,i} ∇ log p_w(y_{j,i}|x_j, y_{j,<i})/(B·G)``, the whole batch's
gradient. ``"token"``: for each position ``i = 1..N`` in order,
``w += Σ_j c_{j,i}·g_{j,i}/(4 + 2‖g_{j,i}‖²)/(B·G)`` with ``g_{j,i} = ∇ log
p_w(y_{j,i}|x_j, y_{j,<i})`` at the weights position ``i − 1`` left — every rewarded token
its own adaptive step, weighted by its coefficient (a sign for ±1 rewards) and averaged
over the batch per position, as :class:`lpg.TokenBestOfM` does
(:meth:`~lpg.algorithms.base.AbstractAlgorithm.ascend_per_token`). A sample with
``c = 0`` adds nothing but still counts in the mean. On the event path the ``G``
samples of a group that succeed all update ``y*``, so the group's coefficients are
summed into one row of weight ``Σ_j c_j/G``: at each position those samples share one
gradient and a step is linear in its coefficient, so the update is the same.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lpg import _checks, advantages, behaviours, optim, rewards
from lpg.algorithms.base import AbstractAlgorithm, StepMetrics, step_unit_of, tree_norm
from lpg.behaviours import clipped_ratio
from lpg.policy import log_prob, position_mask, weighted_grad
from lpg.problem import Problem

LOSS_NORMS = ("sequence", "token")


class PolicyGradient(AbstractAlgorithm):
    """PG with a reward, an advantage and a behaviour policy; see the module docstring.

    ``reward``, ``advantage`` and ``behaviour`` are strategy objects (or the short names
    of the built-in ones: ``"outcome"``/``"process"``, ``"none"``/``"batch_mean"``/
    ``"rloo"``/``"grpo"``, ``"on_policy"``/``"base"``/``"mixture"``).
    ``loss_norm="sequence"`` follows ``mean_b Σ_i`` (the paper); ``"token"`` divides by
    the length as well (the authors' ``mean`` over batch and positions). ``event_path``:
    ``None`` takes the exact event path whenever the law allows it; ``True`` requires it,
    ``False`` samples. ``step_unit``: ``"response"`` (default) or ``"token"`` (adaptive step
    and sequence loss only), see the module docstring."""

    reward: rewards.AbstractReward
    advantage: advantages.AbstractAdvantage
    behaviour: behaviours.AbstractBehaviour
    importance: bool = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    group_size: int = eqx.field(static=True)
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    loss_norm: str = eqx.field(static=True)
    event_path: bool = eqx.field(static=True)
    step_unit: str = eqx.field(static=True)

    def __init__(
        self,
        reward: rewards.AbstractReward | str = "outcome",
        *,
        advantage: advantages.AbstractAdvantage | str = "none",
        behaviour: behaviours.AbstractBehaviour | str = "on_policy",
        importance: bool = False,
        batch_size: int = 1,
        group_size: int = 1,
        optimizer: str | optim.Factory = "adaptive",
        loss_norm: str = "sequence",
        event_path: bool | None = None,
        step_unit: str = "response",
    ):
        self.reward = rewards.by_name(reward)
        self.advantage = advantages.by_name(advantage)
        self.behaviour = behaviours.by_name(behaviour)
        self.importance = bool(importance)
        self.batch_size = _checks.int_at_least("batch_size", batch_size, 1)
        self.group_size = _checks.int_at_least("group_size", group_size, 1)
        self.optimizer = optim.make(optimizer)
        self.loss_norm = _checks.one_of("loss_norm", loss_norm, LOSS_NORMS)
        self.step_unit = step_unit_of(step_unit, optimizer, self.loss_norm)
        need = type(self.advantage).min_group_size
        if self.group_size < need:
            raise ValueError(f"group_size must be >= {need} for advantage {type(self.advantage).__name__}, "
                             f"got {group_size}")
        exact = self.exact_events_possible
        if event_path and not exact:
            raise ValueError(
                "event_path must be None or False here: the exact event path needs a reward that has one "
                "(0/1 outcome or process rewards), the advantage NoBaseline and, for per-token rewards off-policy, "
                f"importance=False; got reward={self.reward!r}, advantage={self.advantage!r}, importance={importance}"
            )
        self.event_path = exact if event_path is None else bool(event_path)

    @property
    def exact_events_possible(self) -> bool:
        """Whether the law of the update allows the exact event path (PAPER.md §6)."""
        off_policy_ratio = self.importance and not self.behaviour.on_policy
        return (self.reward.has_event_path and type(self.advantage).keeps_event_path
                and not (self.reward.per_token and off_policy_ratio))

    def step(self, state, key, problem: Problem, hyper):
        k_ctx, k_run = jax.random.split(key)
        xs, ys = problem.contexts(k_ctx, self.batch_size)
        draw = self._event if self.event_path else self._sample
        xg, yg, coef, queries, correct, outcome = draw(state.w, k_run, problem, xs, ys, hyper)
        norm = self.batch_size * self.group_size
        q = rewards.sum_counts(rewards.sum_counts(rewards.count(queries)))  # over samples, then contexts
        aux = {"zero_var": self._zero_var(outcome)}
        if self.step_unit == "token":  # ascend_per_token averages over the xg.shape[0] rows
            new, moved = self.ascend_per_token(state, problem, xg, yg, coef / (norm / xg.shape[0]), q)
            return new, StepMetrics(q, moved, jnp.mean(correct), aux)
        if self.loss_norm == "token":
            norm = norm * problem.length
        g = weighted_grad(problem.fmap, state.w, xg, yg, coef / norm, problem.length)
        metrics = StepMetrics(q, tree_norm(g), jnp.mean(correct), aux)
        return self.ascend(state, g, q), metrics

    # -- helpers ---------------------------------------------------------------------

    def _ratio(self, problem, w, x, y, hyper):
        if not self.importance:
            return jnp.ones(())
        lp = log_prob(problem.fmap, w, x, y, problem.length)
        return clipped_ratio(lp, self.behaviour.log_prob(problem, w, x, y), hyper.zeta)

    def _zero_var(self, per_sample):
        """Fraction of groups whose samples all got the same reward (nan without groups)."""
        if self.group_size < 2:
            return jnp.asarray(jnp.nan, jnp.float32)
        same = jnp.all(per_sample == per_sample[:, :1], axis=1)
        return jnp.mean(same.reshape(same.shape[0], -1).all(axis=-1).astype(jnp.float32))

    def _per_token(self, ratio):
        return ratio[..., None] if self.reward.per_token else ratio

    def _event(self, w, key, problem, xs, ys, hyper):
        ev = self.reward.event(key, self.behaviour, problem, w, xs, ys, self.group_size)
        ratio = jax.vmap(lambda x, y: self._ratio(problem, w, x, y, hyper))(xs, ys)
        coef = jnp.sum(ev.coef, axis=1) * self._per_token(ratio)
        return xs, ys, coef, ev.queries, ev.correct, ev.outcome

    def _sample(self, w, key, problem, xs, ys, hyper):
        B, G, N, length = self.batch_size, self.group_size, problem.N, problem.length
        keys = jax.random.split(key, B * G).reshape((B, G) + key.shape)
        draw = lambda x, kk: jax.vmap(lambda k1: self.behaviour.sample(problem, w, x, k1))(kk)  # noqa: E731
        y = jax.vmap(draw)(xs, keys)  # (B, G, N)

        def per_sample(f):
            one = lambda x, yy, s, kk: f(x, yy, s, jax.random.fold_in(kk, 1))  # noqa: E731
            return jax.vmap(lambda x, yb, s, kb: jax.vmap(lambda yy, kk: one(x, yy, s, kk))(yb, kb))(xs, y, ys, keys)

        correct = per_sample(lambda x, yy, s, kk: rewards.outcome_reward(yy, s, length) > 0)  # (B, G)
        r = per_sample(lambda x, yy, s, kk: self.reward(x, yy, s, length, key=kk))  # (B, G) or (B, G, N)
        queries = per_sample(lambda x, yy, s, kk: self.reward.queries(x, yy, s, length, key=kk))
        adv = self.advantage(r)
        if self.reward.per_token:
            adv = adv * position_mask(N, length)
        ratio = jax.vmap(lambda x, yb: jax.vmap(lambda yy: self._ratio(problem, w, x, yy, hyper))(yb))(xs, y)
        coef = adv * self._per_token(ratio)
        xg = jnp.repeat(xs, G, axis=0)
        flat = lambda a: a.reshape((B * G,) + a.shape[2:])  # noqa: E731
        return xg, flat(y), flat(coef), queries, correct, r
