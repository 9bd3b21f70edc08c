"""The Likelihood Quantile estimated from samples (``lpg.estimate``, experiment ``lq-estimate``).

References that share no code with the engine: plain NumPy enumeration of every hit
count of a tiny instance (``S ≤ 3`` contexts, ``m ≤ 3`` samples, binomial probabilities
by ``math.comb``) for the exact law of the quantile of binomial estimates, at the
sequence and the token level; the definition of the empirical quantile applied by hand;
and statistical comparisons at fixed seeds (``N_SE`` standard errors, ``p > P_MIN``):
the event path (binomial hits) against the sampled path (real responses and tokens
drawn from the policy), and both against the exact laws.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import P_MIN, assert_mean_matches, assert_same_mean, pooled_chisquare, two_sample_discrete
from test_claim_experiments import check_outputs

import lpg
from lpg import estimate
from lpg.experiments import get, lq_estimate

pytestmark = pytest.mark.usefixtures("fast_compile")


def np_binom_pmf(m: int, q: float) -> np.ndarray:
    return np.array([math.comb(m, h) * q**h * (1 - q) ** (m - h) for h in range(m + 1)])


def np_quantile(values, eps: float):
    """``v_(⌊εn⌋+1)`` of the sorted values: the definition of the empirical LQ."""
    v = np.sort(np.asarray(values, np.float64))
    return v[int(math.floor(eps * v.size + 1e-9))]


# ---------------------------------------------------------------------------------
# Estimators and exact laws against enumeration
# ---------------------------------------------------------------------------------


def test_estimators_and_quantile_by_hand():
    hits = np.array([[0, 3, 1, 7], [2, 2, 5, 0]], np.float32)
    m = 10.0
    with np.errstate(divide="ignore"):
        plug = np.log(hits / m)
    jeff = np.log((hits + 0.5) / (m + 1))
    np.testing.assert_allclose(estimate.plugin_log(hits, m), plug, rtol=1e-6)
    np.testing.assert_allclose(estimate.jeffreys_log(hits, m), jeff, rtol=1e-6)
    for eps in (0.2, 0.3, 0.5):
        want = [np_quantile(row, eps) for row in plug]
        np.testing.assert_allclose(estimate.estimated_lq(hits, m, eps), want, rtol=1e-6)
        np.testing.assert_allclose(estimate.estimated_lq(hits, m, eps, "jeffreys"),
                                   [np_quantile(row, eps) for row in jeff], rtol=1e-6)
    tok = hits.reshape(2, 2, 2)  # (runs, S=2 contexts, N=2 positions)
    with np.errstate(divide="ignore"):
        want = [np_quantile(np.log(t / m).min(axis=1), 0.4) for t in tok]
    np.testing.assert_allclose(estimate.estimated_token_lq(tok, m, 0.4), want, rtol=1e-6)
    with pytest.raises(ValueError, match="estimator must be one of"):
        estimate.estimated_lq(hits, m, 0.2, "mle")


@pytest.mark.parametrize("eps", [0.2, 0.5, 0.7])
def test_sequence_quantile_law_by_enumeration(eps):
    """Every outcome of the hits of 3 contexts with 3 samples each: the law of the hit count at the quantile."""
    m, alphas = 3, np.array([0.15, 0.4, 0.7])
    pmfs = [np_binom_pmf(m, a) for a in alphas]
    want = np.zeros(m + 1)
    for hs in itertools.product(range(m + 1), repeat=alphas.size):
        want[int(np_quantile(hs, eps))] += np.prod([p[h] for p, h in zip(pmfs, hs)])
    h, p = estimate.hits_quantile_law(np.log(alphas), m, eps)
    np.testing.assert_allclose(np.pad(p, (0, m + 1 - p.size)), want, atol=1e-12)
    moments = estimate.estimate_moments(np.log(alphas), m, eps)
    q = np_quantile(alphas, eps)
    hh = np.arange(m + 1)
    for name, value in (("plugin", hh / m), ("jeffreys", (hh + 0.5) / (m + 1))):
        mean = float(np.sum(want * value / q))
        sd = math.sqrt(float(np.sum(want * (value / q) ** 2)) - mean**2)
        assert moments[name][:2] == pytest.approx((mean, sd), abs=1e-10)
        assert moments[name][2] == pytest.approx(want[0], abs=1e-12)


def test_token_quantile_law_by_enumeration():
    """2 contexts × 2 positions, 2 tokens drawn per position: the law of the smallest count's quantile."""
    m, eps, tok = 2, 0.3, np.array([[0.3, 0.8], [0.6, 0.5]])
    pmfs = {a: np_binom_pmf(m, a) for a in tok.ravel()}
    want = np.zeros(m + 1)
    for hs in itertools.product(range(m + 1), repeat=tok.size):
        h = np.reshape(hs, tok.shape)
        prob = np.prod([pmfs[a][x] for a, x in zip(tok.ravel(), hs)])
        want[int(np_quantile(h.min(axis=1), eps))] += prob
    _, p = estimate.hits_quantile_law(np.log(tok), m, eps)
    np.testing.assert_allclose(np.pad(p, (0, m + 1 - p.size)), want, atol=1e-12)


