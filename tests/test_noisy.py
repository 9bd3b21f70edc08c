"""Noisy verifiers and the noisy Algorithms 1 and 2 (:mod:`lpg.noisy`; issue 14, Q1).

* the verifiers' laws against exact enumeration of ``Y^N`` (``k = 2, N = 3``) and of
  every verdict pattern, in plain NumPy;
* each noisy algorithm's exact event path against its sampled path (the same means of
  queries, accepted prefix length, correctness and accepted tokens, within ``N_SE``
  pooled standard errors, fixed seeds), and both against a NumPy closed form at ``ρ₊ = 0``;
* the experiment end to end at a tiny config, and bad settings.
"""

from __future__ import annotations

import functools
import itertools
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lpg
from conftest import N_SE, all_responses, assert_mean_matches, assert_same_mean
from lpg.experiments import get
from lpg.noisy import NoisyBestOfM, NoisyOutcome, NoisyProcess, NoisyTokenBestOfM
from lpg.problem import planted_problem
from lpg.results import read_results, to_jsonable

pytestmark = pytest.mark.usefixtures("fast_compile")

RP, RM = 0.2, 0.3
DRAWS = 6000


# ---------------------------------------------------------------------------------
# The verifiers' laws (exact enumeration)
# ---------------------------------------------------------------------------------


def np_accepted_prefix_law(L: int, length: int, rp: float, rm: float) -> np.ndarray:
    """``P(R = r)``, ``r = 0..length``, by enumerating every verdict pattern of the
    ``length`` prefixes (prefix ``i`` correct iff ``i < L``)."""
    law = np.zeros(length + 1)
    for verdicts in itertools.product((0, 1), repeat=length):
        p = 1.0
        for i, v in enumerate(verdicts):
            accept = (1 - rm) if i < L else rp
            p *= accept if v else 1 - accept
        R = next((i for i, v in enumerate(verdicts) if not v), length)
        law[R] += p
    return law


@pytest.mark.parametrize("length", [3, 2])
def test_verifier_laws_match_enumeration(length):
    """Every response of ``{0,1}^3``: the outcome verdict is 1 with probability ``1 − ρ₋`` on
    ``y*`` and ``ρ₊`` elsewhere; the process verifier's accepted prefix ``R`` has the law
    of the enumerated verdict patterns; rewards are ``1[i < R]`` (``±1``) and the queries
    ``min(R + 1, length)``."""
    k, N = 2, 3
    ys = jnp.asarray(all_responses(k, N))
    y_star = jnp.asarray([0, 1, 1], jnp.int32)
    out, out_pm = NoisyOutcome(RP, RM), NoisyOutcome(RP, RM, signed=True)
    proc, proc_pm = NoisyProcess(RP, RM), NoisyProcess(RP, RM, signed=True)
    x = jnp.zeros(1)

    @jax.jit
    def draw(keys, length):
        def one(y, key):
            r = proc(x, y, y_star, length, key=key)
            return (out(x, y, y_star, length, key=key), out_pm(x, y, y_star, length, key=key), r,
                    proc_pm(x, y, y_star, length, key=key),
                    proc.queries(x, y, y_star, length, key=key), proc.accepted_prefix(y, y_star, length, key))
        return jax.vmap(lambda y: jax.vmap(lambda kk: one(y, kk))(keys))(ys)

    o, o_pm, r, r_pm, q, R = (np.asarray(a) for a in draw(jax.random.split(jax.random.PRNGKey(3), DRAWS), length))
    real = np.arange(N) < length
    for j, y in enumerate(np.asarray(ys)):
        is_star = bool(np.all((y == np.asarray(y_star)) | ~real))
        assert_mean_matches(o[j][:, None], np.array([1 - RM if is_star else RP]), what=f"outcome verdict y={y}")
        np.testing.assert_array_equal(o_pm[j], 2.0 * o[j] - 1.0)  # the same verdict (same key), signed
        L = next((i for i in range(length) if y[i] != y_star[i]), length)
        one_hot = (R[j][:, None] == np.arange(length + 1)).astype(float)
        assert_mean_matches(one_hot, np_accepted_prefix_law(L, length, RP, RM), what=f"process law y={y}")
        expect = (np.arange(N)[None] < R[j][:, None]) & real
        np.testing.assert_array_equal(r[j], expect.astype(np.float32))
        np.testing.assert_array_equal(r_pm[j], np.where(real, 2.0 * expect - 1.0, 0.0))
        np.testing.assert_array_equal(q[j], np.minimum(R[j] + 1, length))
    with pytest.raises(ValueError, match="key"):
        proc.queries(x, ys[0], y_star, length)


