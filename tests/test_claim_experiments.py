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

import inspect
import itertools
import json
import math
import os

import numpy as np
import pytest
from conftest import N_SE

import lpg.theory
from lpg import report
from lpg.analysis import verdict
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

READING = {"response": "the response-level step", "token": "the per-token step"}  # as the verdicts name them
LQ_UNITS = ["response", "token"] if os.environ.get("LPG_SLOW") == "1" else ["token"]
"""The fixture runs the per-token reading (the path the readings added; each reading's
sweeps compile for ~5 s), both with ``LPG_SLOW=1``; the response-level rows, bit-identical
to those before the readings, and the two-reading summary are checked on synthetic tables."""
LQ_CONFIG = {"k": 4, "N": 4, "gamma": 0.5, "eps": 0.3, "wide_factor": 2.0, "log10_alphas": [-1.0, -2.0],
             "pg_log10_alphas": [-1.0, -1.5], "alg1_max_steps": 6000, "pg_max_steps": 6000, "check_every": 10,
             "regime_factor": 1.0, "step_units": LQ_UNITS}


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


def lq_rows(table: Table, variant: str, unit: str) -> Table:
    """The runs of one learner under one reading: Algorithm 1's sweep holds ``alg1``
    (``full = 0``) and ``alg1_full`` (``full = 1``), on-policy PG its own."""
    return table.where(algorithm="pg" if variant == "pg" else "alg1", full=int(variant == "alg1_full"),
                       step_unit=unit)


def lq_name(variant: str, unit: str, quantity: str) -> str:
    return f"{variant}_{quantity}" if unit == "response" else f"{variant}_{unit}_{quantity}"


def lq_expected_verdicts(slopes: dict, units) -> dict:
    """``summary.verdict`` from the records' verdicts, as the module docstring states it:
    each check per reading (every record confirmed or conditional on that reading); C4 on
    the wide slopes and the narrow ones of alg1 and pg, C6 on the wide slopes and the
    floors; a claim confirmed when it passes under every reading, conditional under some."""
    checks = {"wide_slopes_near_1": [(v, "wide") for v in ("alg1", "alg1_full", "pg")],
              "narrow_flat_for_alg1_and_pg": [("alg1", "narrow"), ("pg", "narrow")],
              "no_learner_below_lq_floor": [(v, "mean_over_floor") for v in ("alg1", "alg1_full", "pg")]}
    out = {}
    for u in units:
        for check, recs in checks.items():
            out[f"{check} under {READING[u]}"] = all(
                slopes[lq_name(v, u, q)]["verdict"] in ("confirmed", f"conditional (on {READING[u]})") for v, q in recs)
    for claim, names in (("C4", ("wide_slopes_near_1", "narrow_flat_for_alg1_and_pg")),
                         ("C6", ("wide_slopes_near_1", "no_learner_below_lq_floor"))):
        passed = [READING[u] for u in units if all(out[f"{c} under {READING[u]}"] for c in names)]
        out.update({f"{claim} under {READING[u]}": READING[u] in passed for u in units})
        out[claim] = ("confirmed" if len(passed) == len(units) else
                      f"conditional (on {' and '.join(passed)})" if passed else "not confirmed")
    return out


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
    """Under each reading run: the wide profile's LQ is α_low and the narrow one's α_high
    (the definition applied by hand to the two-level profile); mean queries to error ε
    never undercut the LQ floor (a bound on expectations) by more than N_SE standard
    errors; the floor records hold the ratio of mean queries to the floor at every point
    and its smallest value; every record names its reading."""
    _, config, summary, out = lq_run
    _, table, _ = read_results(out)
    S = max_planted_contexts(config["k"], config["gamma"])
    counts = lq_governs.profile_counts(config)
    assert counts["narrow"] / S <= config["eps"] < counts["wide"] / S
    assert sorted(table.unique("step_unit")) == sorted(LQ_UNITS) and summary["step_units"] == LQ_UNITS
    assert sorted(table.unique("part")) == sorted(p if u == "response" else f"{p}_{u}" for p in ("alg1", "pg")
                                                  for u in LQ_UNITS)
    for u in LQ_UNITS:
        for v in lq_governs.VARIANTS:
            ratios = []
            rows = lq_rows(table, v, u)
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
                    assert hit[sel].all(), (v, u, a, p)
                    alphas = np.where(np.arange(S) < counts[p], 10.0**a, config["alpha_high"])
                    floor = lpg.theory.lq_floor(alphas, config["eps"])
                    se = q[sel].std(ddof=1) / math.sqrt(sel.sum())
                    assert q[sel].mean() >= floor - N_SE * se, (v, u, a, p, q[sel].mean(), floor)
                    pts = summary["points"][lq_name(v, u, p)]
                    i = pts["log10_alpha_low"].index(float(a))
                    assert pts["mean_over_floor"][i] == pytest.approx(q[sel].mean() / floor, rel=1e-9)
                    ratios.append(q[sel].mean() / floor)
            rec = summary["slopes"][lq_name(v, u, "mean_over_floor")]
            assert rec["estimate"] == pytest.approx(min(ratios), rel=1e-9) and rec["claim"] == "C6"
            assert rec["ci"][0] <= rec["estimate"] <= rec["ci"][1]
            assert rec["verdict"] in ("confirmed" if rec["ci"][0] >= 1.0 else "not confirmed",
                                      f"conditional (on {READING[u]})")
            for q_ in (*lq_governs.PROFILES, "mean_over_floor"):
                r = summary["slopes"][lq_name(v, u, q_)]
                assert r["reading"] == u and r["note"].endswith(READING[u]), (v, u, q_)
    if LQ_UNITS == ["response", "token"]:  # the readings are different learners on the same seeds
        for v in lq_governs.VARIANTS:
            assert not np.array_equal(lq_rows(table, v, "response")["log_queries"],
                                      lq_rows(table, v, "token")["log_queries"]), v


