"""Sweeps: many seeds × a grid of settings in one compiled, vmapped call.

``fn(key, **settings)`` is ONE run: it returns a pytree of arrays. :func:`sweep`
lays out the run axis — the product of the grid values (grid-major, in dict order)
times the seeds (seed-minor) — and evaluates ``jit(vmap(fn))`` on it:

* **traced vs static.** Every grid setting reaches ``fn`` as a traced scalar (float32,
  or int32 when all its values are integers), so sweeping a learning rate, ``log m``,
  ``ζ`` or a response length (the padded, masked path of ``Problem.length``) never
  recompiles. Shape-deciding settings (``N_max``, ``k``, batch size, reward type…) are
  closed over by ``fn``: one :func:`sweep` call per static value.
* **chunks.** ``chunk_size`` runs at a time (the last chunk padded with copies of its
  last run, the padding dropped), one compiled program for every chunk, so a sweep fits
  in memory and gives the same per-run results chunked or not.
* **memory.** Before compiling, the traced program of a chunk gives an estimate of its
  peak memory (:mod:`lpg.memory`); a chunk that does not fit in the memory there is
  (``LPG_MEMORY``, or the host's or devices' free memory) is refused with one line
  naming the estimate and what to lower, and without ``chunk_size`` the sweep takes the
  largest chunk (halving from every run at once) whose estimate is at most half of it
  (:func:`memory_plan` tells which, without running anything).
* **vmap_size.** By default a chunk is one ``vmap``. With ``vmap_size=b`` each device
  runs its share of the chunk ``b`` runs at a time (``lax.map`` with ``batch_size=b``):
  on a CPU, where one run with a large batch already fills the cores, a wide ``vmap``
  spills its per-run tables out of cache, and ``vmap_size=1`` gives the most runs/s
  (``benchmarks/``). ``vmap_size="auto"`` picks that: ``1`` on a CPU backend, one
  ``vmap`` on an accelerator. Per-run results are those of the vmapped sweep to float32
  rounding; a checkpoint records the ``vmap_size`` it was computed with.
* **devices.** The run axis of each chunk is sharded over every device
  (``jax.sharding.NamedSharding`` on a 1-D mesh named ``"runs"``); ``chunk_size`` is
  rounded up to a multiple of the device count. In a multi-host job started with
  ``jax.distributed.initialize()`` the mesh spans every process's devices, each process
  builds the same inputs, and the outputs are gathered back on every host (a gather that
  fails because another process has stopped raises :class:`LostProcess`); process 0
  alone writes checkpoints, so ``out_dir`` must be on a filesystem every host sees.
* **checkpoints.** With ``out_dir``, each finished chunk is written atomically to
  ``chunk_NNNNNN.npz`` next to ``sweep.json`` (what the sweep is); ``resume=True``
  reuses the chunks on disk and computes the rest, ending bit-identical to an
  uninterrupted sweep; it refuses a checkpoint of another sweep, or one written by other
  lpg source code (:func:`lpg.results.code_digest`), and a truncated or corrupted chunk
  raises :class:`lpg.results.Fault` naming it (deleted, it is computed again).
* **segments.** With ``out_dir``, a chunk whose runs have loops (:func:`lpg.train`,
  :func:`lpg.pretrain`, :func:`lpg.hitting.run_until`) is computed in segments of about
  ``LPG_SEGMENT_S`` seconds (60; ``0``: one call per chunk) by one compiled program that
  advances every run's loops by a budget of steps (:mod:`lpg.segments`); the runs' loop
  states are saved atomically to ``segment_NNNNNN.npz`` after each segment, so an
  interrupted sweep loses at most one segment, and ``resume`` continues from there. The
  blocks a segment runs are those of the uninterrupted loop, so the results are the same,
  bit for bit, however the chunk is cut, and the same as without ``out_dir``.
* **progress.** Live progress on stderr (:mod:`lpg.progress`): on a terminal a bar that
  moves within a chunk (the training loops report their steps from inside the compiled
  call), off a terminal one line every ``LPG_PROGRESS_EVERY`` seconds (default 10);
  runs and steps done, elapsed, ETA, runs/s and reward queries/s once a chunk is done
  (when the outputs have a ``log_queries`` leaf — cumulative natural-log counts whose
  last entry per run is the run's total). ``progress=False`` or ``LPG_PROGRESS=0``
  turns it off. Compile time (``lower`` + ``compile``) is measured on its own;
  the compiled program is kept and reused by a later sweep of the same ``fn`` object
  with the same setting names, dtypes, chunk size and devices (``compile_s`` is then 0).

A single run with seed ``s`` uses :func:`run_key` ``(s)``, the same key as run ``s`` of
any sweep, so ``fn(run_key(s), **settings)`` reproduces that run.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lpg import memory, segments
from lpg import progress as _progress
from lpg.interrupt import promptly
from lpg.progress import format_log_count
from lpg.results import (Fault, atomic_write_bytes, atomic_write_json, code_digest, is_writer, load_npz,
                         npz_bytes, read_json, to_jsonable)

AXIS = "runs"
MAX_SEED = 2**31 - 1
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SweepResult(NamedTuple):
    settings: dict  # name -> (R,) values of that setting per run
    seed: np.ndarray  # (R,)
    outputs: Any  # pytree of np.ndarray, leading axis R
    compile_s: float
    run_s: float

    @property
    def timing(self) -> dict:
        """``{"compile_s", "run_s"}``, as experiments record it in ``summary.json``."""
        return {"compile_s": self.compile_s, "run_s": self.run_s}


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def run_key(seed: int) -> jax.Array:
    """The PRNG key of the run with this seed (in a sweep or alone): a raw ``uint32``
    key, ``jax.random.PRNGKey(seed)``."""
    return jax.random.PRNGKey(_check_seed(seed))


def _key_data(seeds: np.ndarray) -> np.ndarray:
    """:func:`run_key` of every seed, ``(R, 2)`` ``uint32``, built in one call."""
    return np.asarray(jax.jit(jax.vmap(jax.random.PRNGKey))(jnp.asarray(seeds, jnp.int32)))


# ---------------------------------------------------------------------------------
# The run axis
# ---------------------------------------------------------------------------------


def _grid_values(name, values) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"grid[{name!r}] must be a non-empty sequence of numbers, got {values!r}")
    items = list(values)
    if not items:
        raise ValueError(f"grid[{name!r}] must be a non-empty sequence of numbers, got an empty sequence")
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"grid[{name!r}] must hold numbers only, got {v!r}")
        if isinstance(v, (float, np.floating)) and math.isnan(v):
            raise ValueError(f"grid[{name!r}] must not hold nan, got {items!r}")
    if all(isinstance(v, (int, np.integer)) for v in items):
        if any(abs(int(v)) > MAX_SEED for v in items):
            raise ValueError(f"grid[{name!r}] integers must fit int32, got {items!r}")
        return np.asarray(items, np.int32)
    return np.asarray(items, np.float32)


def seed_list(seeds) -> np.ndarray:
    """The seeds of ``seeds`` — a count ``S`` (seeds ``0..S-1``), a ``range`` or a
    sequence of seeds in ``[0, 2**31 - 1]`` — as an ``int64`` array, validated."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEED + 1:
            raise ValueError(f"seeds must be an integer in [1, {MAX_SEED + 1}] or a non-empty sequence of seeds, "
                             f"got {seeds!r}")
        return np.arange(int(seeds), dtype=np.int64)
    if isinstance(seeds, range) and len(seeds):
        _check_seed(seeds[0]), _check_seed(seeds[-1])
        return np.arange(seeds.start, seeds.stop, seeds.step, dtype=np.int64)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)) or len(seeds) == 0:
        raise ValueError(f"seeds must be an integer >= 1 or a non-empty sequence of seeds, got {seeds!r}")
    return np.asarray([_check_seed(s) for s in seeds], np.int64)


