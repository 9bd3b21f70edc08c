"""Shared references for the engine-core tests.

Everything here is independent of ``lpg``'s own implementation: plain NumPy (float64)
versions of the bigram policy of PAPER.md §1 and its log-likelihood gradient, exact
enumeration of ``Y^N`` and the statistical tests used throughout. Every statistical
test runs with a fixed seed and asserts ``p > P_MIN`` (or a stated number of
standard errors), so a correct implementation fails any one of them with
probability below ``P_MIN`` (about 6·10⁻⁷ per coordinate at 5 standard errors).
"""

from __future__ import annotations

import contextlib
import itertools
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import lpg

# Checkpointed runs compute each chunk in one call in the tests (lpg.segments adds a larger
# program to compile to every CLI test); tests/test_segments.py, test_interrupt.py and
# test_distributed.py turn segments on, and check their results equal the whole-chunk ones.
os.environ.setdefault("LPG_SEGMENT_S", "0")

# The longest files first: pytest-xdist (``--dist loadfile --no-loadscope-reorder``) hands
# files to its workers in this order, so the two workers end together rather than one
# finishing a long file alone (longest-first scheduling; from a run with --durations).
LONGEST_FIRST = ("test_regression.py", "test_distributed.py", "test_invariants.py", "test_interrupt.py",
                 "test_progress.py", "test_examples.py", "test_segments.py", "test_cli.py",
                 "test_scaling_experiments.py", "test_sweep.py", "test_several_correct.py", "test_noisy.py",
                 "test_claim_experiments.py", "test_sgd_lr.py", "test_updates.py", "test_hitting.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


P_MIN = 1e-3
"""Smallest acceptable p-value of a goodness-of-fit or two-sample test."""

N_SE = 5.0
"""Tolerance of Monte Carlo means, in standard errors (per coordinate, max-abs)."""


# ---------------------------------------------------------------------------------
# Exact enumeration and a NumPy bigram policy (PAPER.md §1)
# ---------------------------------------------------------------------------------


def all_responses(k: int, N: int) -> np.ndarray:
    """Every response of ``Y^N`` in lexicographic order: ``(k^N, N)`` int."""
    return np.array(list(itertools.product(range(k), repeat=N)), dtype=np.int32)


def cell_index(ys: np.ndarray, k: int) -> np.ndarray:
    """Index of each response in :func:`all_responses` order (base-``k`` digits)."""
    ys = np.asarray(ys)
    N = ys.shape[-1]
    return (ys * (k ** np.arange(N - 1, -1, -1))).sum(-1)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_bigram_logits(W1, W2, x, y):
    """Teacher-forced logits ``(N, k)``: ``x @ W1[:, y] + W2[y_{i-1}, y]``, no second
    term at ``i = 1``; written as an explicit loop over positions."""
    W1, W2, x = (np.asarray(a, np.float64) for a in (W1, W2, x))
    rows = []
    for i in range(len(y)):
        row = x @ W1
        if i > 0:
            row = row + W2[y[i - 1]]
        rows.append(row)
    return np.array(rows)


def np_bigram_token_log_probs(W1, W2, x, y):
    lp = _log_softmax(np_bigram_logits(W1, W2, x, y))
    return np.array([lp[i, y[i]] for i in range(len(y))])


def np_bigram_log_prob(W1, W2, x, y):
    return float(np_bigram_token_log_probs(W1, W2, x, y).sum())


def np_bigram_grad(W1, W2, x, y, coef):
    """``∇_{W1, W2} Σ_i c_i log p(y_i | x, y_<i)`` in float64:
    ``∇_{W1} += c_i · outer(x, e_{y_i} − p_i)``, ``∇_{W2}[y_{i-1}] += c_i (e_{y_i} − p_i)``."""
    W1, W2, x = (np.asarray(a, np.float64) for a in (W1, W2, x))
    k = W1.shape[1]
    p = np.exp(_log_softmax(np_bigram_logits(W1, W2, x, y)))
    g1, g2 = np.zeros_like(W1), np.zeros_like(W2)
    for i in range(len(y)):
        diff = np.eye(k)[y[i]] - p[i]
        g1 += coef[i] * np.outer(x, diff)
        if i > 0:
            g2[y[i - 1]] += coef[i] * diff
    return g1, g2


def np_token_steps(W1, W2, xs, ys, coef) -> np.ndarray:
    """The per-token reading of the adaptive step in float64: for each position ``i`` in
    order, ``W += mean_b c_{b,i}·g_b/(4 + 2‖g_b‖²)``, ``g_b = ∇ log p(y_{b,i}|x_b, y_{b,<i})``
    at the weights position ``i − 1`` left. Returns ``W1, W2`` as one flat vector."""
    W1, W2 = np.asarray(W1, np.float64), np.asarray(W2, np.float64)
    coef = np.asarray(coef, np.float64)
    B, n = coef.shape
    for i in range(n):
        d1, d2 = np.zeros_like(W1), np.zeros_like(W2)
        for b in range(B):
            g1, g2 = np_bigram_grad(W1, W2, xs[b], ys[b], np.eye(n)[i])
            eta = coef[b, i] / (4.0 + 2.0 * (np.sum(g1 * g1) + np.sum(g2 * g2))) / B
            d1, d2 = d1 + eta * g1, d2 + eta * g2
        W1, W2 = W1 + d1, W2 + d2
    return np.concatenate([W1.ravel(), W2.ravel()])


def flat(w) -> np.ndarray:
    """A weight pytree as one flat float64 NumPy vector."""
    leaves = jax.tree_util.tree_leaves(w)
    return np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in leaves])


