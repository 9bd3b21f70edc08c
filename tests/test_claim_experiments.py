"""Tiny runs of the claim experiments ``lq-governs`` (C4, C6), ``sgd-lr`` (C1), ``online``
(C7), ``pretrain-barrier`` (C8) and ``baselines``, checked against references that share
no code with them:

* a plain NumPy (float64) simulation of learning a planted task — supervised SGD with
  the adaptive or a constant step, and online PG with uniform exploration — whose
  mean curves the experiments' curves must match within ``N_SE`` standard errors;
* the exact law of the pre-training coverage time (inclusion–exclusion over subsets of
  contexts);
* closed forms (zero-variance groups ``(1 − α)^G + α^G``, the LQ of a two-level
  profile) and brute-force definitions (the weighted LQ, the LQ floor over all
  subsets of contexts).

Every experiment runs once per module (a fixture) at a size that compiles in seconds;
its results are read back from disk as the long :class:`lpg.results.Table`.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from conftest import N_SE, assert_same_mean

import lpg.theory
from lpg.analysis import hitting_time
from lpg.experiments import get, lq_governs, online, pretrain_barrier, sgd_lr
from lpg.features import max_planted_contexts
from lpg.metrics import quantile_index
from lpg.results import Table, read_results, to_jsonable

SEEDS = 16


def run_experiment(name: str, overrides: dict, out_dir, seeds: int = SEEDS):
    exp = get(name)
    config = exp.resolve({k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in overrides.items()})
    summary = exp.run(config, seeds=seeds, out_dir=out_dir)
    return exp, config, summary


def _no_constant(name):
    raise ValueError(f"summary.json holds the non-JSON constant {name}")


def check_outputs(exp, out_dir, summary) -> dict:
    """Files are complete, the summary round-trips through strict JSON, the slope records
    have the promised keys, the timing is complete, figures exist, and the text renders."""
    for name in ("config.json", "results.npz", "summary.json", "env.json"):
        assert (out_dir / name).is_file(), name
    on_disk = json.loads((out_dir / "summary.json").read_text(), parse_constant=_no_constant)
    assert on_disk == json.loads(json.dumps(to_jsonable(summary), allow_nan=False))
    assert set(on_disk["slopes"]) == set(summary["slopes"])
    for rec in on_disk["slopes"].values():
        assert {"estimate", "ci", "theory", "regime"} <= set(rec)
    timing = summary["timing"]
    assert {"compile_s", "run_s", "total_s", "parts"} <= set(timing)
    _, table, _ = read_results(out_dir)
    assert set(timing["parts"]) == set(table.unique("part"))
    for part in timing["parts"].values():
        assert {"compile_s", "run_s"} <= set(part) and min(part.values()) >= 0.0
    for key in ("compile_s", "run_s"):
        assert timing[key] == pytest.approx(sum(p[key] for p in timing["parts"].values()))
    assert timing["total_s"] >= timing["compile_s"] + timing["run_s"]
    paths = exp.plot(out_dir)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 1000 for p in paths)
    assert exp.text(summary) and exp.text(on_disk)  # in memory and as `lpg plot` reads it back
    return on_disk


# ---------------------------------------------------------------------------------
# A NumPy reference for learning a planted task (PAPER.md §1, §3)
# ---------------------------------------------------------------------------------


def np_planted(rng, *, runs, S, k, N, gamma, steps, log_every, step_rule, lr, online_pg=False):
    """Learn the planted task from zero weights, ``runs`` independent copies in float64.

    With one-hot contexts, the weights of context ``c`` are a row over the ``k`` shifts and
    every position of ``y*`` has the same correct shift, relabelled to index 0 (the
    dynamics are equivariant under relabelling). ``p = softmax(a·w_c)``, ``p(y*|c) =
    p_0^N``, ``∇_{w_c} log p(y*|c) = a N (e_0 − p)`` with ``a = γ / sqrt(k/(S(k−1)))``.
    Supervised SGD updates every step; online PG only when a uniform guess is right
    (probability ``k^-N``) and accumulates ``1 − p(y*|c)`` before the update. Returns
    the error and the cumulative mistakes at ``0, log_every, …, steps``."""
    a = gamma / math.sqrt(k / (S * (k - 1)))
    W = np.zeros((runs, S, k))
    idx = np.arange(runs)
    mistakes = np.zeros(runs)

    def error():
        z = a * W
        p0 = np.exp(z[..., 0] - np.log(np.exp(z).sum(-1)))
        return 1.0 - np.mean(p0**N, axis=1)

    errs, mis = [error()], [mistakes.copy()]
    for t in range(1, steps + 1):
        c = rng.integers(0, S, size=runs)
        z = a * W[idx, c]
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        update = np.ones(runs, bool)
        if online_pg:
            mistakes += 1.0 - p[:, 0] ** N
            update = rng.random(runs) < float(k) ** -N
        g = -a * N * p
        g[:, 0] += a * N
        eta = lr / (4.0 + 2.0 * np.sum(g * g, -1)) if step_rule == "adaptive" else np.full(runs, lr)
        W[idx, c] += np.where(update, eta, 0.0)[:, None] * g
        if t % log_every == 0:
            errs.append(error())
            mis.append(mistakes.copy())
    return np.stack(errs, 1), np.stack(mis, 1)


# ---------------------------------------------------------------------------------
# sgd-lr (C1)
# ---------------------------------------------------------------------------------

SGD_CONFIG = {"k": 4, "gamma": 0.5, "Ns": [1, 3], "steps": 96, "log_every": 8, "eps_grid": [0.6, 0.4],
              "eps_star": 0.4, "eps_burn": 0.8}


@pytest.fixture(scope="module")
def sgd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sgd_lr")
    exp, config, summary = run_experiment("sgd-lr", SGD_CONFIG, out)
    return exp, config, summary, out


def sgd_rows(table: Table, rule: str) -> Table:
    """The rows of one step rule: the ``adaptive`` sweep, or the ``constant`` sweep's
    ``flat = 0`` (``1/(4N)``) or ``flat = 1`` (``1/4``) runs."""
    part = "adaptive" if rule == "adaptive" else "constant"
    return table.where(part=part, flat=int(rule == "constant_flat"), series="sgd")


@pytest.mark.parametrize("rule", sgd_lr.RULES)
def test_sgd_lr_curves_match_numpy_sgd(sgd_run, rule):
    """The error curves of every step rule, at both N (N=1 through the padded, masked
    path of N_max=3), match the NumPy simulation in distribution."""
    _, config, _, out = sgd_run
    _, table, _ = read_results(out)
    S = max_planted_contexts(config["k"], config["gamma"])
    rng = np.random.default_rng(11)
    for N in config["Ns"]:
        lr = {"adaptive": 1.0, "constant": 0.25 / N, "constant_flat": 0.25}[rule]
        ref, _ = np_planted(rng, runs=400, S=S, k=config["k"], N=N, gamma=config["gamma"], steps=config["steps"],
                            log_every=config["log_every"], step_rule="adaptive" if rule == "adaptive" else "constant",
                            lr=lr)
        rows = sgd_rows(table, rule).where(N=N)
        np.testing.assert_array_equal(rows.by_run("step"), np.tile(np.arange(0, config["steps"] + 1,
                                                                             config["log_every"]), (SEEDS, 1)))
        got = rows.by_run("error")
        assert got.shape == (SEEDS, ref.shape[1])
        assert_same_mean(got, ref, n_se=N_SE, atol=1e-5, what=f"sgd-lr {rule} N={N}")


def test_sgd_lr_outputs_and_hitting_times(sgd_run):
    exp, config, summary, out = sgd_run
    check_outputs(exp, out, summary)
    _, table, _ = read_results(out)
    # Hitting times (the summary's selection of the curves and lpg.analysis.hitting_time)
    # against a direct scan of the curves.
    step, err, _ = sgd_lr.curves_of(table, "adaptive")
    T, cens = hitting_time(err, step, 0.4, above=False)
    rows = sgd_rows(table, "adaptive")
    np.testing.assert_array_equal(err, rows.by_run("error"))
    for r, (e_row, s_row) in enumerate(zip(rows.by_run("error"), rows.by_run("step"))):
        below = np.flatnonzero(e_row <= 0.4)
        assert cens[r] == (below.size == 0)
        if below.size:
            assert T[r] == s_row[below[0]]
    assert summary["slopes"]["adaptive_T_vs_eps_N1"]["theory"] == -1.0
    assert summary["slopes"]["constant_T_vs_N_star"]["theory"] == 1.0


# ---------------------------------------------------------------------------------
# online (C7)
# ---------------------------------------------------------------------------------

ONLINE_CONFIG = {"k": 2, "Ns": [1, 2], "gammas": [0.5], "gamma_extra": [0.35], "gamma_N": 1, "eps": 0.3,
                 "horizon_factor": 16.0, "log_points": 64}


@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("online")
    exp, config, summary = run_experiment("online", ONLINE_CONFIG, out)
    return exp, config, summary, out


def online_curves(table: Table, config: dict, N: int, g: float):
    """``(step, error, mistakes)`` of the ``(N, γ)`` sweep, ``(runs, P)`` each."""
    rows = table.where(part=f"N{N}_gamma{g:g}", series="online")
    assert np.all(rows["N"] == N) and np.all(rows["gamma"] == g)
    return rows.by_run("step"), rows.by_run("error"), rows.by_run("mistakes")


def test_online_mistakes_match_numpy_online_pg(online_run):
    """Cumulative mistakes and error of online PG with uniform exploration, from zero
    weights, match the NumPy simulation in distribution at every setting."""
    _, config, _, out = online_run
    _, table, _ = read_results(out)
    rng = np.random.default_rng(12)
    for N, g in online.settings(config):
        S = max_planted_contexts(config["k"], g)
        T = online.horizon(config, N, g)
        err, mis = np_planted(rng, runs=400, S=S, k=config["k"], N=N, gamma=g, steps=T,
                              log_every=T // config["log_points"], step_rule="adaptive", lr=1.0, online_pg=True)
        _, got_err, got_mis = online_curves(table, config, N, g)
        assert got_err.shape == (SEEDS, err.shape[1])
        assert_same_mean(got_mis, mis, n_se=N_SE, atol=1e-3, what=f"mistakes N={N} gamma={g}")
        assert_same_mean(got_err, err, n_se=N_SE, atol=1e-5, what=f"error N={N} gamma={g}")


def test_online_outputs(online_run):
    exp, config, summary, out = online_run
    check_outputs(exp, out, summary)
    _, table, _ = read_results(out)
    r = online.per_run(table, config)
    # Before any update a round costs exactly 1 - k^-N, and updates only raise p(y*|x):
    # mistakes never exceed rounds * (1 - k^-N).
    for N, g in online.settings(config):
        T = online.horizon(config, N, g)
        t = np.arange(0, T + 1, T // config["log_points"])
        step, _, mis = online_curves(table, config, N, g)
        np.testing.assert_array_equal(step, np.tile(t, (SEEDS, 1)))
        assert np.all(mis <= t * (1 - config["k"] ** -N) + 1e-3)
    assert r["M"].shape == (SEEDS * len(online.settings(config)),)
    # M_eps is the cumulative mistakes at the first log point with error <= eps.
    for N, g in online.settings(config):
        _, err, mis = online_curves(table, config, N, g)
        sel = (r["N"] == N) & (r["gamma"] == g)
        assert sel.sum() == SEEDS
        for M, c, e_row, m_row in zip(r["M"][sel], r["censored"][sel], err, mis):
            below = np.flatnonzero(e_row <= config["eps"])
            assert c == (below.size == 0)
            assert M == pytest.approx(m_row[below[0]] if below.size else m_row[-1])
    assert r["censored"].mean() < 0.5
    assert summary["slopes"]["lnM_vs_N_gamma0.5"]["theory"] == pytest.approx(math.log(2))


# ---------------------------------------------------------------------------------
# pretrain-barrier (C8)
# ---------------------------------------------------------------------------------

PRE_CONFIG = {"k": 4, "N": 6, "gammas": [0.5, 0.35], "epss": [0.2, 0.1], "eps_fit_max": 0.2,
              "horizon_factor": 4.0, "log_points": 128, "n_coverage_sims": 400}


@pytest.fixture(scope="module")
def pre_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain_barrier")
    exp, config, summary = run_experiment("pretrain-barrier", PRE_CONFIG, out, seeds=32)
    return exp, config, summary, out


def exact_coverage_mean(weights: np.ndarray, eps: float) -> tuple[float, float]:
    """Mean and standard deviation of the first ``n`` at which the never-drawn mass of
    i.i.d. draws is ``≤ ε``, by inclusion–exclusion over subsets (bit masks):
    ``P(unseen = U) = Σ_{V ⊇ U} (−1)^{|V|−|U|} (1 − p(V))^n``, so
    ``P(n* > n) = Σ_V c_V (1 − p(V))^n`` with ``c_V = Σ_{U ⊆ V, p(U) > ε} (−1)^{|V|−|U|}``."""
    p = np.asarray(weights, np.float64) / np.sum(weights)
    S = p.size
    masks = np.arange(2**S)
    bits = (masks[:, None] >> np.arange(S)[None, :]) & 1
    mass = bits @ p
    size = bits.sum(1)
    sub = (masks[None, :] & masks[:, None]) == masks[None, :]  # sub[V, U]: U ⊆ V
    heavy = mass > eps + 1e-12
    c = np.sum(np.where(sub & heavy[None, :], (-1.0) ** (size[:, None] - size[None, :]), 0.0), axis=1)
    n = np.arange(0, 4000)
    surv = np.clip(np.sum(c[:, None] * (1.0 - mass)[:, None] ** n[None, :], axis=0), 0.0, 1.0)
    assert surv[-1] < 1e-12
    mean = surv.sum()
    second = np.sum((2 * n + 1) * surv)  # E[X^2] = Σ_n (2n+1) P(X > n)
    return float(mean), float(math.sqrt(second - mean**2))


def test_pretrain_barrier_lasts_exactly_until_coverage(pre_run):
    """``Q_q(ε) = k^-N`` exactly while the never-sampled mass exceeds ε: the measured n*
    has the exact coverage-time law (mean within N_SE standard errors), and so does the
    experiment's own NumPy coverage simulation."""
    _, config, summary, out = pre_run
    _, table, _ = read_results(out)
    r = pretrain_barrier.per_run(table, config)
    for g in config["gammas"]:
        steps, log_every = pretrain_barrier.horizon(config, g)
        assert log_every == 1
        # The context weights the runs of each ε trained on (float32 ε, as traced).
        tab_eps, tab_weights, _ = pretrain_barrier.eps_atoms(max_planted_contexts(config["k"], g), config["epss"])
        tab_eps = np.round(tab_eps.astype(np.float64), 6)
        run_eps = np.round(table.where(part=f"gamma{g:g}").per_run("eps").astype(np.float64), 6)
        assert sorted(set(run_eps)) == sorted(set(tab_eps))
        for e in config["epss"]:
            w = tab_weights[np.flatnonzero(tab_eps == round(e, 6))[0]]
            mean, sd = exact_coverage_mean(w, e)
            sel = (r["gamma"] == g) & (np.round(r["eps"], 6) == round(e, 6))
            n_star = r["n_star"][sel]
            assert not r["censored"][sel].any()
            assert abs(n_star.mean() - mean) <= N_SE * sd / math.sqrt(n_star.size), (g, e, n_star.mean(), mean)
            row = next(x for x in summary["points"]["settings"] if x["gamma"] == g and x["eps"] == e)
            assert abs(row["coverage_mean"] - mean) <= N_SE * sd / math.sqrt(config["n_coverage_sims"])
    # Before n* the LQ sits exactly at k^-N (float32 rounding aside).
    floor = -config["N"] * math.log(config["k"])
    for lq in r["log_lq"]:
        assert lq[0] == pytest.approx(floor, abs=1e-4)