def run_axis(grid: Mapping[str, Sequence], seeds) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(settings, seed)``: the value of every setting and the seed of every run, the
    grid product in dict order (first setting slowest) with the seed fastest."""
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a dict of setting name -> values, got {type(grid).__name__}")
    axes = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"grid keys must be Python identifiers (they become keyword arguments), got {name!r}")
        axes[name] = _grid_values(name, values)
    seed_values = seed_list(seeds)
    shape = tuple(len(v) for v in axes.values()) + (len(seed_values),)
    idx = [i.ravel() for i in np.indices(shape)]
    settings = {name: values[i] for (name, values), i in zip(axes.items(), idx)}
    return settings, seed_values[idx[-1]]


# ---------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------


def _chunk_path(out_dir: Path, i: int) -> Path:
    return out_dir / f"chunk_{i:06d}.npz"


def _structure(out_info) -> dict:
    leaves, treedef = jax.tree_util.tree_flatten(out_info)
    return {"treedef": str(treedef), "leaves": [[list(l.shape), str(l.dtype)] for l in leaves]}


def _load_checkpoint(out_dir: Path, spec: dict, n_leaves: int) -> list[list[np.ndarray]] | None:
    """The finished chunks of the checkpoint of this sweep in ``out_dir`` (``None``: no
    checkpoint there)."""
    meta_path = out_dir / "sweep.json"
    if not meta_path.is_file():
        return None
    stored = read_json(meta_path, "delete it to compute this part of the run again")
    if stored != to_jsonable(spec):
        diff = sorted(k for k in set(stored) | set(spec) if stored.get(k) != to_jsonable(spec).get(k))
        why = " (written by other lpg code)" if "code" in diff else ""
        raise ValueError(
            f"resume: {out_dir} holds a checkpoint of a different sweep{why} (differs in: {', '.join(diff)}); "
            "use another output directory or start again without resume (lpg run --overwrite)"
        )
    leaves = spec["outputs"]["leaves"]
    chunks = []
    while _chunk_path(out_dir, len(chunks)).is_file():
        path = _chunk_path(out_dir, len(chunks))
        fix = "delete it to compute it (and the chunks after it) again"
        arrays = load_npz(path, fix)
        chunk = [arrays.get(f"leaf_{j}") for j in range(n_leaves)]
        for a, (shape, dtype) in zip(chunk, leaves):
            if a is None or list(a.shape) != list(shape) or str(a.dtype) != dtype:
                raise Fault(f"{path} is corrupted (its arrays are not those of this sweep); {fix}")
        chunks.append(chunk)
    return chunks


def _clear_checkpoint(out_dir: Path) -> None:
    for p in [*out_dir.glob("chunk_*.npz"), *out_dir.glob("segment_*.npz")]:
        p.unlink()
    (out_dir / "sweep.json").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------


def _query_leaves(out_info) -> list[int]:
    """Indices of the leaves named ``log_queries`` (attribute or dict key)."""
    found = []
    for j, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(out_info)[0]):
        last = path[-1] if path else None
        name = getattr(last, "name", None) or getattr(last, "key", None)
        if name == "log_queries":
            found.append(j)
    return found


def _log_total_queries(leaves: list[np.ndarray], which: list[int]) -> float:
    total = -np.inf
    for j in which:
        a = np.asarray(leaves[j], np.float64)
        per_run = a.reshape(a.shape[0], -1)[:, -1] if a.ndim else a
        per_run = per_run[~np.isnan(per_run)]
        if per_run.size:
            total = np.logaddexp(total, np.logaddexp.reduce(per_run))
    return float(total)


# ---------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------


def _global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


class LostProcess(Fault):
    """Gathering a chunk's outputs across the processes of a ``jax.distributed`` job
    failed: another process has stopped (or cannot be reached), and the job cannot go on."""


def _lost(e: Exception, what: str) -> LostProcess:
    why = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return LostProcess(f"another process of the job has stopped ({what} failed: {why})")


def _run(compiled, *args) -> list[np.ndarray]:
    """``compiled(*args)``'s output leaves on the host (every process's share of them, in a
    multi-process job). A collective that fails because another process has stopped (the
    gather, or one of the program's own: the progress reports' maximum over runs sharded
    across processes) raises :class:`LostProcess`; a fault of this process's own
    computation is raised as it is."""
    if jax.process_count() == 1:
        return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(compiled(*args)))]
    from jax.experimental import multihost_utils

    try:
        tree = jax.block_until_ready(compiled(*args))
    except jax.errors.JaxRuntimeError as e:
        if "gloo" not in str(e).lower():
            raise
        raise _lost(e, "a collective of the computation") from e
    try:
        tree = multihost_utils.process_allgather(tree, tiled=True)
    except (RuntimeError, ValueError) as e:  # gloo's error surfaces as either, depending on where
        raise _lost(e, "gathering a chunk's outputs") from e
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(tree))]


class _Program:
    """A traced program for one chunk shape, its memory estimate (:func:`lpg.memory.estimate`,
    known before compiling), and once needed its lowered and compiled forms. A segmented
    program (``segments`` the run's :class:`lpg.segments.Plan`) maps ``(keys, settings,
    loop states, budget)`` to ``(loop states, outputs, steps done, finished)``."""

    def __init__(self, traced, steps_per_run: int = 0, segments_plan=None):
        self.traced = traced
        self.memory = memory.estimate(traced.jaxpr)
        self.compiled = None
        self.steps_per_run = steps_per_run  # as its loops declared them (lpg.progress.expect); 0: unknown
        self.segments = segments_plan
        self.out_info = traced.out_info[1] if segments_plan is not None else traced.out_info

    def compile(self):
        return self.traced.lower().compile()


_PROGRAMS: dict = {}
_MAX_PROGRAMS = 8


def _batched(one, n_dev: int, c: int, vmap_size: int | None):
    """``one`` over a chunk of ``c`` runs: one ``vmap``, or per device ``lax.map`` over its
    ``c / n_dev`` runs ``vmap_size`` at a time (the device axis stays a ``vmap``, so the
    sharded run axis is never scanned over)."""
    if vmap_size is None or vmap_size >= c // n_dev:
        return jax.vmap(one)

    def per_device(*args):
        return jax.lax.map(lambda a: one(*a), args, batch_size=vmap_size)

    def batched(*args):
        split = lambda a: a.reshape(n_dev, c // n_dev, *a.shape[1:])  # noqa: E731
        out = jax.vmap(per_device)(*jax.tree_util.tree_map(split, args))
        return jax.tree_util.tree_map(lambda a: a.reshape(c, *a.shape[2:]), out)

    return batched


def _none_or_count(name: str, value, allowed: str = "None or an integer >= 1") -> int | None:
    """``value`` must be ``None`` or an integer ``>= 1``; returned as a Python int."""
    bad = isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
    if value is not None and bad:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return None if value is None else int(value)


def _check_vmap_size(vmap_size) -> int | None:
    """``vmap_size`` validated, with ``"auto"`` resolved for the default backend."""
    if isinstance(vmap_size, str) and vmap_size == "auto":
        return auto_vmap_size()
    return _none_or_count("vmap_size", vmap_size, "None, 'auto' or an integer >= 1")


def auto_vmap_size() -> int | None:
    """What ``vmap_size="auto"`` means here: ``1`` (runs one after the other on each
    device) on a CPU backend, ``None`` (one ``vmap``) on a GPU or TPU."""
    return 1 if jax.default_backend() == "cpu" else None


def _segmented_program(fn, one, kd, st, c: int, devices, vmap_size) -> tuple:
    """``(traced program, plan)`` advancing the runs of ``fn`` by a budget of steps
    (:mod:`lpg.segments`), or ``None`` when a run has no loops or they cannot be cut into
    segments (:class:`lpg.segments.Unsupported`: the chunk is then computed in one call)."""
    plan = segments.plan(lambda kd, st: fn(kd, **st), jax.ShapeDtypeStruct(kd.shape[1:], kd.dtype),
                         {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in st.items()})
    if not plan.states:
        return None

    def program_fn(kd, st, states, positions, budget):
        advance = lambda k, s, l: segments.advance(one, plan, l, positions, budget, k, s)  # noqa: E731
        return _batched(advance, len(devices), c, vmap_size)(kd, st, states)

    fresh = _fresh_states(plan, c)
    try:
        return jax.jit(program_fn).trace(kd, st, _global_states(fresh, kd.sharding), _positions(fresh, kd.sharding),
                                         _budget(0, kd.sharding)), plan
    except segments.Unsupported:
        return None


def _program(fn, settings: dict, c: int, devices, chunk_inputs, vmap_size=None, segmented: bool = False) -> _Program:
    """The program of ``fn`` for chunks of ``c`` runs, reused across :func:`sweep` calls
    with the same function, setting names and dtypes, chunk size, devices, ``vmap_size``
    and segmenting (like ``jax.jit``, a function is identified by the object itself).
    ``segmented``: a program that advances the runs' loops by a budget of steps
    (:mod:`lpg.segments`), when ``fn``'s loops allow it."""
    plans = []

    def one(kd, st):
        with _progress.planning() as plan:
            out = fn(kd, **st)
        plans.append(plan.steps)
        return out

    try:
        key = (fn, tuple((k, str(v.dtype)) for k, v in settings.items()), c, tuple(devices), vmap_size,
               _progress.compiled_settings(), segmented)
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _PROGRAMS:
        return _PROGRAMS[key]
    kd, st = chunk_inputs(0)
    seg = _segmented_program(fn, one, kd, st, c, devices, vmap_size) if segmented else None
    if seg is None:
        program = _Program(jax.jit(_batched(one, len(devices), c, vmap_size)).trace(kd, st), max(plans, default=0))
    else:
        program = _Program(seg[0], max(plans, default=0), seg[1])
    if key is not None:
        if len(_PROGRAMS) >= _MAX_PROGRAMS:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = program
    return program