def test_policy_gradient_counts_a_noisy_process_verifiers_queries():
    """``lpg.PolicyGradient`` hands the noisy process verifier the key of its verdicts, so
    its query count is the verdicts' own: a verifier that rejects everything is asked once
    per sample, one that accepts everything ``length`` times, and at ``ρ₊ = ρ₋ = 0`` the
    step (weights and queries) is the exact process verifier's."""
    task, problem, w, _ = _setup(3, 4)
    h = lpg.hyper(lr=0.1)
    B, G = 4, 8

    one_step = eqx.filter_jit(lambda alg, k: alg.step(alg.init(w, h), k, problem, h))  # ρ₊, ρ₋ traced: one program

    def step(reward):
        alg = lpg.PolicyGradient(reward, batch_size=B, group_size=G, optimizer="constant", event_path=False)
        st, m = one_step(alg, jax.random.PRNGKey(1))
        return np.asarray(st.w), lpg.rewards.value_of(m.queries)

    assert step(NoisyProcess(0.0, 1.0))[1] == B * G
    assert step(NoisyProcess(1.0, 0.0))[1] == B * G * problem.length
    w_noisy, q_noisy = step(NoisyProcess(0.0, 0.0))
    w_exact, q_exact = step(lpg.rewards.Process())
    np.testing.assert_array_equal(w_noisy, w_exact)
    assert q_noisy == q_exact and B * G < q_exact < B * G * problem.length


# ---------------------------------------------------------------------------------
# The noisy algorithms: event path vs sampled path vs NumPy
# ---------------------------------------------------------------------------------


def _np_mixture(task, w0, x_idx: int, prev: int) -> np.ndarray:
    """``½q0(·|x, prev) + ½Unif`` of a planted task (logits ``scale·w0[c, (y − prev) mod k]``)."""
    k, scale = task.k, task.fmap.scale
    logits = scale * np.asarray(w0, np.float64)[x_idx][(np.arange(k) - max(prev, 0)) % k]
    q = np.exp(logits - logits.max())
    return 0.5 * q / q.sum() + 0.5 / k


def _np_star_prob(task, w, x_idx: int, y_star) -> float:
    p, prev = 1.0, -1
    for t in y_star:
        logits = task.fmap.scale * np.asarray(w, np.float64)[x_idx][(np.arange(task.k) - max(prev, 0)) % task.k]
        q = np.exp(logits - logits.max())
        p *= q[t] / q.sum()
        prev = t
    return p


def _setup(k: int, N: int):
    task = lpg.make_planted(jax.random.PRNGKey(5), k=k, N=N, gamma=0.5)
    kw, k0 = jax.random.split(jax.random.PRNGKey(6))
    w = 1.5 * jax.random.normal(kw, (task.d, task.k))
    w0 = 1.5 * jax.random.normal(k0, (task.d, task.k))
    problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0)
    return task, problem, w, w0


def _draws(alg_cls, ver_cls, k, N, m, rp, rm, event: bool, key):
    """``DRAWS`` calls of one context's path: (queries, accepted length or success, correct,
    coefficient-weighted one-hot of the accepted tokens); ``ρ₊, ρ₋`` traced."""
    lq, c, ok, hot = _path(alg_cls, ver_cls, k, N, m, event)(jax.random.split(key, DRAWS), rp, rm)
    return np.column_stack([np.exp(np.asarray(lq, np.float64)), c, ok, hot])