def brute_weighted_lq(log_lik: np.ndarray, weights: np.ndarray, eps: float) -> float:
    """``sup{α : Σ_c π_c 1[q_c ≤ α] ≤ ε}`` straight from the definition: the smallest
    likelihood at which the CDF jumps above ε."""
    pi = weights / weights.sum()
    for v in np.sort(np.unique(log_lik)):
        if pi[log_lik <= v].sum() > eps + 1e-12:
            return float(v)
    return 0.0


def test_weighted_lq_matches_definition():
    """:func:`pretrain_barrier.weighted_lq` (the LQ the runs record) equals the definition
    and the LQ of the repeated atoms (context ``c`` repeated ``w_c`` times, sorted, atom
    ``⌊εM⌋``), ties included."""
    import jax

    lq = jax.jit(jax.vmap(pretrain_barrier.weighted_lq, (0, None, None)))
    rng = np.random.default_rng(3)
    for _ in range(25):
        S = int(rng.integers(2, 9))
        ll = np.round(rng.normal(-5, 3, size=(3, S)), 1).astype(np.float32)  # ties on purpose
        w = rng.integers(1, 6, size=S).astype(np.float64)
        eps = float(rng.uniform(0.02, 0.9))
        j = quantile_index(int(w.sum()), eps)
        got = np.asarray(lq(ll, w.astype(np.float32), np.int32(j)), np.float64)
        want = [brute_weighted_lq(row.astype(np.float64), w, eps) for row in ll]
        np.testing.assert_allclose(got, want, rtol=1e-6)
        atoms = np.sort(np.repeat(ll.astype(np.float64), w.astype(int), axis=1), axis=1)
        np.testing.assert_allclose(got, atoms[:, j] if j < atoms.shape[1] else np.zeros(3), rtol=1e-6)