def _fresh_states(plan, c: int):
    """The loop states of ``c`` runs that have not started, on the host."""
    return jax.tree_util.tree_map(lambda s: np.zeros((c,) + s.shape, s.dtype), plan.states)


def _global_states(states, sharding: NamedSharding):
    return jax.tree_util.tree_map(lambda a: _global_array(np.asarray(a), sharding), states)


def _replicated(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return _global_array(np.asarray(value), NamedSharding(sharding.mesh, PartitionSpec()))


def _budget(steps: int, sharding: NamedSharding) -> jax.Array:
    """A segment's budget of steps, the same for every run."""
    return _replicated(np.int32(min(int(steps), 2**31 - 1)), sharding)


def _positions(states, sharding: NamedSharding) -> tuple:
    """Every loop's blocks done in the chunk's first run (those of the loops that are
    :attr:`lpg.segments.Plan.shared` are the same in every run), as unbatched inputs."""
    return tuple(_replicated(np.int32(s.pos[0]), sharding) for s in states)


SEGMENT_S = 60.0
"""Seconds of compute between two saves of a run's loop states (``LPG_SEGMENT_S``)."""


def segment_seconds() -> float:
    """``LPG_SEGMENT_S`` (a positive number of seconds), else :data:`SEGMENT_S`; ``0``
    computes every chunk in one call (checkpoints per chunk only)."""
    raw = os.environ.get("LPG_SEGMENT_S", "").strip()
    if not raw:
        return SEGMENT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"LPG_SEGMENT_S must be a number of seconds >= 0, got {raw!r}")
    return value


