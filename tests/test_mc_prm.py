"""The Monte-Carlo process verifier and Algorithm 2 with it (``lpg.mc_prm``), and the
``mc-prm`` experiment.

* The verifier's law against exact enumeration on a planted task with ``k = 3, N = 3``
  (every completion of every prefix, plain NumPy from the planted logits): the suffix
  likelihood and false-negative rate along ``y*``, and the sampled label and query count
  of all ``3 + 9 + 27`` prefixes (Monte Carlo means within 5 standard errors).
* The conditional geometric cost of an accepted label against its pmf (chi-square).
* Algorithm 2's exact event path against its sampled path (real candidates, real
  rollouts): the law of ``w`` after 3 steps and the law of the query count, with a
  negative control (``r = 2`` against ``r = 3``) showing the query test has power.
* Counts beyond ``2^22`` in log space; the experiment end to end; bad settings.
"""

from __future__ import annotations

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import P_MIN, assert_mean_matches, assert_raise_before_compiling, assert_same_mean, two_sample_discrete
from scipy import stats

import lpg
from lpg.mc_prm import MonteCarloTokenBestOfM, MonteCarloVerifier, minus_one_if, scale_count
from lpg.rewards import count, value_of

pytestmark = pytest.mark.usefixtures("fast_compile")

K, N = 3, 3


@pytest.fixture(scope="module")
def problem():
    task = lpg.make_planted(jax.random.PRNGKey(3), k=K, N=N, gamma=0.8)  # S = 2 contexts
    rng = np.random.default_rng(0)
    base = jnp.asarray(rng.normal(size=(task.d, K)), jnp.float32)
    return lpg.planted_problem(task, key=jax.random.PRNGKey(0), base=base)


def np_token_probs(problem, w, c, prev):
    """The planted policy's next-token law at context ``c`` after ``prev`` (NumPy)."""
    code = problem.fmap.scale * np.asarray(w, np.float64)[c]
    logits = code[(np.arange(K) - max(prev, 0)) % K]
    p = np.exp(logits - logits.max())
    return p / p.sum()


def np_completion_prob(problem, w, c, prefix, y_star):
    """``q(y*_{>i} | x, prefix)`` by enumerating every completion of ``prefix``."""
    i = len(prefix)
    total = 0.0
    for tail in itertools.product(range(K), repeat=N - i):
        y, p = list(prefix) + list(tail), 1.0
        for j in range(i, N):
            p *= np_token_probs(problem, w, c, y[j - 1] if j else -1)[y[j]]
        total += p * (y == list(y_star))
    return total


def other_weights(problem):
    return problem.base_weights() + 0.7 * jnp.asarray(np.random.default_rng(5).normal(size=(problem.task.d, K)),
                                                      jnp.float32)


@pytest.mark.parametrize("rollout", ["base", "current"])
def test_law_along_y_star_matches_enumeration(problem, rollout):
    w = other_weights(problem)
    ver = MonteCarloVerifier(3, rollout=rollout)
    wr = np.asarray(problem.base_weights() if rollout == "base" else w)
    for c in range(problem.task.d):
        x, y = problem.track_x[c], np.asarray(problem.track_y[c])
        law = ver.law(problem, w, x, jnp.asarray(y))
        s = np.array([np_completion_prob(problem, wr, c, y[:i + 1], y) for i in range(N)])
        np.testing.assert_allclose(np.exp(np.asarray(law.log_suffix, np.float64)), s, rtol=1e-5)
        accept = np.exp(np.asarray(law.log_accept, np.float64))
        np.testing.assert_allclose(accept[:-1], 1 - (1 - s[:-1]) ** 3, rtol=1e-5)
        assert accept[-1] == 1.0 and np.asarray(law.last).tolist() == [False, False, True]


