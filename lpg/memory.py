"""Peak memory of a program, known before it is compiled, and the memory there is.

:func:`estimate` reads a traced program (``jax.jit(f).trace(...).jaxpr``: shapes only,
nothing allocated, nothing compiled) and replays it as XLA would hold its buffers: each
value lives from the operation that makes it to its last use, a loop or branch body
(``scan``, ``while``, ``cond``, nested ``jit``) adds its own peak while it runs, and an
elementwise result read only by one elementwise operation or max-like reduction, or
one that only broadcasts or reshapes, is not held at all, because XLA fuses it into
its consumers. The estimate is the arguments plus the peak of the live values (the
outputs included), times a measured :data:`CALIBRATION` for what XLA holds beyond
that. On lpg's programs it is within a factor of 2 of the compiled program's own figure
(``Compiled.memory_analysis()``: temporaries + outputs + arguments − aliased), which
``tests/test_memory.py`` checks over experiments and the sizes that dominate each phase.

:func:`available` is the memory a run may use: the ``LPG_MEMORY`` budget when set
(``"8G"``, ``"500M"``, bytes), else on a GPU or TPU the free memory of one device
times the device count, on a CPU the host's available memory (``MemAvailable`` and the
cgroup limit, the smaller)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax
import numpy as np
from jax.extend import core as jcore

_ELEMENTWISE = frozenset("""
    abs add and atan2 bitcast_convert_type broadcast_in_dim cbrt ceil clamp convert_element_type copy copy_p cos
    digamma div eq erf erf_inv erfc exp exp2 expand_dims expm1 floor ge gt integer_pow iota is_finite le lgamma log
    log1p logistic lt max min mul ne neg nextafter not or population_count pow reduce_precision rem reshape round rsqrt
    select_n shift_left shift_right_arithmetic shift_right_logical sign sin sqrt square squeeze stop_gradient sub tanh
    transpose
    xor""".split())
_REDUCTIONS = frozenset("argmax argmin reduce_and reduce_max reduce_min reduce_or".split())  # not sums: see _fused
_MOVES = frozenset("broadcast_in_dim expand_dims iota reshape squeeze".split())

CALIBRATION = 1.6
"""XLA holds some values the replay takes as fused or short-lived (most in the policy
gradient's step): over lpg's programs the replay alone measured 0.37–1.0 of the compiled
figure (nine programs of ``barrier`` and ``figure2``, 15 MB to 8 GB, vmapped or under
``lax.map``); this factor centres that range (``tests/test_memory.py``)."""

ENV = "LPG_MEMORY"


def _nbytes(aval) -> int:
    shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return 0  # tokens, opaque key types' metadata
    try:
        itemsize = np.dtype(dtype).itemsize if dtype != jax.dtypes.float0 else 0
    except TypeError:
        itemsize = 8  # a typed PRNG key: two uint32 words
    return int(np.prod(shape, dtype=np.int64)) * itemsize


def _bodies(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jcore.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jcore.Jaxpr):
                yield item


def _fused(eqn, var, consumers: dict, outputs: set) -> bool:
    """Whether XLA folds this elementwise result into its consumers instead of holding it:
    its one consumer is elementwise or a max/min-like reduction (XLA on a CPU keeps the
    operand of a large sum), or it only moves or broadcasts data, which XLA recomputes in
    each consumer."""
    if eqn.primitive.name not in _ELEMENTWISE or var in outputs:
        return False
    readers = consumers.get(var, ())
    if not readers or not all(r in _ELEMENTWISE or r in _REDUCTIONS for r in readers):
        return False
    return len(readers) == 1 or eqn.primitive.name in _MOVES


def _peak(jaxpr) -> int:
    """Peak bytes of the values ``jaxpr`` makes while it runs (its inputs not counted)."""
    last, consumers = {}, {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if isinstance(v, jcore.Var):
                last[v] = i
                consumers.setdefault(v, []).append(eqn.primitive.name)
    outputs = {v for v in jaxpr.outvars if isinstance(v, jcore.Var)}
    inputs = set(jaxpr.invars) | set(jaxpr.constvars)
    size, live, peak = {}, 0, 0
    for i, eqn in enumerate(jaxpr.eqns):
        inner = max((_peak(body) for body in _bodies(eqn)), default=0)
        made = 0
        for v in eqn.outvars:
            size[v] = 0 if _fused(eqn, v, consumers, outputs) else _nbytes(v.aval)
            made += size[v]
        peak = max(peak, live + made + inner)
        live += made
        for v in {v for v in eqn.invars if isinstance(v, jcore.Var)}:
            if last.get(v) == i and v not in outputs and v not in inputs:
                live -= size.get(v, 0)
        live -= sum(size[v] for v in eqn.outvars if v not in last and v not in outputs)  # never read
    return peak


def estimate(closed: jcore.ClosedJaxpr) -> int:
    """Estimated peak bytes of running the traced program ``closed`` (see the module
    docstring): its arguments and constants plus the peak of the values it makes, times
    :data:`CALIBRATION`."""
    jaxpr = closed.jaxpr
    held = sum(_nbytes(v.aval) for v in jaxpr.invars) + sum(int(getattr(c, "nbytes", 0)) for c in closed.consts)
    return int(CALIBRATION * (held + _peak(jaxpr)))


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str, name: str = ENV) -> int:
    """``"8G"``, ``"500M"``, ``"1.5G"`` or a byte count, as bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{name} must be a positive amount of memory such as 8G, 500M or a byte count, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _host_available() -> int | None:
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # a cgroup (v2) limit below the host's memory: a container or a SLURM allocation
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            room = max(int(limit) - used, 0)
            free = room if free is None else min(free, room)
    except (OSError, ValueError):
        pass
    return free


def available(devices=None) -> tuple[int | None, str]:
    """``(bytes, where)``: the memory a run on ``devices`` may use and where that figure
    comes from, or ``(None, why)`` when it cannot be told (no check is then made)."""
    if os.environ.get(ENV):
        return parse_bytes(os.environ[ENV]), f"set by {ENV}"
    devices = list(devices or jax.devices())
    if devices[0].platform == "cpu":
        free = _host_available()
        if free is None:
            return None, "host memory unknown"
        return free, f"available on this host ({ENV} sets another budget)"
    try:
        stats = devices[0].memory_stats() or {}
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except (KeyError, TypeError, ValueError, RuntimeError):
        return None, "device memory unknown"
    return free * len(devices), (f"free on {len(devices)} {devices[0].platform.upper()} device(s) "
                                 f"({ENV} sets another budget)")


def fmt_bytes(n: float) -> str:
    """``1.5 GiB``, ``320 MiB``, ``12 KiB``."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = _UNITS[unit[0]]
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


__all__ = ["ENV", "available", "estimate", "fmt_bytes", "parse_bytes"]