def test_order_statistic_and_nonzero_law_by_enumeration():
    rng = np.random.default_rng(3)
    F = np.sort(rng.uniform(size=(4, 5)), axis=1)  # 4 variables, CDFs at 5 points
    for j in range(4):
        want = np.zeros(5)
        for below in itertools.product([0, 1], repeat=4):
            prob = np.prod([F[c] if b else 1 - F[c] for c, b in enumerate(below)], axis=0)
            want += prob * (sum(below) >= j + 1)
        np.testing.assert_allclose(estimate.order_statistic_cdf(F, j), want, atol=1e-12)
    # P(m* <= m): at most j = floor(eps S) contexts without a hit after m samples each.
    alphas, eps, ms = np.array([0.05, 0.2, 0.3]), 0.4, np.array([1, 4, 9])
    none = (1 - alphas[:, None]) ** ms
    want = np.zeros(ms.size)
    for hit in itertools.product([0, 1], repeat=3):
        prob = np.prod([1 - none[c] if b else none[c] for c, b in enumerate(hit)], axis=0)
        want += prob * (3 - sum(hit) <= 1)
    np.testing.assert_allclose(estimate.nonzero_probability(np.log(alphas), ms, eps), want, atol=1e-12)
    med = estimate.median_samples_until_nonzero(np.log(alphas), eps)
    p = estimate.nonzero_probability(np.log(alphas), [med - 1, med], eps)
    assert p[0] < 0.5 <= p[1]


# ---------------------------------------------------------------------------------
# The event path: its law, and against the sampled path
# ---------------------------------------------------------------------------------

KEYS = 4000


def test_nested_hits_are_binomial_paths():
    """``E[H(m)] = m q`` and ``Var = m q (1 − q)`` at every ``m`` of one nested path, which never decreases."""
    q, ms = np.array([0.02, 0.3]), np.array([1.0, 5.0, 40.0])
    h = jax.jit(jax.vmap(lambda k: estimate.nested_hits(k, jnp.log(q), ms)))(jax.random.split(jax.random.PRNGKey(0),
                                                                                             KEYS))
    h = np.asarray(h, np.float64)  # (keys, M, 2)
    assert np.all(np.diff(h, axis=1) >= 0)
    mean = ms[:, None] * q
    assert_mean_matches(h.reshape(KEYS, -1), mean.ravel(), what="E[H]")
    var = mean * (1 - q)
    assert_mean_matches(((h - mean) ** 2).reshape(KEYS, -1), var.ravel(), what="Var H")
    # the plug-in estimate is unbiased per context
    assert_mean_matches((h / ms[:, None]).reshape(KEYS, -1), np.broadcast_to(q, (3, 2)).ravel(), what="E[p_hat]")


@pytest.fixture(scope="module")
def tiny_policy():
    task = lpg.make_teacher(jax.random.PRNGKey(7), d=3, k=2, N=3)
    rng = np.random.default_rng(1)
    w = lpg.BigramParams(jnp.asarray(-0.8 * rng.standard_normal((3, 2)), jnp.float32),
                         jnp.asarray(-0.8 * rng.standard_normal((2, 2)), jnp.float32))  # likelihoods 0.4..0.7
    xs = task.sample_contexts(jax.random.PRNGKey(2), 3)
    ys = jax.vmap(task.response)(xs)
    return task.feature_map(), w, xs, ys


