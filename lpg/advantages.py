"""Advantages (baselines) of policy gradient, as in LLM practice (PAPER.md §3).

An advantage turns the rewards of a batch into the coefficients of
``∇ log p_w(y|x)``. Rewards arrive with shape ``(B, G)`` (one per response) or
``(B, G, N)`` (one per position), ``B`` contexts × ``G`` samples each. Built in:
:class:`NoBaseline` (the reward itself), :class:`BatchMean` (the authors' baseline: the
batch mean, per position for process rewards), :class:`RLOO` (leave-one-out mean of the
group) and :class:`GRPO` (group-normalised). Only :class:`NoBaseline` keeps the exact
event path of 0/1 rewards (the others need failed samples). A new estimator subclasses
:class:`AbstractAdvantage` outside lpg.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from lpg import _checks

__all__ = ["GRPO", "RLOO", "AbstractAdvantage", "BatchMean", "NoBaseline", "by_name"]


class AbstractAdvantage(eqx.Module):
    """``min_group_size`` (class attribute): the smallest group the estimator is defined
    for; ``keeps_event_path``: whether the advantage is the reward itself, so that 0/1
    rewards keep their exact event path."""

    min_group_size: ClassVar[int] = 1
    keeps_event_path: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, r: Float[Array, "B G *e"]) -> Float[Array, "B G *e"]:
        """Advantages of rewards ``r``."""


class NoBaseline(AbstractAdvantage):
    """The reward itself (REINFORCE)."""

    keeps_event_path: ClassVar[bool] = True

    def __call__(self, r):
        return r


class BatchMean(AbstractAdvantage):
    """The reward minus its mean over the batch (all ``B·G`` samples; per position for a
    per-token reward) — the authors' ORM baseline."""

    def __call__(self, r):
        return r - jnp.mean(r, axis=(0, 1), keepdims=True)


class RLOO(AbstractAdvantage):
    """The reward minus the mean of the other ``G − 1`` samples of its group."""

    min_group_size: ClassVar[int] = 2

    def __call__(self, r):
        G = r.shape[1]
        total = jnp.sum(r, axis=1, keepdims=True)
        return r - (total - r) / (G - 1)


class GRPO(AbstractAdvantage):
    """Group-normalised ``(r − mean_G r)/(std_G r + ε)`` (GRPO)."""

    min_group_size: ClassVar[int] = 2
    eps: float = eqx.field(default=1e-8, static=True)

    def __call__(self, r):
        G = r.shape[1]
        mean = jnp.sum(r, axis=1, keepdims=True) / G
        std = jnp.sqrt(jnp.mean((r - mean) ** 2, axis=1, keepdims=True))
        return (r - mean) / (std + self.eps)


ADVANTAGES = {"none": NoBaseline, "batch_mean": BatchMean, "rloo": RLOO, "grpo": GRPO}
"""Short names of the built-in advantages (the CLI's and the convenience spellings)."""


def by_name(spec: str | AbstractAdvantage) -> AbstractAdvantage:
    """The advantage object for ``spec`` (a name of :data:`ADVANTAGES` or an object)."""
    return _checks.strategy("advantage", spec, ADVANTAGES, AbstractAdvantage)