@pytest.mark.parametrize("early_stop", [True, False])
def test_sampled_labels_match_enumeration(problem, early_stop):
    """Every prefix of every length: P(label = 1) = 1 − (1 − s)^r with ``s`` the exact
    completion probability (0 for a wrong prefix), queries ``Σ_{g<r}(1 − s)^g`` (``r``
    without early stopping), the complete response checked once."""
    r, n_draws, c = 3, 1500, 1
    w = other_weights(problem)
    ver = MonteCarloVerifier(r, rollout="current", early_stop=early_stop)
    x, y = problem.track_x[c], np.asarray(problem.track_y[c])
    heads, idx, exact_label, exact_q = [], [], [], []
    for i in range(N):
        for prefix in itertools.product(range(K), repeat=i + 1):
            s = np_completion_prob(problem, np.asarray(w), c, prefix, y)
            heads.append(list(prefix) + [0] * (N - i - 1))
            idx.append(i)
            if i == N - 1:
                exact_label.append(float(list(prefix) == list(y)))
                exact_q.append(1.0)
            else:
                exact_label.append(1 - (1 - s) ** r)
                exact_q.append(sum((1 - s) ** g for g in range(r)) if early_stop else r)
    heads, idx = jnp.asarray(heads, jnp.int32), jnp.asarray(idx)
    assert float(max(exact_label[:-K**N])) > 0.3  # some prefix is labelled 1 often: the test is not vacuous

    @jax.jit
    def draw(keys):
        one = lambda k, h, i: ver.sample_label(k, problem, w, x, h, i, jnp.asarray(y))  # noqa: E731
        return jax.vmap(lambda k: jax.vmap(one)(jax.random.split(k, heads.shape[0]), heads, idx))(keys)

    label, q = draw(jax.random.split(jax.random.PRNGKey(1), n_draws))
    assert_mean_matches(np.asarray(label, np.float64), np.array(exact_label), what="P(label = 1)")
    assert_mean_matches(np.asarray(q, np.float64), np.array(exact_q), what="queries per label")
    wrong = np.array(exact_label) == 0
    assert not np.asarray(label)[:, wrong].any()  # a wrong prefix is never labelled 1


def test_accepted_cost_law():
    r, n = 6, 20000
    ver = MonteCarloVerifier(r)
    for s in (0.3, 0.9):
        g = np.asarray(ver.accepted_cost(jax.random.PRNGKey(2), jnp.full((n,), math.log(s))))
        pmf = (1 - s) ** np.arange(r) * s / (1 - (1 - s) ** r)
        assert g.min() >= 1 and g.max() <= r
        obs = np.bincount(g.astype(int) - 1, minlength=r)
        assert stats.chisquare(obs, pmf * n).pvalue > P_MIN
    tiny = np.asarray(ver.accepted_cost(jax.random.PRNGKey(3), jnp.full((n,), -300.0)))  # s below float32
    assert stats.chisquare(np.bincount(tiny.astype(int) - 1, minlength=r), np.full(r, n / r)).pvalue > P_MIN
    assert np.all(np.asarray(ver.accepted_cost(jax.random.PRNGKey(4), jnp.zeros((5,)))) == 1)  # s = 1
    assert np.all(np.asarray(MonteCarloVerifier(r, early_stop=False).accepted_cost(None, jnp.zeros(3))) == r)


def test_count_helpers():
    assert value_of(scale_count(count(7), 5)) == 35
    assert value_of(scale_count(count(2**29), 4)) == pytest.approx(2.0**31, rel=1e-5)  # log space: float32 precision
    assert value_of(scale_count(count(0, 300.0), 2)) == pytest.approx(math.exp(300 + math.log(2)), rel=1e-5)
    assert value_of(minus_one_if(count(2**30), True)) == 2**30 - 1
    assert value_of(minus_one_if(count(5), False)) == 5
    assert value_of(minus_one_if(count(0, 100.0), True)) == pytest.approx(math.exp(100.0), rel=1e-6)


N_RUNS, STEPS = 1200, 3


def _runner(make, problem, h):
    """``runs(seed, r)``: ``N_RUNS`` runs of ``STEPS`` steps of ``make(r)`` (``r`` traced:
    one compile for every ``r``) -> (final ``w`` per run, total queries per run)."""

    def one(key, r):
        alg = make(r)
        state = alg.init(problem.base_weights(), h)
        step = lambda st, k: (alg.step(st, k, problem, h)[0], None)  # noqa: E731
        return jax.lax.scan(step, state, jax.random.split(key, STEPS))[0]

    many = jax.jit(jax.vmap(one, in_axes=(0, None)))

    def runs(seed, r):
        st = many(jax.random.split(jax.random.PRNGKey(seed), N_RUNS), jnp.float32(r))
        return (np.asarray(st.w, np.float64).reshape(N_RUNS, -1),
                np.round(np.exp(np.asarray(st.log_queries, np.float64))).astype(np.int64))

    return runs


