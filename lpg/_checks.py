"""Argument validation that runs in Python, before anything is traced or compiled.

Every check raises ``ValueError`` naming the parameter, the value it got and what is
allowed, so a bad setting fails at once rather than deep inside XLA.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def _is_tracer(value) -> bool:
    import jax

    return isinstance(value, jax.core.Tracer)


def int_at_least(name: str, value, low: int) -> int:
    """``value`` must be an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _real(name: str, value, allowed: str) -> float:
    if _is_tracer(value):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number {allowed}, got {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name} must be a real number {allowed}, got {value!r}")
    return v


def in_open_closed(name: str, value, low: float, high: float) -> float:
    """``low < value <= high`` (skipped for traced values)."""
    allowed = f"in ({low:g}, {high:g}]"
    v = _real(name, value, allowed)
    if not _is_tracer(v) and not (low < v <= high):
        raise ValueError(f"{name} must be a real number {allowed}, got {value!r}")
    return v


def in_open(name: str, value, low: float, high: float) -> float:
    """``low < value < high`` (skipped for traced values)."""
    allowed = f"in ({low:g}, {high:g})"
    v = _real(name, value, allowed)
    if not _is_tracer(v) and not (low < v < high):
        raise ValueError(f"{name} must be a real number {allowed}, got {value!r}")
    return v


def positive(name: str, value) -> float:
    v = _real(name, value, "> 0")
    if not _is_tracer(v) and not (v > 0):
        raise ValueError(f"{name} must be a real number > 0, got {value!r}")
    return v


def at_least(name: str, value, low: float) -> float:
    v = _real(name, value, f">= {low:g}")
    if not _is_tracer(v) and not (v >= low):
        raise ValueError(f"{name} must be a real number >= {low:g}, got {value!r}")
    return v


def one_of(name: str, value, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def strategy(kind: str, spec, registry: dict, base: type, **kwargs):
    """The strategy object ``spec`` names: ``spec`` itself if it is a ``base``, else a new
    ``registry[spec](**kwargs)`` for a short name (the one place where the CLI's and the
    convenience constructors' names become objects)."""
    if isinstance(spec, base):
        return spec
    if isinstance(spec, str) and spec in registry:
        return registry[spec](**kwargs)
    raise ValueError(f"{kind} must be one of {', '.join(map(repr, registry))} or an "
                     f"{base.__module__}.{base.__name__}, got {spec!r}")


def shape(name: str, array, expected: Sequence[int | None]) -> None:
    """``array.shape`` must match ``expected`` (``None`` matches any size)."""
    got = tuple(np.shape(array))
    ok = len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got))
    if not ok:
        want = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got shape {got}")
