"""Several correct responses per context (``lpg.multi``) and the ``several-correct`` experiment.

* The answer sets and both rewards against exact enumeration of all ``k^N`` responses
  (``k = N = 3``), with the sets rebuilt in plain NumPy (free positions; greedy teachers).
* The law of the set (``P(y ∈ S) = Σ_j q(m_j)``) and the expected 0/1 PG update
  ``Σ_{y∈S} q(y)∇log q(y)`` by enumeration, against the event path (Monte Carlo within
  ``N_SE`` standard errors) and the event path against the sampled path.
* Algorithm 1 and Algorithm 2 on the set: event path against sampled path, and both
  against exact expectations (success, queries, accepted member) computed in NumPy.
* The experiment end to end at a tiny config; bad settings.
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (all_responses, assert_mean_matches, assert_raise_before_compiling, assert_same_mean,
                      np_bigram_grad, np_bigram_log_prob, np_bigram_logits)

import lpg
from lpg import multi
from lpg.experiments import get
from lpg.rewards import value_of

pytestmark = pytest.mark.usefixtures("fast_compile")

K, N, D = 3, 3, 3
DRAWS = 4000


@pytest.fixture(scope="module")
def setup():
    task = lpg.make_teacher(jax.random.PRNGKey(5), d=D, k=K, N=N)
    rng = np.random.default_rng(1)
    base = lpg.BigramParams(jnp.asarray(rng.normal(size=(D, K)), jnp.float32),
                            jnp.asarray(rng.normal(size=(K, K)), jnp.float32))
    w = lpg.BigramParams(jnp.asarray(0.7 * rng.normal(size=(D, K)), jnp.float32),
                         jnp.asarray(0.7 * rng.normal(size=(K, K)), jnp.float32))
    problem = lpg.make_problem(task, key=jax.random.PRNGKey(0), n_test=8, base=base)
    teachers = multi.make_teachers(jax.random.PRNGKey(9), n_extra=3, k=K, d=D)
    return problem, w, teachers


def np_teacher(A, B, x):
    A, B, x = (np.asarray(a, np.float64) for a in (A, B, x))
    y, prev = [], -1
    for _ in range(N):
        logits = A @ x + (B[:, prev] if prev >= 0 else 0.0)
        prev = int(np.argmax(logits))
        y.append(prev)
    return tuple(y)


def np_set(kind, answers, x, y_star, size) -> set:
    """The set ``S(x)`` in NumPy: ``y*`` with the first ``size`` of positions free, or the
    task's ``y*`` and the first ``size − 1`` extra teachers' greedy responses."""
    y_star = tuple(int(t) for t in y_star)
    if kind == "free":
        free = answers.positions[:size]
        return {tuple(y) for y in all_responses(K, N) if all(y[i] == y_star[i] for i in range(N) if i not in free)}
    return {y_star} | {np_teacher(answers.A[j], answers.B[j], x) for j in range(size - 1)}


def answer_sets(teachers):
    yield "free", multi.FreePositions(K, (0, 2), 1), 1
    yield "free", multi.FreePositions(K, (0, 2), 2), 2
    for n in (1, 2, 4):
        yield "teachers", multi.Teachers(teachers.A, teachers.B, n), n


def np_prefix_len(y, members) -> int:
    best = 0
    for m in members:
        L = 0
        while L < N and y[L] == m[L]:
            L += 1
        best = max(best, L)
    return best


def np_log_probs(w, x, ys) -> np.ndarray:
    return np.array([np_bigram_log_prob(w.W1, w.W2, x, y) for y in ys])


@eqx.filter_jit
def _rewards_and_law(answers, fmap, w, x, y_star, ys):
    """Both rewards and the queries of every response, ``|S(x)|`` and ``log p_w(S(x)|x)``."""
    proc = multi.SetProcess(answers)
    outcome = jax.vmap(lambda y: multi.SetOutcome(answers)(x, y, y_star, N))(ys)
    r = jax.vmap(lambda y: proc(x, y, y_star, N))(ys)
    q = jax.vmap(lambda y: proc.queries(x, y, y_star, N))(ys)
    lp = multi.log_set_prob(lambda m: lpg.policy.log_prob(fmap, w, x, m), answers.members(x, y_star),
                            answers.active(x, y_star, N))
    return outcome, r, q, answers.size(x, y_star, N), lp


def test_rewards_and_law_match_enumeration(setup):
    problem, w, teachers = setup
    ys = all_responses(K, N)
    for c in range(3):
        x, y_star = problem.test_x[c], problem.test_y[c]
        lq = np_log_probs(w, x, ys)
        for kind, answers, size in answer_sets(teachers):
            ref = np_set(kind, answers, x, y_star, size)
            outcome, r, q, n, lp = _rewards_and_law(answers, problem.fmap, w, x, y_star, jnp.asarray(ys))
            L = np.array([np_prefix_len(tuple(y), ref) for y in ys])
            np.testing.assert_array_equal(np.asarray(outcome), [float(tuple(y) in ref) for y in ys])
            np.testing.assert_array_equal(np.asarray(r), (np.arange(N) < L[:, None]).astype(np.float32))
            np.testing.assert_array_equal(np.asarray(q), np.minimum(L + 1, N))
            assert int(n) == len(ref)
            p_set = float(np.exp(lq)[[tuple(y) in ref for y in ys]].sum())
            np.testing.assert_allclose(float(jnp.exp(lp)), p_set, rtol=2e-5)


def _flat_np_grad(w, x, y):
    g1, g2 = np_bigram_grad(w.W1, w.W2, x, y, np.ones(N))
    return np.concatenate([g1.ravel(), g2.ravel()])


def test_pg_update_event_vs_sampled_vs_enumeration(setup):
    """The 0/1 PG update on the drawn member: its mean over draws equals
    ``Σ_{y∈S} q(y)∇log q(y)`` by enumeration, on the event and on the sampled path."""
    problem, w, teachers = setup
    x, y_star = problem.test_x[1], problem.test_y[1]
    ys = all_responses(K, N)
    lq = np_log_probs(w, x, ys)
    answers = multi.Teachers(teachers.A, teachers.B, 4)
    ref = np_set("teachers", answers, x, y_star, 4)
    assert len(ref) >= 2, "the test needs a branching set"
    exact = sum(np.exp(lq[i]) * _flat_np_grad(w, x, y) for i, y in enumerate(ys) if tuple(y) in ref)
    members = np.asarray(answers.members(x, y_star))
    grads = {tuple(m): _flat_np_grad(w, x, m) for m in members}
    reward = multi.SetOutcome(answers)
    xs, yss = x[None], y_star[None]
    out = {}
    for path in (True, False):
        alg = multi.SetPolicyGradient(reward, event_path=path)
        assert alg.event_path is path
        draw = alg._event if path else alg._sample
        _, yg, coef, queries, correct, _ = jax.jit(jax.vmap(
            lambda k: draw(w, k, problem, xs, yss, lpg.hyper())))(jax.random.split(jax.random.PRNGKey(path), DRAWS))
        yg, coef = np.asarray(yg)[:, 0], np.asarray(coef)[:, 0]
        g = np.stack([c * grads[tuple(y)] if c else np.zeros_like(exact) for y, c in zip(yg, coef)])
        assert_mean_matches(g, exact, what=f"PG update, event_path={path}")
        assert np.all(np.asarray(queries) == 1)
        out[path] = g
    assert_same_mean(out[True], out[False], what="PG update, event vs sampled")


def np_mixture_token(problem, x, prefix) -> np.ndarray:
    """``½q0(·|x, prefix) + ½/k`` in NumPy."""
    W1, W2 = problem.base.W1, problem.base.W2
    y = list(prefix) + [0]
    logits = np_bigram_logits(W1, W2, x, y)[-1]
    p = np.exp(logits - logits.max())
    return 0.5 * p / p.sum() + 0.5 / K


def test_best_of_m_event_vs_sampled_vs_exact(setup):
    """Algorithm 1 on a set: success, queries and the accepted member, against
    ``P(on-policy) = p(S)``, ``E[queries] = 1 + (1 − p(S))(1 − (1−ρ)^m)/ρ`` and
    ``P(accept m_j) = p(m_j) + (1 − p(S))(1 − (1−ρ)^m)ρ(m_j)/ρ``, ``ρ = ρ(S)``."""
    problem, w, teachers = setup
    x, y_star = problem.test_x[2], problem.test_y[2]
    answers = multi.FreePositions(K, (0, 2), 2)
    members = [tuple(m) for m in np.asarray(answers.members(x, y_star))]
    p = np.exp(np_log_probs(w, x, members))
    lq0 = np_log_probs(problem.base, x, members)
    rho = 0.5 * np.exp(lq0) + 0.5 * K ** -N
    m = 3
    reach = 1 - (1 - rho.sum()) ** m
    exact = np.concatenate([[p.sum() + (1 - p.sum()) * reach, 1 + (1 - p.sum()) * reach / rho.sum()],
                            p + (1 - p.sum()) * reach * rho / rho.sum()])
    hyper = lpg.hyper(m=m)
    out = {}
    for path in (True, False):
        alg = multi.SetBestOfM(reward=multi.SetOutcome(answers), event_path=path)
        one = alg._event_one if path else alg._sample_one
        coef, q, success, y_acc = jax.jit(jax.vmap(lambda k: one(w, k, problem, x, y_star, hyper)))(
            jax.random.split(jax.random.PRNGKey(10 + path), DRAWS))
        y_acc = np.asarray(y_acc)
        which = np.array([[float(s and tuple(y) == mm) for mm in members] for y, s in zip(y_acc, np.asarray(success))])
        rows = np.column_stack([np.asarray(success, np.float64), value_of(q), which])
        assert_mean_matches(rows, exact, what=f"Algorithm 1 on a set, event_path={path}")
        out[path] = rows
    assert_same_mean(out[True], out[False], what="Algorithm 1 on a set, event vs sampled")


def np_walk(problem, x, members, m):
    """Algorithm 2's walk on the trie of ``members`` from the empty prefix, with at most
    ``m`` draws per position: ``(E[draws], P(reach length N), P(prefix))`` by recursion."""
    prefix_prob = {}

    def rec(prefix, prob):
        prefix_prob[prefix] = prefix_prob.get(prefix, 0.0) + prob
        i = len(prefix)
        if i == N:
            return 0.0, 1.0
        children = sorted({mm[i] for mm in members if mm[:i] == prefix})
        rho = np_mixture_token(problem, x, prefix)
        P = rho[children].sum()
        found = 1 - (1 - P) ** m
        cost, full = found / P, 0.0
        for t in children:
            c, f = rec(prefix + (t,), prob * found * rho[t] / P)
            cost += found * rho[t] / P * c
            full += found * rho[t] / P * f
        return cost, full

    cost, full = rec((), 1.0)
    return cost, full, prefix_prob


def test_token_best_of_m_event_vs_sampled_vs_exact(setup):
    """Algorithm 2 on the members' trie (on-policy sample a member with probability p(S),
    else a walk with at most m draws per position): success, queries and the walked
    prefix of length 2, against a NumPy recursion over the trie."""
    problem, w, teachers = setup
    x, y_star = problem.test_x[1], problem.test_y[1]
    answers = multi.Teachers(teachers.A, teachers.B, 4)
    ref = sorted(np_set("teachers", answers, x, y_star, 4))
    m = 2
    cost, full, prefix_prob = np_walk(problem, x, ref, m)
    p = np.exp(np_log_probs(w, x, ref))
    pS = p.sum()
    twos = sorted({r[:2] for r in ref})
    member_two = [sum(pi for pi, r in zip(p, ref) if r[:2] == t) for t in twos]
    exact = np.concatenate([[pS + (1 - pS) * full, 1 + (1 - pS) * cost],
                            [mt + (1 - pS) * prefix_prob[t] for mt, t in zip(member_two, twos)]])
    hyper = lpg.hyper(m=m)
    out = {}
    for path in (True, False):
        alg = multi.SetTokenBestOfM(reward=multi.SetProcess(answers), event_path=path)
        one = alg._event_one if path else alg._sample_one
        coef, q, success, y_upd = jax.jit(jax.vmap(lambda k: one(w, k, problem, x, y_star, hyper)))(
            jax.random.split(jax.random.PRNGKey(20 + path), DRAWS))
        coef, y_upd = np.asarray(coef), np.asarray(y_upd)
        walked2 = np.array([[float(c[1] > 0 and tuple(y[:2]) == t) for t in twos] for c, y in zip(coef, y_upd)])
        rows = np.column_stack([np.asarray(success, np.float64), value_of(q), walked2])
        assert_mean_matches(rows, exact, what=f"Algorithm 2 on a set, event_path={path}")
        out[path] = rows
    assert_same_mean(out[True], out[False], what="Algorithm 2 on a set, event vs sampled")


def test_the_set_target_and_padding(setup):
    """``set_likelihood_at_least`` reads ``log Σ_j p(m_j)``; members differing only at
    padding positions count once."""
    problem, w, teachers = setup
    answers = multi.FreePositions(K, (2,), 1)
    assert int(answers.size(problem.test_x[0], problem.test_y[0], 2)) == 1
    assert int(answers.size(problem.test_x[0], problem.test_y[0], 3)) == K
    p_min = float(jnp.exp(eqx.filter_jit(multi.track_set_log_lik)(problem, answers, w).min()))
    target = eqx.filter_jit(lambda eps: multi.set_likelihood_at_least(answers, eps)(problem, w))
    assert bool(target(1 - 0.99 * p_min)) and not bool(target(1 - 1.01 * p_min))


TINY = {"max_steps": "40", "check_every": "10", "orm_N": "4", "free_counts": "0,1", "teacher_counts": "1,2",
        "prm_Ns": "2,4", "prm_teachers": "1,2", "pg_N": "4", "pg_free": "1", "pg_teachers": "2", "pg_steps": "4",
        "pg_batch": "2", "n_boot": "50"}


def test_experiment_end_to_end(tmp_path):
    exp = get("several-correct")
    assert exp.claims == ("Q3",)
    config = exp.resolve(TINY)
    summary = exp.run(config, seeds=2, out_dir=tmp_path / "run")
    assert set(summary["slopes"]) == {"orm_queries_vs_c_free", "orm_queries_vs_c_teachers", "prm_queries_vs_N_c1",
                                      "prm_queries_vs_N_c2", "prm_queries_vs_c"}
    allowed = {"confirmed", "not confirmed", "not estimable", "reported"}
    assert all(rec["verdict"] in allowed for rec in summary["slopes"].values())
    v = summary["verdict"]
    assert v["orm_slope_minus_1"] in allowed and v["prm_flat_in_c"] in allowed
    assert all(isinstance(v[key], bool) for key in ("prm_linear_in_N", "pg_teachers_concentrates", "pg_free_spreads"))
    for kind in ("teachers", "free"):
        st = summary["pg"][kind]
        assert st["contexts"] > 0 and 0.0 < st["median_top_share"] <= 1.0 and 0.0 <= st["median_entropy"] <= 1.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["claims"] == ["Q3"]
    paths = exp.plot(tmp_path / "run")
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.is_file() for p in paths)
    assert "orm_queries_vs_c_free" in exp.text(summary)


def test_bad_settings_raise():
    exp = get("several-correct")
    bad = {"free_counts": {"free_counts": "0,6"}, "pg_free": {"pg_free": "4"}, "d": {"d": "9"},
           "check_every": {"check_every": "7"}, "eps": {"eps": "1.5"}, "pg_teachers": {"pg_teachers": "1"}}
    for name, over in bad.items():
        with pytest.raises(ValueError, match=name):
            exp.resolve(over)
    with pytest.raises(ValueError, match="n_free"):
        multi.FreePositions(3, (0, 2), 3)
    with pytest.raises(ValueError, match="n_teachers"):
        multi.Teachers(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 3)), 4)
    with pytest.raises(ValueError, match="reward"):
        multi.SetBestOfM(reward=lpg.rewards.Outcome())
    answers = multi.FreePositions(3, (0,), 1)
    with pytest.raises(ValueError, match="event_path"):
        multi.SetPolicyGradient(multi.SetOutcome(answers), advantage="batch_mean", group_size=2, event_path=True)
    assert_raise_before_compiling({"positions": lambda: multi.FreePositions(3, (0, 0))})