def test_lq_governs_outputs(lq_run):
    exp, config, summary, out = lq_run
    check_outputs(exp, out, summary)
    u = LQ_UNITS[-1]
    assert summary["slopes"][lq_name("alg1", u, "wide")]["theory"] == 1.0
    assert summary["slopes"][lq_name("pg", u, "narrow")]["theory"] == 0.0
    assert set(summary["slopes"]) == {lq_name(v, u, q) for v in lq_governs.VARIANTS for u in LQ_UNITS
                                      for q in (*lq_governs.PROFILES, "mean_over_floor")}
    assert summary["verdict"] == lq_expected_verdicts(summary["slopes"], LQ_UNITS)


def test_lq_governs_runs_each_reading():
    """One Algorithm 1 and one PG sweep per reading, each tagged with its ``step_unit``
    and running its learner with that reading of the step (nothing is compiled)."""
    exp = get("lq-governs")
    config = exp.resolve({"step_units": "response,token"})
    sweeps = list(exp.sweeps(config))
    assert [(sw.part, dict(sw.tags)) for sw in sweeps] == [
        ("alg1", {"algorithm": "alg1", "step_unit": "response"}),
        ("pg", {"algorithm": "pg", "step_unit": "response"}),
        ("alg1_token", {"algorithm": "alg1", "step_unit": "token"}),
        ("pg_token", {"algorithm": "pg", "step_unit": "token"})]
    for sw in sweeps:
        alg = inspect.getclosurevars(sw.fn).nonlocals["alg"]
        assert alg.step_unit == sw.tags["step_unit"]
        assert type(alg).__name__ == ("BestOfM" if sw.tags["algorithm"] == "alg1" else "PolicyGradient")
    assert [sw.part for sw in exp.sweeps(exp.resolve({"step_units": "token"}))] == ["alg1_token", "pg_token"]
    with pytest.raises(ValueError, match="step_units"):
        exp.resolve({"step_units": "sequence"})