@functools.lru_cache(maxsize=None)
def _path(alg_cls, ver_cls, k, N, m, event):
    """The compiled path of one context of :func:`_setup` (one compile for every ``ρ₊, ρ₋``)."""
    _, problem, w, _ = _setup(k, N)
    x, y = problem.track_x[0], problem.track_y[0]
    hyper = lpg.Hyper(jnp.float32(1.0), jnp.float32(math.log(m)), jnp.float32(jnp.inf))

    @jax.jit
    def run(keys, rp, rm):
        alg = alg_cls(ver_cls(rp, rm), event_path=event)
        one = alg._event_one if event else alg._sample_one

        def draw(kk):
            coef, queries, correct, acc = one(w, kk, problem, x, y, hyper)
            hot = jax.nn.one_hot(acc, problem.k) * jnp.reshape(coef, (-1, 1) if coef.ndim else (1, 1))
            return lpg.rewards.log_of(queries), jnp.sum(coef), correct, hot.reshape(-1)

        return jax.vmap(draw)(keys)

    return run


@pytest.mark.parametrize("rp", [0.0, RP])
def test_noisy_token_best_of_m_event_path_matches_sampled_path(rp):
    """Algorithm 2 with a noisy process verifier (``k = 3, N = 3, m = 3``, random policy
    and base): the exact event path and the sampled path agree on the mean queries,
    accepted prefix length, correctness and accepted tokens per position; at ``ρ₊ = 0``
    the correctness and queries match the NumPy closed form of the module docstring."""
    task, problem, w, w0 = _setup(3, 3)
    m = 3
    ev = _draws(NoisyTokenBestOfM, NoisyProcess, 3, 3, m, rp, RM, True, jax.random.PRNGKey(1))
    sa = _draws(NoisyTokenBestOfM, NoisyProcess, 3, 3, m, rp, RM, False, jax.random.PRNGKey(2))
    assert_same_mean(ev, sa, what=f"Algorithm 2 event vs sampled, rho_plus={rp}")
    if rp == 0.0:
        y_star = np.asarray(problem.track_y[0])
        p_star = _np_star_prob(task, w, 0, y_star)
        reach, walk_q, prev = 1.0, 0.0, -1
        for t in y_star:
            a = _np_mixture(task, w0, 0, prev)[t] * (1 - RM)
            walk_q += reach * (1 - (1 - a) ** m) / a  # E[min(G, m)], G ~ Geometric(a)
            reach *= 1 - (1 - a) ** m
            prev = t
        on = p_star * (1 - RM)
        exact = np.array([1 + (1 - on) * walk_q, on + (1 - on) * reach])
        for path in (ev, sa):
            assert_mean_matches(path[:, [0, 2]], exact, what="Algorithm 2 vs NumPy at rho_plus = 0")


@pytest.mark.parametrize("rp", [0.0, RP])
def test_noisy_best_of_m_event_path_matches_sampled_path(rp):
    """Algorithm 1 with a noisy outcome verifier (``k = 2, N = 2, m = 3``): event path vs
    sampled path on the mean queries, acceptance, correctness and accepted response; at
    ``ρ₊ = 0`` both match the NumPy closed form."""
    task, problem, w, w0 = _setup(2, 2)
    m = 3
    ev = _draws(NoisyBestOfM, NoisyOutcome, 2, 2, m, rp, RM, True, jax.random.PRNGKey(3))
    sa = _draws(NoisyBestOfM, NoisyOutcome, 2, 2, m, rp, RM, False, jax.random.PRNGKey(4))
    assert_same_mean(ev, sa, what=f"Algorithm 1 event vs sampled, rho_plus={rp}")
    if rp == 0.0:
        y_star = np.asarray(problem.track_y[0])
        rho = 0.5 * _np_star_prob(task, w0, 0, y_star) + 0.5 / task.k ** 2
        a = rho * (1 - RM)
        on = _np_star_prob(task, w, 0, y_star) * (1 - RM)
        found = 1 - (1 - a) ** m
        exact = np.array([1 + (1 - on) * found / a, on + (1 - on) * found])
        for path in (ev, sa):
            assert_mean_matches(path[:, [0, 2]], exact, what="Algorithm 1 vs NumPy at rho_plus = 0")


