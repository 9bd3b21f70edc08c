"""Argument validation that runs in Python, before anything is traced or compiled.

Every check raises ``ValueError`` naming the parameter, the value it got and what is
allowed, so a bad setting fails at once rather than deep inside XLA. Traced values
(under ``jit``) are skipped, except inside :func:`lpg.checked`, which checks tokens and
lengths at run time.
"""

from __future__ import annotations

import contextlib
import contextvars
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


def int_in(name: str, value, low: int, high: int, why: str = "") -> int:
    """``value`` must be an integer in ``[low, high]``; ``why`` explains the bound."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]{why}, got {value!r}")
    return int(value)


def _real(name: str, value, allowed: str, noun: str = "a real number") -> float:
    if _is_tracer(value):
        return value
    try:
        v = float(value)
    except OverflowError:  # an integer beyond float range, e.g. 10**400
        v = math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {noun} {allowed}, got {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name} must be {noun} {allowed}, got {value!r}")
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


def positive(name: str, value, *, finite: bool = False) -> float:
    """``value > 0`` (and finite if asked; skipped for traced values)."""
    return _above(name, value, 0.0, strict=True, finite=finite)


def at_least(name: str, value, low: float, *, finite: bool = False) -> float:
    """``value >= low`` (and finite if asked; skipped for traced values)."""
    return _above(name, value, low, strict=False, finite=finite)


def _above(name: str, value, low: float, *, strict: bool, finite: bool) -> float:
    noun = "a finite real number" if finite else "a real number"
    allowed = f"{'>' if strict else '>='} {low:g}"
    v = _real(name, value, allowed, noun)
    if _is_tracer(v):
        return v
    if not (v > low if strict else v >= low) or (finite and math.isinf(v)):
        raise ValueError(f"{name} must be {noun} {allowed}, got {value!r}")
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


def shape(name: str, array, expected: Sequence[int | None], why: str = "") -> None:
    """``array.shape`` must match ``expected`` (``None`` matches any size); ``why`` names
    where the sizes come from."""
    got = tuple(np.shape(array))
    ok = len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got))
    if not ok:
        sizes = ["any" if e is None else str(e) for e in expected]
        want = "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want}{why}, got shape {got}")


def nonempty(name: str, array, dims: Sequence[str]) -> tuple[int, ...]:
    """``array`` must have the trailing axes ``dims`` (any leading ones), each of size ``>= 1``;
    returns their sizes."""
    got = tuple(np.shape(array))
    tail = got[len(got) - len(dims):] if len(got) >= len(dims) else ()
    if len(got) < len(dims) or min(tail, default=1) < 1:
        want = "(..., " + ", ".join(dims) + ")"
        sizes = " and ".join(f"{d} >= 1" for d in dims)
        raise ValueError(f"{name} must have shape {want} with {sizes}, got shape {got}")
    return tail


# ---------------------------------------------------------------------------------
# Tokens and lengths. Shapes and dtypes are static, so they are checked even under jit;
# values only when concrete. Under jit they are checked at run time only while
# lpg.checked traces (checkify), so other traces carry no extra operation.
# ---------------------------------------------------------------------------------

_RUNTIME = contextvars.ContextVar("lpg_runtime_checks", default=False)


@contextlib.contextmanager
def runtime_checks():
    """While this is open, traced tokens and lengths get ``checkify.debug_check``s
    (:func:`lpg.checked` opens it around the trace)."""
    token = _RUNTIME.set(True)
    try:
        yield
    finally:
        _RUNTIME.reset(token)


def _runtime_check(ok, message: str, *fmt_args) -> None:
    from jax.experimental import checkify

    checkify.debug_check(ok, message, *fmt_args)


def _runtime_tokens(name: str, y, k: int, allowed: str) -> None:
    import jax.numpy as jnp

    bad = (y < 0) | (y >= k)
    at = jnp.unravel_index(jnp.argmax(bad.ravel()), bad.shape)
    where = name + "[" + ", ".join("{}" for _ in at) + "] = {}"
    _runtime_check(~jnp.any(bad), f"{allowed}, got {where}", *at, y[at])


def length(name: str, value, n: int) -> None:
    """``value`` is ``None`` (all ``n`` positions) or an integer in ``[0, n]``."""
    allowed = f"{name} must be None or an integer in [0, {n}]"
    if value is None:
        return
    if _is_tracer(value):
        if _RUNTIME.get():
            _runtime_check((value >= 0) & (value <= n), allowed + ", got {}", value)
        return
    a = np.asarray(value)
    if isinstance(value, bool) or a.ndim != 0 or not np.issubdtype(a.dtype, np.integer) or not 0 <= a <= n:
        raise ValueError(f"{allowed}, got {value!r}")


def tokens(name: str, y, k: int, dims: Sequence[str] = ("N",), *, length_value=None) -> int:
    """``y`` holds integer tokens in ``[0, k)`` (padding too: it is computed, then masked) of
    shape ``dims``, every size ``>= 1``; ``length_value`` (over the last axis) is checked too.
    Returns ``N``, the size of the last axis."""
    got = tuple(np.shape(y))
    if len(got) != len(dims) or min(got, default=0) < 1:
        want = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want} with every size >= 1, got shape {got}")
    dtype = y.dtype if hasattr(y, "dtype") else np.asarray(y).dtype
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must hold integer tokens in [0, {k}), got dtype {dtype}")
    n = got[-1]
    length(name="length", value=length_value, n=n)
    allowed = f"{name} must hold tokens in [0, {k}) (k = {k})"
    if _is_tracer(y):
        if _RUNTIME.get():
            _runtime_tokens(name, y, k, allowed)
        return n
    a = np.asarray(y)
    bad = (a < 0) | (a >= k)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{allowed}, got {name}[{', '.join(map(str, at))}] = {a[at]}")
    return n
