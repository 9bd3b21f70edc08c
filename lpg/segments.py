"""Segments: a run's training loops cut into pieces a sweep saves between (issue 12).

A checkpointed sweep (:func:`lpg.sweep.sweep` with ``out_dir``) does not compute a chunk of
runs in one call: it calls one compiled program again and again, each call advancing every
run by at most a *budget* of steps, and saves the runs' loop states between calls, so that
an interrupted run (Ctrl-C, ``kill -9``, a lost node) loses at most one segment (about
``LPG_SEGMENT_S`` seconds of compute, 60 by default) and resumes from the last one saved.

The loops of lpg (:func:`lpg.train`, :func:`lpg.pretrain`, :func:`lpg.hitting.run_until`)
go through :func:`loop`: ``n`` blocks of a ``block(carry, i) -> (carry, y)`` function, the
``y`` stacked, optionally stopping at the first block after which ``stop(carry)`` holds.
Outside a segment (a plain call, a sweep without ``out_dir``) :func:`loop` is the loop the
caller gives it. Inside one, the ``i``-th :func:`loop` a run calls takes its state
(:class:`LoopState`: blocks done, carry, the ``y`` so far) from the segment's inputs, runs
blocks in a ``while_loop`` while the budget lasts, and hands its state out. A loop that has
not started takes the carry its caller computed (every run is traced whole in every
segment: what precedes a loop is recomputed, cheap next to the loops, and pure, so the
same). The budget counts steps (``steps_each`` per block) over the run's loops in their
order, a block is started whenever some budget is left, so every segment makes progress.

Why the split does not change a result: the blocks are the same computations in the same
compiled program whatever the budget (a traced argument), so a run cut into segments
anywhere, saved and resumed, ends bit-identical to the same run in one segment. A run
is finished when every loop is (its outputs are then the run's outputs).

The loops must be called at the run's top level (not under a ``vmap``, ``cond`` or loop
of the run's own). A run whose loops in a segment are not those it was planned with
(another number, or a state of another shape) raises :class:`Unsupported` while the
segment is traced, and the sweep then computes it in whole chunks (checkpoints per
chunk only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class LoopState(NamedTuple):
    """One loop of one run between segments."""

    pos: Any  # int32: blocks done
    carry: Any
    ys: Any  # the blocks' outputs, stacked (n, ...); rows from ``pos`` on not yet written


class Unsupported(ValueError):
    """A function whose loops cannot be cut into segments (see the module docstring)."""


class _Recording:
    def __init__(self):
        self.loops: list[tuple[LoopState, int, bool]] = []  # (shapes of the state, steps of the loop, shared)
        self.stops = False  # a loop that may stop early has been called


class _Segment:
    def __init__(self, states: list[LoopState], positions, budget):
        self.states = states
        self.positions = positions  # blocks done of the shared loops (the same for every run)
        self.budget = budget  # steps this run may still take in this segment (traced)
        self.out: list[LoopState] = []
        self.done = jnp.asarray(True)
        self.steps = jnp.asarray(0, jnp.int32)  # steps done so far, over every loop (as blocks done)


_CONTEXT = threading.local()


def _current():
    return getattr(_CONTEXT, "value", None)


def active() -> bool:
    """Whether a run is being planned or traced as a segment: its loops must then be
    traced in the run's own trace (not under a nested ``jax.jit``)."""
    return _current() is not None


@contextmanager
def _entered(value):
    before = _current()
    _CONTEXT.value = value
    try:
        yield value
    finally:
        _CONTEXT.value = before


