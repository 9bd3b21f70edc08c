"""The scripts in examples/ run end to end at a tiny size (``--tiny``), and the custom
reward of ``examples/custom_reward.py`` is checked against exact enumeration."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FixedContextTask, all_responses, assert_mean_matches, np_bigram_grad, np_bigram_log_prob

import lpg

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--tiny", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", cwd=tmp_path)
    lines = out.strip().splitlines()
    assert lines[0].startswith("ORM: test error [") and lines[1].startswith("PRM: test error [")


def test_custom_sweep_writes_results_and_resumes(tmp_path):
    out = run_example("custom_sweep.py", "--out", "res", cwd=tmp_path)
    assert "adaptive: final test error by N" in out and "constant: final test error by N" in out
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert set(summary) == {"adaptive", "constant"}
    assert all(v["n"] == 2 for v in summary["adaptive"].values())
    again = run_example("custom_sweep.py", "--out", "res", "--resume", cwd=tmp_path)
    assert again == out  # resumed from the checkpoints: the same numbers


def _custom_reward_module():
    spec = importlib.util.spec_from_file_location("custom_reward", ROOT / "examples" / "custom_reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_reward_trains_and_sweeps(tmp_path):
    out = run_example("custom_reward.py", cwd=tmp_path).strip().splitlines()
    assert out[0].startswith("test error of the base model:")
    errors = {line.split(":")[0]: float(line.split("final test error ")[1].split()[0]) for line in out[1:]}
    assert set(errors) == {"rho=0.00", "rho=0.20", "rho=0.50"}
    assert all(0.0 <= e <= 1.0 for e in errors.values())


@pytest.mark.usefixtures("fast_compile")
def test_custom_reward_expected_update_and_exactness():
    # A reward defined outside lpg: (a) at ρ = 0 it trains bit for bit like the built-in
    # outcome reward on the sampled path; (b) at ρ = 0.3 the Monte Carlo mean of one update
    # equals the exact E_y[p(y) E[r|y] ∇log p(y)] over all of Y^N, E[r|y] = ρ + (1−2ρ)1[y=y*].
    flipped = _custom_reward_module().FlippedOutcome
    K, N, rho = 3, 2, 0.3
    rng = np.random.default_rng(3)
    x = np.array([1.0, -0.5], np.float32)
    W1, W2 = (0.3 * rng.standard_normal((2, K))).astype(np.float32), (0.3 * rng.standard_normal((K, K))).astype(np.float32)
    ys = all_responses(K, N)
    p = np.exp([np_bigram_log_prob(W1, W2, x, y) for y in ys])
    y_star = ys[np.argmax(p)]
    task = FixedContextTask(jnp.asarray(x), jnp.asarray(y_star, jnp.int32), N, K)
    problem = lpg.make_problem(task, key=jax.random.PRNGKey(0), n_test=1)
    w0 = lpg.BigramParams(jnp.asarray(W1), jnp.asarray(W2))
    h = lpg.hyper(lr=1.0)

    def run(reward, key):
        alg = lpg.PolicyGradient(reward, batch_size=2, optimizer="constant", event_path=False)
        return lpg.train(alg, problem, h, key, steps=6, log_every=3, w0=w0)

    for key in jax.random.split(jax.random.PRNGKey(1), 2):
        a, b = run(flipped(jnp.float32(0.0)), key), run(lpg.rewards.Outcome(), key)
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_array_equal(u, v)

    alg = lpg.PolicyGradient(flipped(jnp.float32(rho)), batch_size=1, optimizer="constant")
    n = 20000
    upd = jax.jit(jax.vmap(lambda k: alg.step(alg.init(w0, h), k, problem, h)[0].w))(jax.random.split(jax.random.PRNGKey(2), n))
    mc = np.concatenate([np.asarray(u, np.float64).reshape(n, -1) - np.asarray(w, np.float64).ravel()
                         for u, w in zip(upd, w0)], axis=1)
    hit = (ys == y_star).all(1)
    exact = sum(p[i] * (rho + (1 - 2 * rho) * hit[i]) * np.concatenate([g.ravel() for g in
                np_bigram_grad(W1, W2, x, y, np.ones(N))]) for i, y in enumerate(ys))
    se = assert_mean_matches(mc, exact, what="noisy verifier")
    assert np.abs(exact).max() > 10 * se.max()