def test_noisy_objects_check_their_arguments():
    with pytest.raises(ValueError, match="rho_plus"):
        NoisyOutcome(rho_plus=1.5)
    with pytest.raises(ValueError, match="rho_minus"):
        NoisyProcess(rho_minus=-0.1)
    with pytest.raises(ValueError, match="NoisyProcess"):
        NoisyTokenBestOfM(NoisyOutcome())
    with pytest.raises(ValueError, match="NoisyOutcome"):
        NoisyBestOfM(NoisyProcess())


# ---------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------

TINY = {"Ns": "2,4", "rho_plus": "0,0.1", "rho_minus": "0,0.5", "max_steps": "60", "check_every": "10",
        "pg_rho_plus": "0,0.5", "pg_rho_minus": "0,0.5", "pg_steps": "40", "n_boot": "50"}


def test_tiny_run_end_to_end(tmp_path):
    exp = get("noisy-verifiers")
    config = exp.resolve(TINY)
    summary = exp.run(config, seeds=2, out_dir=tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(to_jsonable(summary), allow_nan=False))
    assert {"algorithms", "advantage", "pg", "slopes", "verdict", "answer", "prediction3"} <= set(summary)
    assert set(summary["algorithms"]) == {"alg1", "alg2"}
    for rec in summary["slopes"].values():
        assert rec["verdict"] in ("confirmed", "not confirmed", "reported", "not estimable")
    for v in summary["verdict"].values():
        assert v in ("confirmed", "not estimable") or v.startswith("not confirmed")
    pg = summary["pg"]["rp=0,rm=0"]
    assert pg["star"]["count"] + pg["wrong"]["count"] + pg["undecided"]["count"] == pg["star"]["of"] == 2 * 5
    _, table, _ = read_results(tmp_path)
    assert set(table.unique("part")) == {"alg1", "alg2", "pg"}
    paths = exp.plot(tmp_path)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 1000 for p in paths)
    assert exp.text(summary) and exp.text(on_disk)


@pytest.mark.parametrize("key,value,needle", [
    ("rho_minus", "0,1", "rho_minus"),
    ("rho_plus", "0,1.5", "rho_plus"),
    ("Ns", "4,2", "Ns"),
    ("pg_log_every", "7", "pg_log_every"),
    ("check_every", "7", "check_every"),
    ("pg_alpha", "1", "pg_alpha"),
])
def test_bad_settings_raise(key, value, needle):
    with pytest.raises(ValueError, match=needle):
        get("noisy-verifiers").resolve({key: value})


def test_prediction3_check_reads_censoring():
    """Prediction 3's check: reached below 1/(2f), censored above 2/f passes; the reverse fails."""
    from lpg.experiments.noisy_verifiers import false_accept_share, key_of, prediction3

    config = {"k": 4, "rho_plus": [0.0, 0.1], "rho_minus": [0.0], "Ns": [2, 16]}
    assert 1 / (2 * false_accept_share(config, 0.1, 0.0)) > 2 and 2 / false_accept_share(config, 0.1, 0.0) < 16
    good = {key_of(0.1, 0.0): {"N": [2, 16], "median_log10_queries": [3.0, float("nan")]}}
    bad = {key_of(0.1, 0.0): {"N": [2, 16], "median_log10_queries": [None, 5.0]}}
    assert prediction3(good, config) == {"judged": 2, "ok": True, "failures": []}
    out = prediction3(bad, config)
    assert out["judged"] == 2 and not out["ok"] and len(out["failures"]) == 2
    assert N_SE > 0