def test_event_path_matches_sampled_path(tiny_policy):
    """Hits among m = 6 real responses (and tokens) per context against the binomial event path: the same law
    (chi-square two-sample test per context, means within N_SE pooled standard errors), and the law of the
    estimated sequence LQ (chi-square goodness of fit against the exact law of the quantile)."""
    fmap, w, xs, ys = tiny_policy
    m, eps = 6, 0.4
    tok_ll = lpg.metrics.token_log_likelihoods(fmap, w, xs, ys)
    seq_ll = tok_ll.sum(-1)

    def sampled(key):
        ks = jax.random.split(key, 2 * xs.shape[0]).reshape(2, xs.shape[0], -1)
        seq = jax.vmap(lambda k, x, y: estimate.sampled_hits(k, fmap, w, x, y, m))(ks[0], xs, ys)
        tok = jax.vmap(lambda k, x, y: estimate.sampled_token_hits(k, fmap, w, x, y, m))(ks[1], xs, ys)
        return seq, tok

    def event(key, ms):  # sequence and token hits in one draw, as the experiment draws them
        both = estimate.nested_hits(key, jnp.concatenate([seq_ll[:, None], tok_ll], axis=1), ms)[0]
        return both[:, 0], both[:, 1:]

    events = jax.jit(jax.vmap(event, in_axes=(0, None)))
    s_seq, s_tok = (np.asarray(a) for a in jax.jit(jax.vmap(sampled))(jax.random.split(jax.random.PRNGKey(1), KEYS)))
    e_seq, e_tok = (np.asarray(a) for a in events(jax.random.split(jax.random.PRNGKey(2), KEYS), jnp.array([m])))
    assert_same_mean(s_seq, e_seq, what="sequence hits")
    assert_same_mean(s_tok.reshape(KEYS, -1), e_tok.reshape(KEYS, -1), what="token hits")
    for c in range(xs.shape[0]):
        assert two_sample_discrete(s_seq[:, c], e_seq[:, c]) > P_MIN
        assert pooled_chisquare(np.bincount(s_seq[:, c].astype(int), minlength=m + 1),
                                KEYS * np_binom_pmf(m, math.exp(float(seq_ll[c])))) > P_MIN
    # the quantile of the sampled path's plug-in estimates has the exact law of hits_quantile_law
    h_q = np.round(np.exp(np.asarray(estimate.estimated_lq(s_seq, m, eps))) * m).astype(int)
    _, p = estimate.hits_quantile_law(np.asarray(seq_ll, np.float64), m, eps)
    p = np.pad(p, (0, m + 1 - p.size))
    assert pooled_chisquare(np.bincount(h_q, minlength=m + 1), KEYS * p / p.sum()) > P_MIN
    # negative control: the law of m + 3 samples is told apart
    wrong = np.asarray(events(jax.random.split(jax.random.PRNGKey(3), KEYS), jnp.array([m + 3]))[0])
    best = int(np.argmax(np.asarray(seq_ll)))
    assert math.exp(float(seq_ll[best])) > 0.1  # a context whose hits can tell m from m + 3
    assert two_sample_discrete(s_seq[:, best], wrong[:, best]) < P_MIN


def test_first_hit_times_and_samples_until_nonzero():
    """``T ~ Geometric(q)``; ``m*`` (the (j+1)-th largest ``T``) has ``P(m* ≤ m)`` of :func:`nonzero_probability`;
    the sequential queries are ``Σ min(T, m*)``."""
    alphas, eps = np.array([0.05, 0.2, 0.3]), 0.4
    la = jnp.log(jnp.asarray(alphas, jnp.float32))
    log_t = jax.jit(jax.vmap(lambda k: estimate.first_hit_log_times(k, la)))(
        jax.random.split(jax.random.PRNGKey(5), KEYS))
    t = np.round(np.exp(np.asarray(log_t, np.float64)))
    assert_mean_matches(t, 1 / alphas, what="E[T]")
    m_star = np.round(np.exp(np.asarray(estimate.log_samples_until_nonzero(log_t, eps), np.float64)))
    np.testing.assert_array_equal(m_star, np.sort(t, axis=1)[:, 3 - 1 - 1])
    grid = np.arange(1, 60)
    observed = np.diff(np.concatenate([[0], [(m_star <= g).sum() for g in grid], [KEYS]]))
    cdf = estimate.nonzero_probability(np.log(alphas), grid, eps)
    assert pooled_chisquare(observed, KEYS * np.diff(np.concatenate([[0], cdf, [1]]))) > P_MIN
    seq = np.exp(np.asarray(estimate.log_sequential_queries(log_t, jnp.log(jnp.asarray(m_star, jnp.float32)))))
    np.testing.assert_allclose(seq, np.minimum(t, m_star[:, None]).sum(1), rtol=1e-5)