def test_rare_block_weights():
    import jax.numpy as jnp

    for S in (2, 5, 10, 41):
        for e in (0.2, 0.1, 0.025):
            m = pretrain_barrier.multiplicities(S, e)
            np.testing.assert_array_equal(m, np.asarray(pretrain_barrier.multiplicities(S, jnp.float32(e), jnp)))
            rare = m[: (S + 1) // 2].sum() / m.sum()
            assert np.all(m[: (S + 1) // 2] == 1) and np.all(m == np.round(m))
            if S >= 10 and e <= 0.1:
                assert 1.5 * e <= rare <= 2.5 * e
        # The weights and atom index the runs use: ε in float32, j = ⌊εM⌋ of the integer atoms.
        epss = [0.2, 0.1, 0.025]
        eps, weights, j = pretrain_barrier.eps_atoms(S, epss)
        np.testing.assert_array_equal(eps, np.float32(epss))
        for e32, w, jj in zip(eps, weights, j):
            np.testing.assert_array_equal(w, pretrain_barrier.multiplicities(S, jnp.float32(e32), jnp))
            M = int(w.sum())
            assert M == w.sum() and jj / M <= float(e32) < (jj + 1) / M


def test_pretrain_barrier_outputs(pre_run):
    exp, _, summary, out = pre_run
    check_outputs(exp, out, summary)
    assert all(rec["theory"] in (-1.0, -2.0) for rec in summary["slopes"].values())


# ---------------------------------------------------------------------------------
# lq-governs (C4, C6)
# ---------------------------------------------------------------------------------

LQ_CONFIG = {"k": 4, "N": 4, "gamma": 0.5, "eps": 0.3, "wide_factor": 2.0, "log10_alphas": [-1.0, -2.0],
             "pg_log10_alphas": [-1.0, -1.5], "alg1_max_steps": 6000, "pg_max_steps": 6000, "check_every": 10,
             "regime_factor": 1.0}


@pytest.fixture(scope="module")
def lq_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lq_governs")
    exp, config, summary = run_experiment("lq-governs", LQ_CONFIG, out)
    return exp, config, summary, out


def brute_lq_floor(alphas: np.ndarray, eps: float) -> float:
    """Cheapest ``Σ 1/α`` over every set of contexts whose complement has error ``≤ ε``."""
    S = alphas.size
    best = math.inf
    for take in itertools.product([False, True], repeat=S):
        t = np.array(take)
        if np.sum(1.0 - alphas[~t]) / S <= eps + 1e-12:
            best = min(best, float(np.sum(1.0 / alphas[t])))
    return best


def lq_rows(table: Table, variant: str) -> Table:
    """The runs of one learner: Algorithm 1's sweep holds ``alg1`` (``full = 0``) and
    ``alg1_full`` (``full = 1``), on-policy PG its own."""
    return table.where(part="pg" if variant == "pg" else "alg1", full=int(variant == "alg1_full"))


def test_lq_floor_bounds_the_cheapest_set():
    """The floor (a relaxation) is never above the cheapest set and below it by less than
    one context's ``1/α`` (the relaxation splits at most one context)."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        S = int(rng.integers(1, 8))
        alphas = 10.0 ** rng.uniform(-4, -0.01, size=S)
        eps = float(rng.uniform(0.01, 0.9))
        floor, best = lpg.theory.lq_floor(alphas, eps), brute_lq_floor(alphas, eps)
        assert floor <= best * (1 + 1e-12)
        assert floor >= best - np.max(1.0 / alphas) * (1 + 1e-12)


def test_lq_governs_profiles_and_floor(lq_run):
    """The wide profile's LQ is α_low and the narrow one's α_high (the definition applied
    by hand to the two-level profile); mean queries to error ε never undercut the LQ
    floor (a bound on expectations) by more than N_SE standard errors."""
    _, config, summary, out = lq_run
    _, table, _ = read_results(out)
    S = max_planted_contexts(config["k"], config["gamma"])
    counts = lq_governs.profile_counts(config)
    assert counts["narrow"] / S <= config["eps"] < counts["wide"] / S
    for v in lq_governs.VARIANTS:
        rows = lq_rows(table, v)
        assert len(rows) == SEEDS * len(config["pg_log10_alphas" if v == "pg" else "log10_alphas"]) * 2
        la = rows["log10_alpha"].astype(np.float64)
        assert set(rows["n_low"]) == {counts["wide"], counts["narrow"]}
        prof = np.where(rows["n_low"] == counts["wide"], "wide", "narrow")
        want = np.where(prof == "wide", la * math.log(10), math.log(config["alpha_high"]))
        np.testing.assert_allclose(rows["log_lq"], want, rtol=1e-5)
        hit = rows["hit"].astype(bool)
        q = np.exp(rows["log_queries"].astype(np.float64))
        for a in np.unique(la):
            for p in lq_governs.PROFILES:
                sel = (la == a) & (prof == p)
                assert hit[sel].all(), (v, a, p)
                alphas = np.where(np.arange(S) < counts[p], 10.0**a, config["alpha_high"])
                floor = lpg.theory.lq_floor(alphas, config["eps"])
                se = q[sel].std(ddof=1) / math.sqrt(sel.sum())
                assert q[sel].mean() >= floor - N_SE * se, (v, a, p, q[sel].mean(), floor)
    assert set(summary["median_above_lq_floor"]) == {f"{v}_{p}" for v in lq_governs.VARIANTS
                                                      for p in lq_governs.PROFILES}


def test_lq_governs_outputs(lq_run):
    exp, _, summary, out = lq_run
    check_outputs(exp, out, summary)
    assert summary["slopes"]["alg1_wide"]["theory"] == 1.0 and summary["slopes"]["pg_narrow"]["theory"] == 0.0


# ---------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------

BL_CONFIG = {"variants": ["grpo_01"], "k": 4, "N": 3, "gamma": 0.5, "n_contexts": 1, "eps": 0.3,
             "batch_size": 2, "group_size": 4, "log10_alphas": [-0.5, -1.0], "regime_min": 1.0,
             "max_steps": 3000, "check_every": 10, "n_probe": 64}


@pytest.fixture(scope="module")
def bl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("baselines")
    exp, config, summary = run_experiment("baselines", BL_CONFIG, out)
    return exp, config, summary, out


def test_baselines_zero_variance_at_base(bl_run):
    """At the base model every sample of a group is correct with probability α, so a
    group is zero-variance with probability (1 − α)^G + α^G; the measured fraction over
    seeds × probes × groups matches it within N_SE binomial standard errors, and the
    summary's exact reference (:func:`lpg.theory.zero_variance_probability`) is that law."""
    _, config, summary, out = bl_run
    _, table, _ = read_results(out)
    G, B = config["group_size"], config["batch_size"]
    for v in config["variants"]:
        rows = table.where(part=v)
        assert len(rows) == SEEDS * len(config["log10_alphas"]) and np.all(rows["variant"] == v)
        la = rows["log10_alpha"].astype(np.float64)
        np.testing.assert_allclose(rows["log_lq"], la * math.log(10), rtol=1e-5)
        points = summary["points"][v]
        for a in np.unique(la):
            p = (1 - 10.0**a) ** G + (10.0**a) ** G
            got = rows["zero_var_base"][la == a]
            n = got.size * config["n_probe"] * B
            assert abs(got.mean() - p) <= N_SE * math.sqrt(p * (1 - p) / n) + 1e-6, (v, a, got.mean(), p)
            i = points["log10_alpha"].index(float(a))
            assert points["zero_var_base_exact"][i] == pytest.approx(p, rel=1e-12)
            assert points["zero_var_base"][i] == pytest.approx(float(got.astype(np.float64).mean()), rel=1e-12)
    check_outputs(get("baselines"), out, summary)


def test_baselines_escape_needs_estimable_points():
    """A flat cost curve is an escape only when every point of the regime is estimable:
    heavy censoring (a *costlier* estimator) must not read as an escape."""
    exp = get("baselines")
    config = exp.resolve({"variants": "none_01", "log10_alphas": "-2,-3,-4", "regime_min": "10",
                          "escape_below": "0.75"})
    rng = np.random.default_rng(0)
    la = np.repeat([-2.0, -3.0, -4.0], 16)
    base = {"part": np.full(la.size, "none_01"), "run": np.arange(la.size), "variant": np.full(la.size, "none_01"),
            "log10_alpha": la, "log_lq": la * math.log(10), "zero_var_base": np.ones_like(la),
            "zero_var_end": np.ones_like(la)}

    def summary(log_queries, hit):
        return exp.summarise(Table({**base, "log_queries": log_queries, "hit": hit}), {**config, "seeds": 16})

    flat = (8.0 + 0.2 * (-la)) * math.log(10) + rng.normal(0, 0.05, la.size)
    s = summary(flat, np.ones_like(la, bool))
    assert s["escapes"]["none_01"] and not s["verdict"]["no_estimator_escapes"]
    censored = np.ones_like(la, bool)
    censored[la == -2.0] = False
    s = summary(flat, ~censored)
    assert not s["escapes"]["none_01"]
    steep = (1.0 + 1.0 * (-la)) * math.log(10) + rng.normal(0, 0.05, la.size)
    s = summary(steep, np.ones_like(la, bool))
    assert not s["escapes"]["none_01"] and s["verdict"]["every_slope_near_1"]


# ---------------------------------------------------------------------------------
# Settings are validated before anything is compiled
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,key,value,needle", [
    ("lq-governs", "eps", "0.01", "eps"),
    ("lq-governs", "check_every", "7", "check_every"),
    ("sgd-lr", "Ns", "4", "Ns"),
    ("sgd-lr", "log_every", "5", "log_every"),
    ("online", "gamma_N", "3", "gamma_N"),
    ("online", "gammas", "1.5", "gamma"),
    ("pretrain-barrier", "epss", "0.6,0.1", "eps"),
    ("pretrain-barrier", "eps_fit_max", "0.01", "eps_fit_max"),
    ("baselines", "group_size", "1", "group_size"),
    ("baselines", "variants", "ppo", "variants"),
    ("baselines", "n_contexts", "99", "n_contexts"),
])
def test_bad_settings_raise(name, key, value, needle):
    with pytest.raises(ValueError, match=needle):
        get(name).resolve({key: value})
