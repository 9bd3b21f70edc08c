"""A reward defined outside lpg: a noisy outcome verifier that flips its verdict with
probability ρ, used with :class:`lpg.PolicyGradient`, :func:`lpg.train` and
:func:`lpg.sweep.sweep` without touching lpg.

A reward subclasses :class:`lpg.rewards.AbstractReward` and defines ``__call__`` (the
reward of a sampled response; the key makes a random verifier possible) and ``queries``
(verifier calls spent on it). It has no exact event path (``has_event_path`` is
``False`` by default), so policy gradient samples real responses. ``rho`` is an array
field, so a sweep over it is traced: one compiled program for every ρ.

With 0/1 rewards and no baseline, a flip probability ρ makes the expected update
``E[r ∇log p] = ρ·E[∇log p] + (1 − 2ρ)·p(y*)∇log p(y*) = (1 − 2ρ)·p(y*)∇log p(y*)``
(the score has mean zero): the same direction as the exact verifier, ``1 − 2ρ`` times as
long, plus noise — learning slows down by that factor and stops at ``ρ = ½``. The
script prints the final test error against ρ (``tests/test_examples.py`` runs it and
checks the expected update against exact enumeration).

    python examples/custom_reward.py [--tiny]
"""

import os
import sys

import equinox as eqx
import jax
import jax.numpy as jnp

import lpg
from lpg.sweep import sweep


class FlippedOutcome(lpg.rewards.AbstractReward):
    """The outcome verifier ``1[y = y*]`` with its verdict flipped with probability ``rho``
    (``±1`` when ``signed``); one query per response."""

    rho: jax.Array
    signed: bool = eqx.field(default=False, static=True)

    def __call__(self, x, y, y_star, length, *, key):
        correct = lpg.rewards.outcome_reward(y, y_star, length) > 0
        verdict = correct ^ jax.random.bernoulli(key, self.rho)
        return 2.0 * verdict - 1.0 if self.signed else verdict.astype(jnp.float32)

    def queries(self, x, y, y_star, length, *, key=None):
        return jnp.ones((), jnp.int32)


def make_run(problem, steps: int):
    """``run(key, rho)``: on-policy PG with the noisy verifier from the problem's base."""

    def run(key, rho):
        alg = lpg.PolicyGradient(FlippedOutcome(rho), batch_size=32, optimizer="adagrad")
        return lpg.train(alg, problem, lpg.hyper(lr=0.3), key, steps=steps, log_every=steps).curves

    return run


def main(tiny: bool) -> None:
    k_task, k_test, k_base = jax.random.split(jax.random.PRNGKey(0), 3)
    task = lpg.make_teacher(k_task, d=8, k=4, N=6)
    problem = lpg.make_problem(task, key=k_test, n_test=256)
    base = lpg.pretrain(problem, k_base, steps=30)
    problem = lpg.make_problem(task, key=k_test, n_test=256, base=base)
    rhos, steps, seeds = ([0.0, 0.2, 0.5], 20, 2) if tiny else ([0.0, 0.1, 0.2, 0.3, 0.5], 300, 8)
    res = sweep(make_run(problem, steps), {"rho": rhos}, seeds=seeds)  # every ρ × seed in one program
    start = float(res.outputs.test_error[0, 0])
    print(f"test error of the base model: {start:.3f}")
    for rho in rhos:
        final = res.outputs.test_error[res.settings["rho"] == jnp.float32(rho), -1]
        print(f"rho={rho:.2f}: final test error {final.mean():.3f} over {seeds} seeds")


if __name__ == "__main__":
    main(tiny="--tiny" in sys.argv or os.environ.get("LPG_TINY") == "1")