def _segment_path(out_dir: Path, i: int) -> Path:
    return out_dir / f"segment_{i:06d}.npz"


def _save_segment(out_dir: Path, i: int, states, steps: np.ndarray) -> None:
    leaves = jax.tree_util.tree_leaves(states)
    atomic_write_bytes(_segment_path(out_dir, i), npz_bytes({"steps": steps, **{f"state_{j}": a for j, a in
                                                                              enumerate(leaves)}}))


def _load_segment(out_dir: Path, i: int, plan, c: int):
    """``(states, steps)``: the loop states of chunk ``i``'s runs and the steps each has
    done, as last saved (``None`` when there are none)."""
    path = _segment_path(out_dir, i)
    if not path.is_file():
        return None
    fix = "delete it to compute this chunk from its start"
    arrays = load_npz(path, fix)
    want, treedef = jax.tree_util.tree_flatten(_fresh_states(plan, c))
    leaves = [arrays.get(f"state_{j}") for j in range(len(want))]
    steps = arrays.get("steps")
    for a, w in zip(leaves + [steps], want + [np.zeros((c,), np.int32)]):
        if a is None or a.shape != w.shape or a.dtype != w.dtype:
            raise Fault(f"{path} is corrupted (its arrays are not the loop states of this sweep); {fix}")
    return jax.tree_util.tree_unflatten(treedef, leaves), steps