def flat_batch(w) -> np.ndarray:
    leaves = jax.tree_util.tree_leaves(w)
    n = leaves[0].shape[0]
    return np.concatenate([np.asarray(a, np.float64).reshape(n, -1) for a in leaves], axis=1)


# ---------------------------------------------------------------------------------
# A task with a single fixed context (for exact expectations of one update)
# ---------------------------------------------------------------------------------


class FixedContextTask(lpg.tasks.AbstractTask):
    """Every context is ``x``, its correct response ``y_star`` (bigram features)."""

    x: jax.Array
    y_star: jax.Array
    N: int = eqx.field(static=True)
    k: int = eqx.field(static=True)

    @property
    def d(self) -> int:
        return self.x.shape[0]

    def sample_contexts(self, key, n: int):
        del key
        return jnp.broadcast_to(self.x, (n, self.d))

    def response(self, x):
        del x
        return self.y_star

    def feature_map(self):
        return lpg.Bigram(self.d, self.k)


# ---------------------------------------------------------------------------------
# Statistical tests
# ---------------------------------------------------------------------------------


def pooled_chisquare(observed, expected, min_expected: float = 5.0):
    """Chi-square goodness of fit after merging cells (smallest expectation first) until
    every merged cell expects at least ``min_expected`` (the partition depends on the
    expectations only). Returns the p-value; an observation in a cell of zero
    expectation fails at once."""
    observed = np.asarray(observed, np.float64)
    expected = np.asarray(expected, np.float64)
    assert observed.shape == expected.shape
    assert abs(observed.sum() - expected.sum()) < 1e-6 * expected.sum()
    assert not np.any((expected == 0) & (observed > 0)), "observation in an impossible cell"
    order = np.argsort(expected)
    obs, exp = list(observed[order]), list(expected[order])
    # Merge the smallest cells together until the merged cell is large enough.
    o_acc = e_acc = 0.0
    merged_o, merged_e = [], []
    for o, e in zip(obs, exp):
        o_acc += o
        e_acc += e
        if e_acc >= min_expected:
            merged_o.append(o_acc)
            merged_e.append(e_acc)
            o_acc = e_acc = 0.0
    if e_acc > 0 or o_acc > 0:
        if merged_o:
            merged_o[-1] += o_acc
            merged_e[-1] += e_acc
        else:
            merged_o.append(o_acc)
            merged_e.append(e_acc)
    if len(merged_o) < 2:
        return 1.0
    return float(stats.chisquare(merged_o, merged_e).pvalue)


