"""A checked variant of any function, for debugging (``jax.experimental.checkify``).

Under ``jit`` the values lpg's functions receive are tracers, so the tokens, ``length``
and similar values cannot be checked in Python (shapes still are). ``lpg.checked(fn)``
compiles ``fn`` with run-time checks instead: lpg's own checks (a token outside
``[0, k)``, a ``length`` outside ``[0, N]``) plus checkify's out-of-bounds indexing, NaN
and division-by-zero checks, and raises the first failure as a one-line error::

    log_lik = lpg.checked(lambda w, x, y: lpg.policy.log_prob(fmap, w, x, y))
    log_lik(w, x, jnp.array([0, 7, 1]))  # JaxRuntimeError: y must hold tokens in [0, 3) ...

The checks exist only in the checked function's trace: everything else compiles exactly
as before (no extra operation, the same bits).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
from jax.experimental import checkify

from lpg import _checks

ERRORS = checkify.user_checks | checkify.index_checks | checkify.nan_checks | checkify.div_checks
"""The checks :func:`checked` runs by default."""


def checked(fn: Callable, errors=ERRORS) -> Callable:
    """``fn`` compiled (``jit``) with run-time checks; calling it raises
    ``checkify.JaxRuntimeError`` (a ``ValueError``) on the first failed check.

    Arrays are traced and every other argument is static, as with ``eqx.filter_jit``.
    Pass a function that is not already jitted: a jitted one may reuse a trace made
    without the checks."""

    @eqx.filter_jit
    def run(*args, **kwargs):
        dynamic, static = eqx.partition((args, kwargs), eqx.is_array)

        def traced(dynamic):
            a, kw = eqx.combine(dynamic, static)
            with _checks.runtime_checks():
                return fn(*a, **kw)

        return checkify.checkify(traced, errors=errors)(dynamic)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        error, out = run(*args, **kwargs)
        error.throw()
        return out

    return wrapper