def _stored_chunk_size(out_dir: Path) -> int | None:
    try:
        return int(read_json(out_dir / "sweep.json", "")["chunk_size"])
    except (Fault, OSError, KeyError, TypeError, ValueError):
        return None  # no readable checkpoint: resume finds none either


class MemoryPlan(NamedTuple):
    """How a sweep's chunks fit in memory (:func:`memory_plan`)."""

    chunk_size: int  # runs per chunk
    needed: int  # estimated peak bytes of one chunk (this process's share), before compiling
    available: int | None  # bytes this process may use (None: unknown, not checked)
    where: str  # where ``available`` comes from
    program: Any  # the traced program of a chunk (``program.compile()``)


def _fit_chunk(fn, settings, R: int, chunk_size, devices, inputs, vmap_size, desc: str, sizes,
               segmented: bool = False) -> MemoryPlan:
    """The chunk size and its traced program. A chunk must fit in the memory there is
    (:func:`lpg.memory.available`, checked against :func:`lpg.memory.estimate` before
    compiling); an automatic chunk size (``chunk_size=None``: every run at once) is
    halved until its estimate is at most half of that memory, a margin for the
    estimate's error. A chunk that does not fit raises ``ValueError`` naming the
    estimate, the memory and what to lower."""
    n_dev, n_local = len(devices), len(jax.local_devices())
    round_up = lambda n: -(-n // n_dev) * n_dev  # noqa: E731
    c = round_up(min(chunk_size if chunk_size is not None else R, R))
    budget, where = memory.available(jax.local_devices())
    while True:
        program = _program(fn, settings, c, devices, lambda i: inputs(c, i), vmap_size, segmented)
        plan = MemoryPlan(c, program.memory * n_local // n_dev, budget, where, program)
        if budget is None or plan.needed <= (budget // 2 if chunk_size is None and c > n_dev else budget):
            return plan
        if chunk_size is None and c > n_dev:
            c = round_up(c // 2)
            continue
        lower = [f"chunk_size (now {c})"] if c > n_dev else []
        if c // n_dev > 1 and (vmap_size is None or vmap_size > 1):
            lower.append("vmap_size (1 runs a device's runs one at a time)")
        lower += [f"{k} (now {v})" for k, v in (sizes or {}).items()]
        raise ValueError(
            f"{desc or 'sweep'}: a chunk of {c} run{'s' if c > 1 else ''} needs about {memory.fmt_bytes(plan.needed)} "
            f"of memory (estimated before compiling), more than the {memory.fmt_bytes(budget)} {where}; lower "
            f"{', '.join(lower) or 'the sizes'}")


def _chunk_inputs(seed: np.ndarray, settings: dict, devices):
    """``inputs(c, i)``: the keys and settings of chunk ``i`` of ``c`` runs, sharded over
    ``devices`` (the last chunk padded with copies of the last run)."""
    R = int(seed.shape[0])
    key_data = _key_data(seed)
    sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))

    def inputs(c, i):
        rows = np.minimum(np.arange(i * c, (i + 1) * c), R - 1)
        kd = _global_array(key_data[rows], sharding)
        st = {name: _global_array(v[rows], sharding) for name, v in settings.items()}
        return kd, st

    return inputs


def memory_plan(fn: Callable[..., Any], grid: Mapping[str, Sequence], *, seeds, chunk_size: int | None = None,
                vmap_size: int | str | None = None, desc: str = "", sizes: Mapping[str, Any] | None = None
                ) -> MemoryPlan:
    """The chunk size :func:`sweep` would take for these arguments and the memory a chunk
    needs, estimated from the traced program without compiling it; raises ``ValueError``
    when one chunk does not fit (as :func:`sweep` does before it compiles)."""
    settings, seed = run_axis(grid, seeds)
    chunk_size = _none_or_count("chunk_size", chunk_size)
    devices = jax.devices()
    return _fit_chunk(fn, settings, int(seed.shape[0]), chunk_size, devices, _chunk_inputs(seed, settings, devices),
                      _check_vmap_size(vmap_size), desc, sizes)


def sweep(
    fn: Callable[..., Any],
    grid: Mapping[str, Sequence],
    *,
    seeds,
    chunk_size: int | None = None,
    out_dir=None,
    resume: bool = False,
    desc: str = "",
    progress: bool | None = None,
    fingerprint: Mapping | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    vmap_size: int | str | None = None,
    sizes: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Run ``fn(key, **settings)`` for every grid point × seed (see the module docstring).

    ``fingerprint``: extra JSON-able facts a checkpoint must match to be resumed (e.g.
    the static settings ``fn`` closes over). ``on_chunk(done, total)`` is called after
    each chunk is stored (its exceptions propagate: a way to stop a sweep early).
    ``sizes``: the settings that decide ``fn``'s array sizes, named with their values in
    the error when a chunk of one run does not fit in memory.
    Returns a :class:`SweepResult` with NumPy arrays whose leading axis is the run."""
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    settings, seed = run_axis(grid, seeds)
    R = int(seed.shape[0])
    chunk_size = _none_or_count("chunk_size", chunk_size)
    vmap_size = _check_vmap_size(vmap_size)
    devices = jax.devices()
    ckpt = Path(out_dir) if out_dir is not None else None
    if chunk_size is None and resume and ckpt is not None:
        chunk_size = _stored_chunk_size(ckpt)  # an automatic chunk size stays the checkpoint's
    inputs = _chunk_inputs(seed, settings, devices)
    seconds = segment_seconds() if ckpt is not None else 0.0
    plan = _fit_chunk(fn, settings, R, chunk_size, devices, inputs, vmap_size, desc, sizes, segmented=seconds > 0)
    c, program = plan.chunk_size, plan.program
    chunk_inputs = lambda i: inputs(c, i)  # noqa: E731
    n_chunks = -(-R // c)
    bar = _progress.Tracker(desc, R, show=progress if is_writer() else False)  # one process of a job talks
    out_info = program.out_info
    treedef = jax.tree_util.tree_structure(out_info)
    n_leaves = treedef.num_leaves
    query_leaves = _query_leaves(out_info)

    writer = is_writer()
    chunks: list[list[np.ndarray]] = []
    if ckpt is not None:
        spec = {
            "grid": {k: v.tolist() for k, v in run_axis(grid, [0])[0].items()},
            "dtypes": {k: str(v.dtype) for k, v in settings.items()},
            "seeds": seed.tolist(),
            "chunk_size": c,
            "vmap_size": vmap_size,
            "outputs": _structure(out_info),
            "fingerprint": dict(fingerprint or {}),
            "code": code_digest(),
        }
        found = _load_checkpoint(ckpt, spec, n_leaves) if resume else None
        chunks = (found or [])[:n_chunks]
        if writer and found is None:
            ckpt.mkdir(parents=True, exist_ok=True)
            _clear_checkpoint(ckpt)
            atomic_write_json(ckpt / "sweep.json", spec)

    compile_s = 0.0
    log_q = -math.inf
    start = len(chunks)
    per_chunk = c * program.steps_per_run  # steps of a chunk's runs, padding included (0: unknown)
    with bar:  # the step reports of the runs go to it while it is open
        if len(chunks) < n_chunks and program.compiled is None:
            t = time.perf_counter()
            program.compiled = promptly(program.compile)
            compile_s = time.perf_counter() - t
            bar.note(f"compiled in {compile_s:.1f}s", end="\n")
        compiled = program.compiled

        t_run = time.perf_counter()
        if start < n_chunks:
            bar.begin(steps_total=n_chunks * per_chunk, steps_done=start * per_chunk, runs_done=min(start * c, R))
        for i in range(start, n_chunks):
            if program.segments is None:
                leaves = promptly(lambda: _run(compiled, *chunk_inputs(i)))  # Ctrl-C at once, not after the chunk
            else:
                leaves = _segmented_chunk(compiled, program.segments, chunk_inputs(i), c, ckpt, i, resume, seconds,
                                          writer, bar)
            if ckpt is not None and writer:
                atomic_write_bytes(_chunk_path(ckpt, i), npz_bytes({f"leaf_{j}": a for j, a in enumerate(leaves)}))
                _segment_path(ckpt, i).unlink(missing_ok=True)
            chunks.append(leaves)
            done = min((i + 1) * c, R)
            real = done - i * c
            if query_leaves:
                log_q = float(np.logaddexp(log_q, _log_total_queries([a[:real] for a in leaves], query_leaves)))
            bar.chunk_done(done, log_q, steps_done=(i + 1) * per_chunk)
            if on_chunk is not None:
                on_chunk(done, R)
        run_s = time.perf_counter() - t_run if start < n_chunks else 0.0

    stacked = [np.concatenate([ch[j] for ch in chunks])[:R] for j in range(n_leaves)]
    outputs = jax.tree_util.tree_unflatten(treedef, stacked)
    return SweepResult(settings, seed, outputs, compile_s, run_s)


def _segmented_chunk(compiled, plan, inputs, c: int, ckpt: Path, i: int, resume: bool, seconds: float,
                     writer: bool, bar: _progress.Tracker) -> list[np.ndarray]:
    """Chunk ``i`` computed in segments of about ``seconds`` of compute each
    (:mod:`lpg.segments`): after each segment but the last its runs' loop states are saved
    atomically to ``segment_NNNNNN.npz``, from where ``resume`` continues. Returns the
    chunk's output leaves on the host."""
    kd, st = inputs
    saved = _load_segment(ckpt, i, plan, c) if resume else None
    states, steps = saved or (_fresh_states(plan, c), np.zeros((c,), np.int32))
    treedef = jax.tree_util.tree_structure(states)
    n_state = treedef.num_leaves
    rate, done = None, int(np.min(steps))  # steps per second; steps every run of the chunk has done
    bar.add_steps(int(np.sum(steps)))  # the steps of the saved segments, not reported again
    while True:
        budget = segments.next_budget(plan.steps - done, rate, seconds, first=max(1, plan.steps // 16))
        t = time.perf_counter()
        out = promptly(lambda: _run(compiled, kd, st, _global_states(states, kd.sharding),
                                    _positions(states, kd.sharding), _budget(budget, kd.sharding)))
        elapsed = time.perf_counter() - t
        steps, finished = out[-2], out[-1]
        if bool(np.all(finished)):
            return out[n_state:-2]
        states = jax.tree_util.tree_unflatten(treedef, out[:n_state])
        if writer:
            _save_segment(ckpt, i, states, steps)
        now = int(np.min(steps))
        if now > done:
            rate = (now - done) / max(elapsed, 1e-6)
        done = now


def grid_size(grid: Mapping[str, Sequence]) -> int:
    """The number of grid points (runs per seed)."""
    return int(np.prod([len(v) for v in grid.values()], dtype=np.int64)) if grid else 1


__all__ = ["LostProcess", "MemoryPlan", "SweepResult", "auto_vmap_size", "format_log_count", "grid_size",
           "memory_plan", "run_axis", "run_key", "seed_list", "sweep"]