def lq_synthetic(config: dict, law, *, censor=None, seeds: int = 16, seed: int = 0) -> Table:
    """A results table of ``lq-governs`` under both readings of the step, with queries
    drawn from ``law(variant, profile, α_low, floor, unit)`` times log-normal noise
    (σ = 0.2); ``censor(variant, profile, α_low, unit)`` gives the fraction of runs
    censored, at the largest draw of the point (a budget no run reached)."""
    rng = np.random.default_rng(seed)
    counts = lq_governs.profile_counts(config)
    cols = {k: [] for k in ("part", "algorithm", "step_unit", "full", "log10_alpha", "n_low", "log_lq", "log_queries",
                            "hit")}
    for u in ("response", "token"):
        for v in lq_governs.VARIANTS:
            for p in lq_governs.PROFILES:
                for a in config["pg_log10_alphas" if v == "pg" else "log10_alphas"]:
                    q = law(v, p, a, lq_governs._floor(config, p, a), u) * np.exp(rng.normal(0.0, 0.2, seeds))
                    cens = np.arange(seeds) < round(seeds * (censor(v, p, a, u) if censor else 0.0))
                    q[cens] = q.max()
                    alg = "pg" if v == "pg" else "alg1"
                    cols["part"] += [alg if u == "response" else f"{alg}_token"] * seeds
                    cols["algorithm"] += [alg] * seeds
                    cols["step_unit"] += [u] * seeds
                    cols["full"] += [int(v == "alg1_full")] * seeds
                    cols["log10_alpha"] += [a] * seeds
                    cols["n_low"] += [counts[p]] * seeds
                    cols["log_lq"] += [a * math.log(10) if p == "wide" else math.log(config["alpha_high"])] * seeds
                    cols["log_queries"] += np.log(q).tolist()
                    cols["hit"] += (~cens).tolist()
    return Table({k: np.asarray(v) for k, v in cols.items()})


def lq_small_config() -> dict:
    return get("lq-governs").resolve({"k": "4", "N": "4", "gamma": "0.5", "eps": "0.3", "wide_factor": "2",
                                      "log10_alphas": "-2,-3,-4", "pg_log10_alphas": "-2,-3,-4", "regime_factor": "1"})


def test_lq_governs_acceptance_can_fail():
    """The acceptance tests of ``lq-governs`` on synthetic tables with both readings of the
    step: a law that follows the claims passes every record and both claims; a learner
    whose mean undercuts the floor, a narrow profile that grows with 1/α_low, a wide
    profile that does not grow with 1/Q, and a slope left with two estimable points each
    fail their record; a failure under one reading leaves the other reading's records
    ``conditional`` on it and the claims resting on them conditional, the others confirmed."""
    exp, config = get("lq-governs"), lq_small_config()
    assert config["step_units"] == ["response", "token"]

    def claims(v, p, a, floor, u, above=5.0):
        return above * floor * (10.0 ** -a / 100 if (v, p) == ("alg1_full", "narrow") else 1.0)

    def summary(law, censor=None):
        s = exp.summarise(lq_synthetic(config, law, censor=censor), {**config, "seeds": 16})
        assert s["verdict"] == lq_expected_verdicts(s["slopes"], ["response", "token"])
        return s

    ok = summary(claims)
    assert all(rec["verdict"] == "confirmed" for rec in ok["slopes"].values()), \
        {k: r["verdict"] for k, r in ok["slopes"].items()}
    assert all(v is True for k, v in ok["verdict"].items() if k not in ("C4", "C6"))
    assert ok["verdict"]["C4"] == ok["verdict"]["C6"] == "confirmed"
    assert len(ok["slopes"]) == 18 and {r["reading"] for r in ok["slopes"].values()} == {"response", "token"}
    below = summary(lambda v, p, a, f, u: claims(v, p, a, f, u, 0.3 if v == "pg" else 5.0))
    for u in ("response", "token"):
        assert below["slopes"][lq_name("pg", u, "mean_over_floor")]["verdict"] == "not confirmed"
        assert below["slopes"][lq_name("alg1", u, "mean_over_floor")]["verdict"] == "confirmed"
        assert not below["verdict"][f"no_learner_below_lq_floor under {READING[u]}"]
    assert below["verdict"]["C6"] == "not confirmed" and below["verdict"]["C4"] == "confirmed"
    steep = summary(lambda v, p, a, f, u: 10.0 ** -a if p == "narrow" else 5 * f)
    assert steep["slopes"]["alg1_narrow"]["verdict"] == "not confirmed"
    assert not steep["verdict"]["narrow_flat_for_alg1_and_pg under the response-level step"]
    assert steep["verdict"]["C4"] == "not confirmed" and steep["verdict"]["C6"] == "confirmed"
    flat = summary(lambda v, p, a, f, u: 1e3 * 10.0 ** (-a / 3) if p == "wide" else 5 * f)
    assert flat["slopes"]["alg1_wide"]["verdict"] == "not confirmed"
    assert not flat["verdict"]["wide_slopes_near_1 under the response-level step"]
    assert flat["verdict"]["C4"] == flat["verdict"]["C6"] == "not confirmed"
    # one reading fails: the narrow profile grows under the per-token step only
    token_steep = summary(lambda v, p, a, f, u: 10.0 ** -a if (p, u) == ("narrow", "token") else claims(v, p, a, f, u))
    assert token_steep["slopes"]["alg1_token_narrow"]["verdict"] == "not confirmed"
    assert token_steep["slopes"]["alg1_narrow"]["verdict"] == "conditional (on the response-level step)"
    assert token_steep["slopes"]["alg1_wide"]["verdict"] == "confirmed"
    assert token_steep["verdict"]["C4"] == "conditional (on the response-level step)"
    assert token_steep["verdict"]["C4 under the response-level step"]
    assert not token_steep["verdict"]["C4 under the per-token step"]
    assert token_steep["verdict"]["C6"] == "confirmed"
    # the floor fails under the response-level step only
    resp_below = summary(lambda v, p, a, f, u: claims(v, p, a, f, u, 0.3 if u == "response" else 5.0))
    assert resp_below["slopes"]["alg1_token_mean_over_floor"]["verdict"] == "conditional (on the per-token step)"
    assert resp_below["verdict"]["C6"] == "conditional (on the per-token step)"
    assert resp_below["verdict"]["C4"] == "confirmed"
    # two estimable points are not a test, also when a verdict is recomputed from the record
    two = summary(claims, censor=lambda v, p, a, u: 0.75 if (v, p, a, u) == ("pg", "wide", -4, "response") else 0.0)
    assert two["slopes"]["pg_wide"]["n_points"] == 2 and two["slopes"]["pg_wide"]["verdict"] == "not confirmed"
    assert verdict(two["slopes"]["pg_wide"]) == "not confirmed"
    assert two["slopes"]["pg_token_wide"]["verdict"] == "conditional (on the per-token step)"
    assert two["slopes"]["alg1_wide"]["verdict"] == "confirmed"
    assert two["verdict"]["C4"] == two["verdict"]["C6"] == "conditional (on the per-token step)"
    # the text and the REPORT rows name the reading each verdict assumes
    text = exp.text({**two, "timing": {}})
    assert "under the per-token step: wide slopes ~1: yes" in text
    assert "under the response-level step: wide slopes ~1: NO" in text
    assert "claims: C4: conditional (on the per-token step); C6: conditional (on the per-token step)" in text
    table = "\n".join(report._md_table(report.slope_rows("lq-governs", two)))
    assert "| `pg_token_wide` (the per-token step) |" in table and "| `pg_wide` (the response-level step) |" in table


