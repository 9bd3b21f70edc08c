"""Tiny runs of the claim experiments ``lq-governs`` (C4, C6), ``pretrain-barrier`` (C8)
and ``baselines``, checked against references that share no code with them
(``sgd-lr`` and ``online`` have their own modules, ``test_sgd_lr.py`` and ``test_online.py``):

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
from conftest import N_SE

import lpg.theory
from lpg.experiments import get, lq_governs, pretrain_barrier
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
    ("pretrain-barrier", "epss", "0.6,0.1", "eps"),
    ("pretrain-barrier", "eps_fit_max", "0.01", "eps_fit_max"),
    ("baselines", "group_size", "1", "group_size"),
    ("baselines", "variants", "ppo", "variants"),
    ("baselines", "n_contexts", "99", "n_contexts"),
])
def test_bad_settings_raise(name, key, value, needle):
    with pytest.raises(ValueError, match=needle):
        get(name).resolve({key: value})