# ---------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------

TINY = {"k": 4, "N": 4, "gamma": 0.5, "eps": 0.25, "wide_factor": 2.0, "log10_alphas": [-1.0, -1.5, -2.0],
        "ms": [1, 10, 100, 1000, 10000], "alg1_max_steps": 400, "check_every": 20, "regime_factor": 1.0,
        "n_boot": 200}


def test_experiment_end_to_end(tmp_path):
    exp = get("lq-estimate")
    config = exp.resolve({k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in TINY.items()})
    summary = exp.run(config, seeds=4, out_dir=tmp_path / "run")
    check_outputs(exp, tmp_path / "run", summary)
    assert summary["claims"] == ["Q4"] and summary["n_contexts"] == 5 and summary["n_low"] == 3
    assert set(summary["slopes"]) == {"m_star_vs_inv_lq", "plugin_cost_prediction_at_regime",
                                      "estimation_over_alg1_cost_vs_inv_lq",
                                      *(f"{n}_{lv}_rmse_vs_x" for n in ("plugin", "jeffreys") for lv in ("seq", "tok"))}
    assert all(isinstance(v, bool) for v in summary["verdict"].values()) and len(summary["verdict"]) == 5
    for rec in summary["slopes"].values():
        assert rec["verdict"] in ("confirmed", "not confirmed", "not estimable")
    per = summary["points"]["per_base"]
    # the exact LQ of the wide profile is alpha_low, the token-level one alpha_low^(1/N)
    assert [p["log10_q"] for p in per] == pytest.approx(sorted(TINY["log10_alphas"]), abs=1e-4)
    assert [p["log10_q_tl"] for p in per] == pytest.approx([a / TINY["N"] for a in sorted(TINY["log10_alphas"])],
                                                          abs=1e-4)
    # the exact law's mean of Q_hat/Q is the simulated one's (4 seeds; summary's check C at this size)
    assert summary["verdict"]["C_event_path_matches_exact_law_within_5_se"]
    errors = summary["points"]["errors"]["plugin_seq"]
    assert errors["zero_share"][0] == 1.0  # m = 1 at Q = 1e-2: no context of the 3 low ones hits in every seed
    # lpg plot reads the summary back from JSON (infinite predictions stored as null)
    assert (tmp_path / "run" / "lq-estimate.png").is_file()


@pytest.mark.parametrize("override, match", [
    ({"ms": "10,3,100"}, "ms must be increasing"),
    ({"wide_factor": "0.5"}, "wide_factor must put at least"),
    ({"log10_alphas": "-1,-0.1,-2"}, "log10_alphas must lie below"),
    ({"ms": "1,10,100"}, "ms must reach regime_mq"),
    ({"eps": "1.5"}, "eps must be"),
    ({"check_every": "7"}, "check_every must divide"),
])
def test_bad_settings_raise(override, match):
    with pytest.raises(ValueError, match=match):
        get("lq-estimate").resolve(override)


def test_registered_and_reuses_lq_governs_family():
    exp = get("lq-estimate")
    assert exp.claims == ("Q4",) and exp.default_seeds >= 16
    config = exp.resolve({})
    assert [sw.part for sw in exp.sweeps(config)] == ["estimate", "alg1"]
    S, low = lq_estimate.n_contexts(config), lq_estimate.n_low(config)
    la = lq_estimate.base_log_alphas(config, -3.0)
    assert la.shape == (S,) and np.sum(la == np.log(1e-3)) == low
    assert math.exp(np_quantile(la, config["eps"])) == pytest.approx(1e-3)
