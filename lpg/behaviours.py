"""Behaviour policies ``q_t``: where policy gradient's samples come from (PAPER.md §3).

A behaviour is an :class:`AbstractBehaviour`; it draws a response, gives the
teacher-forced log-probability of one, and — for the exact event path of the process
reward (PAPER.md §6) — the per-token log-probabilities of ``y*`` along one draw of its
mixture component. Built in: :class:`OnPolicy` (``p_w`` itself), :class:`Base` (the
frozen base model ``q0``) and :class:`Mixture` (``½q0 + ½Unif(Y^N)``, Algorithm 1's
fallback). A new behaviour subclasses :class:`AbstractBehaviour` outside lpg.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from lpg import _checks
from lpg.policy import log_prob, sample, sample_from_logits, token_log_probs

__all__ = ["AbstractBehaviour", "Base", "Mixture", "OnPolicy", "by_name", "clipped_ratio", "mixture_log_prob"]


class AbstractBehaviour(eqx.Module):
    """A behaviour policy; ``problem`` gives the base model and the response length,
    ``w`` the current weights."""

    @property
    def on_policy(self) -> bool:
        """Whether this is ``p_w`` itself (an importance ratio is then exactly 1)."""
        return False

    @abc.abstractmethod
    def sample(self, problem, w: PyTree, x: Float[Array, "d"], key: PRNGKeyArray) -> Int[Array, "N"]:
        """One response for context ``x``."""

    @abc.abstractmethod
    def log_prob(self, problem, w: PyTree, x: Float[Array, "d"], y: Int[Array, "N"]) -> Float[Array, ""]:
        """``log q(y|x)`` (teacher-forced)."""

    def star_token_log_probs(self, problem, w: PyTree, xs: Float[Array, "B d"], ys: Int[Array, "B N"],
                             key: PRNGKeyArray, group_size: int) -> Float[Array, "B G N"]:
        """``log q(y*_i | x, y*_<i)`` along one draw of the behaviour for each of the
        ``G`` samples of each context, so that ``P(L ≥ i) = Π_{j≤i} q(y*_j|·)`` is the
        law of a sample's correct-prefix length (the process reward's event path).
        The default evaluates the policy returned by :meth:`token_policy`."""
        tl = jax.vmap(lambda x, y: token_log_probs(problem.fmap, self.token_policy(problem, w), x, y))(xs, ys)
        return jnp.broadcast_to(tl[:, None], (xs.shape[0], group_size, problem.N))

    def token_policy(self, problem, w: PyTree) -> PyTree:
        """Weights of the policy whose token probabilities :meth:`star_token_log_probs`
        uses; behaviours that are not one linear policy override that method instead."""
        raise NotImplementedError(f"{type(self).__name__} has no per-token law for the event path")


class OnPolicy(AbstractBehaviour):
    """``q_t = p_w``: the current policy."""

    @property
    def on_policy(self) -> bool:
        return True

    def sample(self, problem, w, x, key):
        return sample(problem.fmap, w, x, problem.N, key=key)

    def log_prob(self, problem, w, x, y):
        return log_prob(problem.fmap, w, x, y, problem.length)

    def token_policy(self, problem, w):
        return w


class Base(AbstractBehaviour):
    """``q_t = q0``: the frozen base model."""

    def sample(self, problem, w, x, key):
        return sample(problem.fmap, problem.base_weights(), x, problem.N, key=key)

    def log_prob(self, problem, w, x, y):
        return log_prob(problem.fmap, problem.base_weights(), x, y, problem.length)

    def token_policy(self, problem, w):
        return problem.base_weights()


def mixture_log_prob(log_q0, log_size):
    """``log(½ q0 + ½ / size)`` with ``log_size = log |support|`` (``N log k`` or ``log k``)."""
    return jnp.logaddexp(log_q0, -log_size) - jnp.log(2.0)


def mixture_token(logits0: Float[Array, "k"], keys) -> Int[Array, ""]:
    """One candidate token of ``½q0(·|x, y_<i) + ½Unif(Y)`` (Algorithm 2's fallback at one
    position), ``logits0`` the base model's logits there; ``keys``: three keys, for the
    draw from ``q0``, the uniform token and the coin."""
    ka, kb, kc = keys
    from_q0 = sample_from_logits(logits0, jax.random.uniform(ka))
    unif = jax.random.randint(kb, (), 0, logits0.shape[-1])
    return jnp.where(jax.random.bernoulli(kc), unif, from_q0)


class Mixture(AbstractBehaviour):
    """``q_t = ½q0 + ½Unif(Y^N)``: a fair coin per response picks the base model or a
    uniform response (Algorithm 1's fallback, PAPER.md §3)."""

    def sample(self, problem, w, x, key):
        fmap, n = problem.fmap, problem.N
        k1, k2, k3 = jax.random.split(key, 3)
        from_base = sample(fmap, problem.base_weights(), x, n, key=k1)
        unif = jax.random.randint(k2, (n,), 0, fmap.k).astype(jnp.int32)
        return jnp.where(jax.random.bernoulli(k3), unif, from_base)

    def log_prob(self, problem, w, x, y):
        lq0 = log_prob(problem.fmap, problem.base_weights(), x, y, problem.length)
        return mixture_log_prob(lq0, problem.length * jnp.log(float(problem.k)))

    def star_token_log_probs(self, problem, w, xs, ys, key, group_size):
        B = xs.shape[0]
        out = Base().star_token_log_probs(problem, w, xs, ys, key, 1)
        coin = jax.random.bernoulli(key, 0.5, (B, group_size, 1))
        out = jnp.where(coin, -jnp.log(float(problem.k)), out)
        return jnp.broadcast_to(out, (B, group_size, problem.N))


def clipped_ratio(log_p, log_q, zeta) -> Float[Array, "*b"]:
    """Importance ratio ``p/q`` clipped to ``[1/ζ, ζ]`` (``ζ = inf``: unclipped)."""
    log_zeta = jnp.log(zeta)
    return jnp.exp(jnp.clip(log_p - log_q, -log_zeta, log_zeta))


BEHAVIOURS = {"on_policy": OnPolicy, "base": Base, "mixture": Mixture}
"""Short names of the built-in behaviours (the CLI's and the convenience spellings)."""


def by_name(spec: str | AbstractBehaviour) -> AbstractBehaviour:
    """The behaviour object for ``spec`` (a name of :data:`BEHAVIOURS` or an object)."""
    return _checks.strategy("behaviour", spec, BEHAVIOURS, AbstractBehaviour)