def test_lq_floor_test_compares_means():
    """The floor bounds expected queries, so the test compares means: exponential costs
    whose mean is 1.3× the floor have medians below it (≈ 0.9×), which a test on medians
    would fail, and pass on means; a mean at 0.8× fails. Censored runs count at their
    budget: a budget above the floor keeps the test passing, one far below it fails."""
    config = lq_small_config()
    rng = np.random.default_rng(1)
    n, alphas = 400, (-2.0, -3.0, -4.0)

    def run(scale, censored_at=None):
        prof, la, q = [], [], []
        for p in lq_governs.PROFILES:
            for a in alphas:
                prof += [p] * n
                la += [a] * n
                q += (scale * lq_governs._floor(config, p, a) * rng.exponential(1.0, n)).tolist()
        q, prof = np.asarray(q), np.asarray(prof)
        floors = np.array([lq_governs._floor(config, p, a) for p, a in zip(prof, la)])
        cens = np.zeros(q.size, bool) if censored_at is None else q > censored_at * floors
        q = np.where(cens, censored_at * floors if censored_at is not None else q, q)
        return {"profile": prof, "log10_alpha": np.asarray(la), "log_queries": np.log(q), "censored": cens}, floors

    r, floors = run(1.3)
    rec, ratios = lq_governs.floor_record(r, config)
    assert rec["verdict"] == "confirmed" and rec["ci"][0] >= 1.0
    q = np.exp(r["log_queries"])
    medians = [np.median(q[(r["profile"] == p) & (r["log10_alpha"] == a)]) / lq_governs._floor(config, p, a)
               for p in lq_governs.PROFILES for a in alphas]
    assert max(medians) < 1.0
    assert rec["estimate"] == pytest.approx(min(m for m, _ in ratios.values()), rel=1e-12)
    assert lq_governs.floor_record(run(0.8)[0], config)[0]["verdict"] == "not confirmed"
    assert lq_governs.floor_record(run(1.3, censored_at=5.0)[0], config)[0]["verdict"] == "confirmed"
    low = lq_governs.floor_record(run(1.3, censored_at=0.5)[0], config)[0]
    assert low["verdict"] == "not confirmed" and low["n_censored"] > 0


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