def test_event_path_matches_sampled_path(problem):
    """Current-policy rollouts (the rollout law changes with ``w``), ``m = 4``, ``r = 2``."""
    h = lpg.hyper(lr=1.0, m=4)
    event, sample = (_runner(lambda r, e=e: MonteCarloTokenBestOfM(MonteCarloVerifier(r, rollout="current"),
                                                                     batch_size=2, event_path=e), problem, h)
                     for e in (True, False))
    w_e, q_e = event(1, 2)
    w_s, q_s = sample(2, 2)
    assert w_e.std(0).max() > 0.01 and w_s.std(0).max() > 0.01
    assert_same_mean(w_e, w_s, what="E[w]")
    assert_same_mean(w_e**2, w_s**2, what="E[w^2]")
    assert two_sample_discrete(q_e, q_s) > P_MIN, "law of query counts"
    _, q3 = event(3, 3)  # negative control: r = 3 has another law of queries
    assert two_sample_discrete(q_e, q3) < P_MIN


def test_event_path_in_log_space():
    """k = 32, N = 40 from the uniform base (``q0(y*) = 32^-40``, below float32): the first
    position's label needs a rollout that is y* (``32^-39``), so a walk spends exactly
    ``m·r`` queries there and stops; ``r = 10^6`` puts the count beyond ``2^22``."""
    task = lpg.make_planted(jax.random.PRNGKey(0), k=32, N=40, gamma=0.5)
    problem = lpg.planted_problem(task, key=jax.random.PRNGKey(0))
    alg = MonteCarloTokenBestOfM(MonteCarloVerifier(10**6))
    h = lpg.hyper(m=64)
    x, y = problem.track_x[0], problem.track_y[0]
    coef, queries, success, _ = jax.jit(lambda k: alg._event_one(problem.base_weights(), k, problem, x, y, h))(
        jax.random.PRNGKey(1))
    assert value_of(queries) == pytest.approx(1 + 64 * 10**6, rel=1e-5)
    assert not bool(success) and float(jnp.sum(coef)) == 0.0


def test_experiment_end_to_end(tmp_path):
    from lpg.experiments import get

    exp = get("mc-prm")
    assert exp.claims == ("Q2",)
    config = exp.resolve({"Ns": "2,3", "rs": "1,2", "rollouts": "base", "families": "p0,alpha0",
                          "orm_step_units": "response", "max_steps": "400", "orm_max_steps": "400", "n_boot": "50"})
    summary = exp.run(config, seeds=3, out_dir=tmp_path)
    exp.plot(tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert {"slopes", "ratios", "wins", "verdict", "bases"} <= set(on_disk)
    assert {u: len(v) for u, v in on_disk["ratios"].items()} == {"response": 8, "response_m1": 8}  # families x rs x Ns
    assert all(v in ("confirmed", "not confirmed") for v in summary["verdict"].values())
    assert {"mc_base_p0_r1", "mc_base_alpha0_r2", "mc_base_p0_vs_r", "orm_p0", "orm_alpha0"} <= set(summary["slopes"])
    # the p0 family's base model: Q = p0^N exactly
    assert np.allclose(on_disk["bases"]["p0"]["log10_Q"], np.array([2, 3]) * math.log10(0.5), atol=1e-4)
    assert (tmp_path / "mc_prm.png").is_file() and (tmp_path / "mc_prm.pdf").is_file()
    assert "median queries MC-PRM / Alg. 1" in exp.text(summary)


def test_bad_settings_raise():
    from lpg.experiments import get

    exp = get("mc-prm")
    assert_raise_before_compiling({
        "r": lambda: MonteCarloVerifier(0),
        "rollout": lambda: MonteCarloVerifier(2, rollout="teacher"),
        "verifier": lambda: MonteCarloTokenBestOfM("process"),
        "rs": lambda: exp.resolve({"rs": "0,2"}),
        "p0": lambda: exp.resolve({"p0": "0.1"}),  # below 1/k
        "check_every": lambda: exp.resolve({"check_every": "7"}),
    })
