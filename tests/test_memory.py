"""Memory known before compiling (lpg/memory.py, lpg.sweep.memory_plan; issue 12).

The estimate from the traced program is checked against XLA's own figure for the
compiled program (``memory_analysis()``: temporaries + outputs + arguments − aliased)
within a factor of 2, over experiments and over the sizes that dominate each phase of
the main job (PG batch, N, k, test set, the well-posedness draws). A sweep without a
chunk size takes the largest chunk that fits half the budget, and gives the per-run
results of the unchunked sweep; one that cannot fit is refused with one line, before
its program is compiled, and a refused run leaves nothing on disk."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg import memory, sweep as sweep_mod
from lpg.experiments import get
from lpg.sweep import memory_plan, sweep

from test_cli import one_error_line, run_cli, snapshot


def xla_bytes(program) -> int:
    m = program.compile().memory_analysis()
    return m.temp_size_in_bytes + m.output_size_in_bytes + m.argument_size_in_bytes - m.alias_size_in_bytes


slow = pytest.mark.skipif(os.environ.get("LPG_SLOW") != "1", reason="slow: set LPG_SLOW=1")
SMALL = {"pretrain_steps": "2", "pg_steps": "2", "log_every": "1", "n_test": "64", "n_wellposed": "16"}
CASES = {  # the phase each one makes the largest, at 15-600 MB (below ~10 MB XLA's fixed costs dominate)
    "figure2": ("figure2", {"batch_size": "4096"}),
}
SLOW_CASES = {  # LPG_SLOW=1 (measured ratios 0.59, 1.57, 0.61, 0.91, 0.67 and 0.94 when written)
    "barrier PG batch": ("barrier", {"pg_batch": "16384"}),
    "barrier k": ("barrier", {"k": "256"}),
    "barrier pre-training batch": ("barrier", {"pretrain_batch": "32768"}),
    "barrier well-posedness draws": ("barrier", {"d": "128", "n_centres": "128", "n_wellposed": "256"}),
    "barrier N": ("barrier", {"N": "2048"}),
    "barrier test set": ("barrier", {"n_test": "32768"}),
}


@pytest.mark.parametrize("case", list(CASES) + [pytest.param(c, marks=slow) for c in SLOW_CASES])
def test_estimate_within_a_factor_of_two_of_xla(case):
    name, over = {**CASES, **SLOW_CASES}[case]
    exp = get(name)
    config = exp.resolve({**(SMALL if name == "barrier" else {}), **over}, profile="quick")
    sw = next(iter(exp.sweeps(config)))
    plan = memory_plan(sw.fn, dict(sw.grid), seeds=2, chunk_size=2, vmap_size=sw.vmap_size)
    compiled = xla_bytes(plan.program)
    assert compiled > 0
    ratio = plan.needed / compiled
    assert 0.5 <= ratio <= 2.0, (case, plan.needed, compiled, ratio)


def test_estimate_of_a_known_program():
    """``sum(exp(x @ x.T), axis=1)``: the (n, n) product is held (a dot's output) and so
    is its ``exp`` (the operand of a sum), so the peak, when ``exp`` is made, is the
    argument plus two (n, n) arrays; ``exp(x) + 1`` then a max is fused entirely."""
    n = 512

    def f(x):
        return jnp.sum(jnp.exp(x @ x.T), axis=1)

    est = memory.estimate(jax.jit(f).trace(jnp.ones((n, 64), jnp.float32)).jaxpr)
    assert est == int(memory.CALIBRATION * 4 * (n * 64 + 2 * n * n))
    fused = memory.estimate(jax.jit(lambda x: jnp.max(jnp.exp(x) + 1.0, axis=1)).trace(jnp.ones((n, n))).jaxpr)
    assert fused == int(memory.CALIBRATION * 4 * (n * n + n))


def big_run(key, scale):
    """One run holding a (512, 512) float32 matrix (1 MiB) per run."""
    a = jax.random.normal(key, (512, 512)) * scale
    return {"v": jnp.sum(a @ a, axis=1)[:4]}


def test_automatic_chunk_fits_half_the_budget_and_matches_unchunked(monkeypatch):
    grid = {"scale": [1.0, 2.0]}
    one = memory_plan(big_run, grid, seeds=1, chunk_size=1)  # one run's estimate
    monkeypatch.setenv(memory.ENV, str(int(one.needed * 2 * 2.5)))  # half the budget holds 2.5 runs
    plan = memory_plan(big_run, grid, seeds=8)
    assert plan.chunk_size == 2 and plan.needed <= plan.available // 2
    chunked = sweep(big_run, grid, seeds=8, progress=False)
    monkeypatch.delenv(memory.ENV)
    whole = sweep(big_run, grid, seeds=8, progress=False)
    np.testing.assert_array_equal(chunked.outputs["v"], whole.outputs["v"])


def test_a_chunk_that_cannot_fit_is_refused_before_compiling(monkeypatch):
    monkeypatch.setenv(memory.ENV, "1M")
    monkeypatch.setattr(sweep_mod._Program, "compile", lambda self: pytest.fail("compiled a refused program"))
    with pytest.raises(ValueError, match=r"a chunk of 4 runs needs about .* more than the 1 MiB set by LPG_MEMORY; "
                                         r"lower chunk_size \(now 4\), vmap_size .*, scale \(now 2\)"):
        sweep(big_run, {"scale": [1.0]}, seeds=4, chunk_size=4, sizes={"scale": 2})


@pytest.mark.parametrize("value", ["0", "-1G", "lots", "1X"])
def test_memory_budget_must_be_an_amount(monkeypatch, value):
    monkeypatch.setenv(memory.ENV, value)
    with pytest.raises(ValueError, match="LPG_MEMORY must be a positive amount of memory"):
        memory.available()


def test_parse_bytes_units():
    assert memory.parse_bytes("8G") == 8 * 2**30
    assert memory.parse_bytes("1.5g") == 3 * 2**29
    assert memory.parse_bytes("500MiB") == 500 * 2**20
    assert memory.parse_bytes("4096") == 4096


def test_cli_refuses_a_run_too_big_for_memory_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(memory.ENV, "200M")
    out = tmp_path / "big"
    before = snapshot(tmp_path)
    code, _, err = run_cli(["run", "barrier", "--out", str(out), "--seeds", "2", "--set", "N=4096", "pg_steps=2",
                            "log_every=1", "pretrain_steps=2"], capsys)
    assert code == 2
    line = one_error_line(err, "barrier:runs", "needs about", "set by LPG_MEMORY", "N (now 4096)", "pg_batch (now")
    assert "GiB" in line or "MiB" in line
    assert snapshot(tmp_path) == before  # no output, no staging directory, no lock