BL_ALPHAS = (-2.5, -3.0, -3.5, -4.0)


def bl_synthetic(laws: dict, *, sigma=0.1, censor=(), seeds: int = 16, seed: int = 0) -> Table:
    """A results table of ``baselines``: estimator ``v`` costs ``laws[v](1/α)`` queries
    times log-normal noise (``sigma``: one value or one per estimator); the estimators in
    ``censor`` have 3/4 of their runs censored at the two smallest ``α``, at a budget
    above every run (a point that is not estimable)."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("part", "variant", "seed", "log10_alpha", "log_lq", "log_queries", "hit", "zero_var_base",
                            "zero_var_end")}
    for v, law in laws.items():
        sd = sigma[v] if isinstance(sigma, dict) else sigma
        for a in BL_ALPHAS:
            q = law(10.0**-a) * np.exp(rng.normal(0.0, sd, seeds))
            cens = np.zeros(seeds, bool)
            if v in censor and a <= -3.5:
                cens[: 3 * seeds // 4] = True
                q[cens] = 10 * q.max()
            cols["part"] += [v] * seeds
            cols["variant"] += [v] * seeds
            cols["seed"] += list(range(seeds))
            cols["log10_alpha"] += [a] * seeds
            cols["log_lq"] += [a * math.log(10)] * seeds
            cols["log_queries"] += np.log(q).tolist()
            cols["hit"] += (~cens).tolist()
            cols["zero_var_base"] += [1.0] * seeds
            cols["zero_var_end"] += [0.5] * seeds
    return Table({k: np.asarray(v) for k, v in cols.items()})


def bl_summary(laws: dict, **kw) -> dict:
    exp = get("baselines")
    config = exp.resolve({"variants": ",".join(laws), "log10_alphas": ",".join(map(str, BL_ALPHAS)),
                          "regime_min": "300"})
    return exp.summarise(bl_synthetic(laws, **kw), {**config, "seeds": kw.get("seeds", 16)})


def test_baselines_escape_test_can_fail():
    """The escape test on synthetic costs. Reference: none_01 at ``2500 + 8/Q`` (slope
    ≈ 0.8 over 1/Q in [316, 1e4]). An estimator with the reference's shape pays the
    barrier (confirmed); one at ``300·(1/Q)^0.3`` escapes (not confirmed, ``escapes``);
    the same with its smallest-α points mostly censored is costlier, not an escape; a
    noisy one is inconclusive (neither), with low power; a reference dominated by its
    α-free part (``10^6 + 8/Q``) separates nothing, and voids every escape record."""
    ref = lambda x: 2500 + 8 * x  # noqa: E731
    flat = lambda x: 300 * x**0.3  # noqa: E731
    s = bl_summary({"none_01": ref, "grpo_01": lambda x: 1800 + 6 * x, "none_pm1": flat, "batch_mean_pm1": flat,
                    "rloo_01": ref}, censor=("batch_mean_pm1",), sigma={"none_01": 0.1, "grpo_01": 0.1,
                                                                        "none_pm1": 0.1, "batch_mean_pm1": 0.1,
                                                                        "rloo_01": 3.0})
    sl = s["slopes"]
    assert s["reference"] == "none_01" and sl["none_01_vs_invQ"]["verdict"] == "confirmed"
    assert sl["grpo_01_escape_margin"]["verdict"] == "confirmed" and not s["escapes"]["grpo_01"]
    assert sl["grpo_01_escape_margin"]["power"] > 0.99
    assert s["escapes"]["none_pm1"] and sl["none_pm1_escape_margin"]["verdict"] == "not confirmed"
    assert sl["none_pm1_escape_margin"]["ci"][1] < 0 < sl["grpo_01_escape_margin"]["ci"][0]
    assert sl["batch_mean_pm1_escape_margin"]["n_unestimable"] == 2 and not s["escapes"]["batch_mean_pm1"]
    noisy = sl["rloo_01_escape_margin"]
    assert noisy["ci"][0] < 0 < noisy["ci"][1] and noisy["verdict"] == "not confirmed" and not noisy["escapes"]
    assert noisy["power"] < 0.5
    assert not s["verdict"]["no_estimator_escapes"] and not s["verdict"]["every_estimator_pays_the_barrier"]
    for rec in (r for k, r in sl.items() if k.endswith("_escape_margin")):
        assert rec["threshold"] == pytest.approx((sl["none_01_vs_invQ"]["estimate"] + 0.5) / 2, rel=1e-12)
        assert rec["theory"] == rec["separation"] == pytest.approx(sl["none_01_vs_invQ"]["estimate"] - rec["threshold"])
    void = bl_summary({"none_01": lambda x: 1e6 + 8 * x, "grpo_01": lambda x: 1e6 + 8 * x})
    assert void["slopes"]["none_01_vs_invQ"]["verdict"] == "not confirmed"
    assert void["slopes"]["grpo_01_escape_margin"]["verdict"] == "not confirmed"
    assert not void["verdict"]["reference_separates_from_escape"]


def test_baselines_escape_test_is_paired():
    """The margin's bootstrap resamples the same seeds for the estimator and the
    reference: an estimator whose every run costs 1.2× the reference's run of the same
    seed has, in every draw, the reference's slope, so its margin interval is exactly
    that of ``(s_ref − ½)/2``; runs that do not pair up raise."""
    ref = lambda x: 2500 + 8 * x  # noqa: E731
    table = bl_synthetic({"none_01": ref}, sigma=0.3)
    copy = {k: table[k] for k in table.columns}
    copy2 = {**copy, "part": np.full(len(table), "rloo_01"), "variant": np.full(len(table), "rloo_01"),
             "log_queries": table["log_queries"] + math.log(1.2)}
    both = Table({k: np.concatenate([copy[k], copy2[k]]) for k in copy})
    exp = get("baselines")
    config = exp.resolve({"variants": "none_01,rloo_01", "log10_alphas": ",".join(map(str, BL_ALPHAS))})
    s = exp.summarise(both, {**config, "seeds": 16})
    ref_ci = np.array(s["slopes"]["none_01_vs_invQ"]["ci"])
    np.testing.assert_allclose(s["slopes"]["rloo_01_escape_margin"]["ci"], (ref_ci - 0.5) / 2, rtol=1e-9)
    shuffled = {**copy2, "seed": copy2["seed"] + 100}
    bad = Table({k: np.concatenate([copy[k], shuffled[k]]) for k in copy})
    with pytest.raises(ValueError, match="pairs runs"):
        exp.summarise(bad, {**config, "seeds": 16})


def test_baselines_stated_power():
    """The stated power ``Φ(δ/σ − 1.96)`` against the detection rate over synthetic
    experiments: an estimator at ``(1/Q)^½`` (the escape) is flagged, and one with the
    reference's shape confirmed, about as often as stated (within 0.15)."""
    from lpg.experiments import baselines

    config = {"regime_min": 300.0}
    ref, sqrt = (lambda x: 2500 + 8 * x), (lambda x: 60 * x**0.5)
    for law, hit in ((sqrt, lambda r: r["escapes"]), (lambda x: 1800 + 6 * x, lambda r: r["verdict"] == "confirmed")):
        found, stated = [], []
        for i in range(80):
            t = bl_synthetic({"none_01": ref, "none_pm1": law}, sigma={"none_01": 0.1, "none_pm1": 0.5}, seed=i)
            fits = {v: baselines._slope_fit(t, config, v, n_boot=400) for v in ("none_01", "none_pm1")}
            rec = baselines.escape_record(fits["none_pm1"], fits["none_01"], 0.5)
            rec["verdict"] = "confirmed" if rec["ci"][0] > 0 else "not confirmed"
            found.append(hit(rec))
            stated.append(rec["power"])
        assert 0.1 < np.mean(stated) < 0.9  # a regime where the check can tell
        assert abs(np.mean(found) - np.mean(stated)) < 0.15, (np.mean(found), np.mean(stated))


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
    ("baselines", "variants", "none_pm1,batch_mean_pm1", "variants"),
    ("baselines", "escape_exponent", "1.5", "escape_exponent"),
])
def test_bad_settings_raise(name, key, value, needle):
    with pytest.raises(ValueError, match=needle):
        get(name).resolve({key: value})