def two_sample_discrete(a, b, min_expected: float = 5.0) -> float:
    """p-value of the chi-square test that two samples of a discrete variable have the
    same law (contingency table over the observed values, sparse cells merged)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    values = np.union1d(a, b)
    ca = np.array([(a == v).sum() for v in values], np.float64)
    cb = np.array([(b == v).sum() for v in values], np.float64)
    # Merge neighbouring values (in sorted order) until each merged cell is large enough
    # for both samples' expectations.
    frac_a = a.size / (a.size + b.size)
    need = min_expected / min(frac_a, 1 - frac_a)
    rows_a, rows_b = [], []
    acc_a = acc_b = 0.0
    for x, y in zip(ca, cb):
        acc_a += x
        acc_b += y
        if acc_a + acc_b >= need:
            rows_a.append(acc_a)
            rows_b.append(acc_b)
            acc_a = acc_b = 0.0
    if acc_a + acc_b > 0:
        if rows_a:
            rows_a[-1] += acc_a
            rows_b[-1] += acc_b
        else:
            rows_a.append(acc_a)
            rows_b.append(acc_b)
    if len(rows_a) < 2:
        return 1.0
    return float(stats.chi2_contingency(np.array([rows_a, rows_b])).pvalue)


def assert_mean_matches(samples, exact, n_se: float = N_SE, atol: float = 1e-6, what: str = ""):
    """Monte Carlo mean of ``samples`` (rows) equals ``exact`` within ``n_se`` standard
    errors in every coordinate (plus ``atol`` for float32 rounding)."""
    samples = np.asarray(samples, np.float64)
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    dev = np.abs(mean - exact)
    bad = dev > n_se * se + atol
    assert not bad.any(), (
        f"{what}: Monte Carlo mean off by {dev[bad]} > {n_se} SE = {n_se * se[bad]} "
        f"at coordinates {np.nonzero(bad)[0]} (exact {np.asarray(exact)[bad]}, mean {mean[bad]})"
    )
    return se


def assert_same_mean(a, b, n_se: float = N_SE, atol: float = 1e-6, what: str = ""):
    """Two independent samples (rows) have the same mean within ``n_se`` pooled standard
    errors per coordinate (plus ``atol``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    se = np.sqrt(a.var(0, ddof=1) / a.shape[0] + b.var(0, ddof=1) / b.shape[0])
    dev = np.abs(a.mean(0) - b.mean(0))
    bad = dev > n_se * se + atol
    assert not bad.any(), (
        f"{what}: means differ by {dev[bad]} > {n_se} pooled SE = {n_se * se[bad]} "
        f"at coordinates {np.nonzero(bad)[0]}"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(20260306)


@contextlib.contextmanager
def xla_optimisations(on: bool):
    """Turn most XLA compiler optimisations on or off inside the block."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", not on)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def fast_compile():
    """Compile with most XLA optimisations off during a test.

    The statistical and reference tests run many small, different programs once each,
    so compiling dominates their time (about half of it is spent optimising);
    optimisation changes speed, not what the program computes. Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("fast_compile")``; tests of what users run
    compiled (jit vs un-jitted, vmap vs loop) use ``xla_optimisations(True)``."""
    with xla_optimisations(False):
        yield


def default_sigint() -> None:
    """``preexec_fn`` of a child that a test interrupts: SIGINT handled as by default
    (Python's KeyboardInterrupt), also when the test run itself ignores it, as a
    background job of a non-interactive shell does."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def python_sigint():
    """SIGINT raising KeyboardInterrupt in this process for the duration (restored after),
    also when the test run ignores it."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


_SANITY_COMPILES = itertools.count(7)


def assert_raise_before_compiling(calls: dict) -> None:
    """Each of ``calls`` (name -> a function of no argument) raises ``ValueError`` with no
    backend compile on the way; a compile of a new shape first shows that compiles are
    observed, so the check is not vacuous."""
    events = []

    def listener(event, duration, **kw):
        if "backend_compile" in event:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.jit(lambda v: v * 3.0 + 1.0)(jnp.arange(float(next(_SANITY_COMPILES)))).block_until_ready()
        assert events, "compile events are not observable; the check below would be vacuous"
        for name, call in calls.items():
            events.clear()
            with pytest.raises(ValueError):
                call()
            assert not events, f"{name} compiled before raising"
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