def _shape_of(tree):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def loop(block: Callable, carry, n: int, *, steps_each: int, stop: Callable | None = None, plain: Callable):
    """``n`` blocks of ``block(carry, i) -> (carry, y)`` (``i`` the block's index), each
    ``steps_each`` steps of the run; ``stop(carry)`` (optional) ends the loop before its
    ``n`` blocks, checked before the first block and after each. Returns ``(carry, ys)``
    with ``ys`` the ``y`` of the blocks stacked (rows of blocks not run are zeros).

    ``plain()`` is the loop as its caller writes it, used outside a segment: it must
    compute what the blocks compute."""
    ctx = _current()
    if ctx is None:
        return plain()
    n, steps_each = int(n), int(steps_each)
    jaxpr, (_, y_shape) = jax.make_jaxpr(block, return_shape=True)(carry, jnp.int32(0))
    ys0 = jax.tree_util.tree_map(lambda s: jnp.zeros((n,) + s.shape, s.dtype), y_shape)
    fresh = LoopState(jnp.int32(0), carry, ys0)
    if isinstance(ctx, _Recording):
        ctx.stops |= stop is not None
        ctx.loops.append((_shape_of(fresh), n * steps_each, not ctx.stops))
        return plain()
    if len(ctx.out) >= len(ctx.states):
        raise Unsupported("a run calls more loops in a segment than when it was planned")
    stored = ctx.states[len(ctx.out)]
    if _shape_of(stored) != _shape_of(fresh):
        raise Unsupported("a loop's state changed shape between planning and a segment (a loop under a vmap?)")
    shared = ctx.positions[len(ctx.out)]
    stored = stored._replace(pos=stored.pos if shared is None else shared)
    started = stored.pos > 0
    # A value the blocks pass through unchanged (a learning rate) is taken from the caller, not
    # the stored state: under a vmap over runs the stored one is batched, and a batched copy
    # of a value the loop keeps unbatched outside a segment may be rounded differently by XLA.
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    invars, outvars = jaxpr.jaxpr.invars, jaxpr.jaxpr.outvars
    kept = [outvars[j] is invars[j] for j in range(len(leaves))]
    carry = jax.tree_util.tree_unflatten(treedef, [
        b if same else jnp.where(started, a, b)
        for same, a, b in zip(kept, jax.tree_util.tree_leaves(stored.carry), leaves)])
    stopped = (lambda c: jnp.asarray(stop(c), bool)) if stop is not None else (lambda c: jnp.asarray(False))

    def cond(c):
        pos, used, carry, _ = c
        return (pos < n) & (used < budget) & ~stopped(carry)

    def body(c):
        pos, used, carry, ys = c
        carry, y = block(carry, pos)
        ys = jax.tree_util.tree_map(lambda a, v: jax.lax.dynamic_update_index_in_dim(a, v, pos, 0), ys, y)
        return pos + 1, used + steps_each, carry, ys

    budget = ctx.budget
    pos, used, carry, ys = jax.lax.while_loop(cond, body, (stored.pos, jnp.int32(0), carry, stored.ys))
    ctx.budget = budget - used
    ctx.out.append(LoopState(pos, carry, ys))
    finished = (pos >= n) | stopped(carry)
    ctx.done = ctx.done & finished
    ctx.steps = ctx.steps + jnp.where(finished, n * steps_each, pos * steps_each)
    return carry, ys


class Plan(NamedTuple):
    """The loops of one run (:func:`plan`)."""

    states: tuple  # per loop, the ShapeDtypeStruct tree of its LoopState
    steps: int  # steps of the run's loops, all blocks done
    shared: tuple  # per loop, whether its position is the same for every run of a chunk


def plan(fn: Callable, *args) -> Plan:
    """The loops ``fn(*args)`` (one run, shapes only) calls through :func:`loop`."""
    rec = _Recording()
    with _entered(rec):
        jax.eval_shape(lambda *a: fn(*a), *args)  # a new function: never a cached trace of fn
    return Plan(tuple(s for s, _, _ in rec.loops), sum(steps for _, steps, _ in rec.loops),
                tuple(shared for _, _, shared in rec.loops))


def advance(fn: Callable, plan_: Plan, states: tuple, positions: tuple, budget, *args):
    """``fn(*args)`` with its loops resumed from ``states`` and run for at most ``budget``
    more steps: ``(states, outputs, steps_done, finished)``; ``outputs`` are the run's
    when ``finished``.

    ``positions``: the blocks done of the loops that are ``plan_.shared``, passed apart
    from ``states`` so that a ``vmap`` over runs does not batch them: a loop whose
    position is the same for every run keeps an unbatched condition, and computes
    exactly what the loop outside a segment computes (a batched condition turns every
    value the loop carries into a batched one, and XLA may then round differently)."""
    positions = tuple(p if shared else None for p, shared in zip(positions, plan_.shared))
    seg = _Segment(list(states), positions, jnp.asarray(budget, jnp.int32))
    with _entered(seg):
        out = fn(*args)
    if len(seg.out) != len(states):
        raise Unsupported(f"a run called {len(seg.out)} loops in a segment, {len(states)} when it was planned")
    return tuple(seg.out), out, seg.steps, seg.done


def next_budget(steps_left: int, steps_per_s: float | None, seconds: float, first: int) -> int:
    """Steps for the next segment: about ``seconds`` of compute at the measured rate
    (``first`` before there is one), or all that is left when that is at most 1.5 times
    as much (no short last segment)."""
    want = first if not steps_per_s else int(steps_per_s * seconds)
    want = max(1, want)
    return int(steps_left) if steps_left <= 1.5 * want else want


__all__ = ["LoopState", "Plan", "Unsupported", "active", "advance", "loop", "next_budget", "plan"]
