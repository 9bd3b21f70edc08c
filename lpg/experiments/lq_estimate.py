"""``lq-estimate``: the Likelihood Quantile estimated from samples, its bias and variance,
and how well it predicts the outcome reward's query count (open question Q4).

Question. A user of a real model can only sample. With ``m`` samples per context, how far
is the estimate ``Q̂_q0(ε)`` from the exact LQ (bias, spread over seeds), how large must
``m`` be, and how well does ``Q̂`` predict the queries of Algorithm 1 (C4/C6)?

Setting. The ``wide`` profile of ``lq-governs`` (:mod:`lpg.experiments.lq_governs`): the
planted-margin family (``S = ⌊k/((k−1)γ²)⌋`` equally likely contexts), a base model with
``n_low = ⌈wide_factor·ε·S⌉`` contexts at ``q0(y*|x) = α_low`` and the others at
``α_high``, so the exact LQ (:func:`lpg.likelihood_quantile` of the base's likelihoods) is
``Q = α_low``; every position of a context has the same correct-token probability, so the
token-level LQ is ``Q^TL = α_low^{1/N}``. Base models of different quality: one per
``log10_alphas``. Estimators (:mod:`lpg.estimate`): the plug-in ``p̂ = H/m`` and the
Jeffreys posterior mean ``(H + 1/2)/(m + 1)``, then the ε-quantile over the ``S``
contexts; the same from ``m`` single-token draws per position for ``Q^TL``. The hits are
drawn on the exact event path (``H ~ Binomial(m, q0)``, one nested path over the ``ms``
per seed, as a user adding samples; the sampled path, real responses compared with
``y*``, is tested against it in the tests). Algorithm 1 (``m = ⌈1/Q⌉``, response-level
step) is run to exact error ``≤ ε`` on the same bases, as ``lq-governs`` runs it.

Prediction (derived before the runs). Write ``j = ⌊εS⌋``; ``Q̂`` is the ``(j+1)``-th
smallest estimate, and ``j + 1 ≤ n_low``, so it is decided by the ``n_low`` contexts at ``Q``.

* Per context ``p̂`` is unbiased with variance ``Q(1 − Q)/m``; the quantile is not.
  *Zero regime* (``mQ ≪ 1``): a low context has no hit with probability
  ``(1 − Q)^m ≈ e^{−mQ}``, and the plug-in ``Q̂ = 0`` while more than ``j`` contexts have
  none. The fewest samples per context after which ``Q̂ > 0`` is ``m* = `` the
  ``(j+1)``-th largest first-hit time ``T_x ~ Geometric(q0(y*|x))``; as ``Q → 0``,
  ``Q·T ~ Exp(1)``, so ``m*·Q`` has a law free of ``Q``: median ``m* ∝ 1/Q`` — an
  estimate needs ``m`` of the order of the cost ``1/Q`` it predicts. **Test A**: the slope
  of ``ln(median m*)`` against ``ln(1/Q)`` is 1, confirmed in ``[0.9, 1.1]``.
* *CLT regime* (``m·min(Q, 1−Q) ≫ 1``): ``p̂ ≈ Q + sqrt(Q(1−Q)/m)·Z`` per low context, so
  ``Q̂/Q − 1 ≈ Z_(j+1:n_low)/sqrt(x)``, ``x = mQ/(1 − Q)``, with ``Z_(j+1:n_low)`` the
  ``(j+1)``-th smallest of ``n_low`` standard normals: bias and spread both ``∝ x^{−1/2}``,
  the bias negative (a low order statistic of a noisy cluster), the same constant for
  every base model. The token level has ``Z`` replaced by the minimum over the ``N``
  positions first (a larger negative bias, the same exponent). **Test B**: the slope of
  ``ln RMSE(Q̂/Q)`` against ``ln x`` over the points with ``m·min(Q, 1−Q) ≥ regime_mq``,
  pooled over base models, is ``−1/2``, confirmed in ``[−0.6, −0.4]``, for both
  estimators at both levels.
* *The exact law.* ``Q̂`` is an increasing function of ``H_(j+1)``, whose law is a
  Poisson-binomial tail (:func:`lpg.estimate.hits_quantile_law`). **Test C**: at every
  base model and ``m`` (sequence level, both estimators) the simulated mean of ``Q̂/Q``
  matches the exact mean within 5 standard errors (a check of the event path, not of a
  claim).
* *Predicting the cost.* C4 at fixed ``γ`` with C3's form: Algorithm 1's queries
  ``≈ C·(1/Q + 1/ε)``, ``C`` fitted once (least squares on ``ln`` medians, all base
  models). With ``Q̂`` in place of ``Q`` the prediction changes by
  ``(1/Q̂ + 1/ε)/(1/Q + 1/ε)``, at most the factor ``Q/Q̂``; at ``x ≥ regime_mq`` the
  estimate is within ``≈ 1 ± 1/sqrt(regime_mq)`` of ``Q`` for most seeds. **Test D**: at
  each base model's smallest ``m`` with ``mQ ≥ regime_mq``, the median over seeds of
  ``|log10|`` of (prediction from the plug-in ``Q̂``)/(prediction from ``Q``) is at most
  ``log10 2`` at every base model (the statistic: the largest over base models, 95%
  bootstrap interval over seeds). Below ``m*`` the plug-in predicts an infinite cost and
  Jeffreys' ``Q̂ ≈ 1/(2m)`` predicts ``≈ 2Cm``: it under-predicts by ``≈ 1/(2mQ)``.
* *The cost of estimating.* Sampling every context ``m*`` times costs ``S·m* ∝ S/Q``
  verifier queries; Algorithm 1 pays ``≈ n_low/Q``. **Test E**: the slope of
  ``ln(S·median m*) − ln(median Algorithm 1 queries)`` against ``ln(1/Q)`` over
  ``1/Q ≥ regime_factor/ε`` (Algorithm 1's regime in ``lq-governs``) is 0, confirmed in
  ``[−0.25, 0.25]`` (Algorithm 1's log factor lowers it a little): estimating the LQ costs
  a fixed multiple of the run it predicts. Reported beside it: the queries of a user who
  stops sampling each context at its first hit, ``Σ_x min(T_x, m*)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import censored_median, fit_slope, slope_record, slopes_table, verdict
from lpg.estimate import (ESTIMATORS, estimate_moments, estimated_lq, estimated_token_lq, first_hit_log_times,
                          log_samples_until_nonzero, log_sequential_queries, median_samples_until_nonzero,
                          nested_hits)
from lpg.experiments import lq_governs
from lpg.metrics import quantile_index, token_log_likelihoods
from lpg.spec import Experiment, Int, Ints, Profile, Real, Reals, Sweep, common, divides

LN10 = math.log(10.0)
LEVELS = {"seq": "log_q", "tok": "log_qtl"}
LEVEL_TEXT = {"seq": "sequence LQ", "tok": "token-level LQ"}
OPEN_01 = dict(low=0.0, high=1.0, open_low=True, open_high=True)


def n_contexts(config: dict) -> int:
    return lq_governs.n_contexts(config)


def n_low(config: dict) -> int:
    return lq_governs.profile_counts(config)["wide"]


def base_log_alphas(config: dict, log10_alpha: float) -> np.ndarray:
    """The base's exact ``log q0(y*|x)`` per context (float64)."""
    S = n_contexts(config)
    return np.log(np.where(np.arange(S) < n_low(config), 10.0**log10_alpha, config["alpha_high"]))


def _fits(config: dict) -> str | None:
    S, low, j = n_contexts(config), n_low(config), quantile_index(n_contexts(config), config["eps"])
    if low > S:
        return f"wide_factor*eps*S must be at most S={S}, got wide_factor={config['wide_factor']}"
    if low < j + 1:
        return (f"wide_factor must put at least floor(eps*S)+1={j + 1} contexts at alpha_low (so that Q = alpha_low), "
                f"got {low} with wide_factor={config['wide_factor']}")
    if max(config["log10_alphas"]) >= math.log10(config["alpha_high"]):
        return f"log10_alphas must lie below log10(alpha_high)={math.log10(config['alpha_high']):.3g}"
    need = config["regime_mq"] / 10.0 ** min(config["log10_alphas"])
    if max(config["ms"]) < need:
        return (f"ms must reach regime_mq/min(alpha_low)={need:.3g} so that every base model has a point in the "
                f"CLT regime, got max {max(config['ms'])}")


def make_estimate_run(config: dict):
    """``run(key, log10_alpha)``: the base, its exact LQs, the estimates along ``ms`` and ``m*``."""
    k, N, eps = config["k"], config["N"], config["eps"]
    ms = jnp.asarray(config["ms"], jnp.float32)

    def run(key, log10_alpha):
        k_task, k_hits, k_first = jax.random.split(key, 3)
        task = lpg.make_planted(k_task, k=k, N=N, gamma=config["gamma"])
        w0 = lpg.tasks.planted_alpha_base(task, lq_governs.base_alphas(config, log10_alpha, n_low(config)))
        xs = task.contexts
        tok = token_log_likelihoods(task.fmap, w0, xs, jax.vmap(task.response)(xs))  # (S, N)
        seq = jnp.sum(tok, axis=-1)
        both = nested_hits(k_hits, jnp.concatenate([seq[:, None], tok], axis=1), ms)  # one draw: (M, S, 1 + N)
        hits, tok_hits = both[..., 0], both[..., 1:]  # whole responses (M, S), single tokens (M, S, N)
        m_col = ms[:, None]
        curves = {"step": ms.astype(jnp.int32)}
        for name in ESTIMATORS:
            curves[f"log_q_{name}"] = estimated_lq(hits, m_col, eps, name)
            curves[f"log_qtl_{name}"] = estimated_token_lq(tok_hits, m_col[..., None], eps, name)
        log_t = first_hit_log_times(k_first, seq)
        log_m_star = log_samples_until_nonzero(log_t, eps)
        return {"log_lq": lpg.likelihood_quantile(seq, eps), "log_lq_tl": lpg.token_likelihood_quantile(tok, eps),
                "log_m_star": log_m_star, "log_seq_queries": log_sequential_queries(log_t, log_m_star),
                "curves": {"estimate": curves}}

    return run


# ---------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------


def _estimates(table) -> dict:
    """Per run: ``log10_alpha``, exact ``log_lq``/``log_lq_tl``, ``log_m_star``, ``log_seq_queries``; the ``ms``;
    per (run, m): every estimate column."""
    rows = table.where(part="estimate", series="estimate")
    out = {c: rows.per_run(c).astype(np.float64) for c in ("log10_alpha", "log_lq", "log_lq_tl", "log_m_star",
                                                           "log_seq_queries")}
    out["ms"] = rows.by_run("step")[0].astype(np.float64)
    for level in LEVELS.values():
        for name in ESTIMATORS:
            out[f"{level}_{name}"] = rows.by_run(f"{level}_{name}").astype(np.float64)
    return out


def _alg1(table) -> dict:
    rows = table.where(part="alg1")
    return {"log10_alpha": rows["log10_alpha"].astype(np.float64), "log_queries": rows["log_queries"].astype(float),
            "censored": ~rows["hit"].astype(bool)}


def _percentiles(v: np.ndarray) -> list[float]:
    """The 2.5, 50 and 97.5 percentiles over seeds, each a value of ``v`` (``±inf`` kept: a zero estimate)."""
    return [float(np.percentile(v, p, method="inverted_cdf")) for p in (2.5, 50, 97.5)]


def _median_ci(v: np.ndarray, n_boot: int, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the median over seeds."""
    draws = np.median(v[np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))], axis=1)
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def _ci(v: np.ndarray) -> list[float]:
    """Mean ± 1.96 standard errors."""
    se = float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return [float(np.mean(v) - 1.96 * se), float(np.mean(v) + 1.96 * se)]


def error_points(est: dict, config: dict, level: str) -> dict[str, dict]:
    """Per estimator, base model and ``m``: ``Q̂/Q`` over seeds (mean with 95% CI, sd, RMSE of ``Q̂/Q − 1``, the
    share of zero estimates, percentiles of ``log10 Q̂/Q``), the exact law's mean and sd (where it is cheap) and
    ``x``."""
    exact = est["log_lq" if level == "seq" else "log_lq_tl"]
    ms, eps, N = est["ms"], config["eps"], config["N"]
    keys = ("log10_alpha", "m", "x", "in_regime", "mean", "mean_ci", "sd", "rmse", "zero_share", "log10_ratio_q",
            "exact_mean", "exact_sd", "z_exact")
    out = {name: {key: [] for key in keys} for name in ESTIMATORS}
    for a in np.unique(est["log10_alpha"]):
        sel = est["log10_alpha"] == a
        q = math.exp(float(exact[sel][0]))
        la = base_log_alphas(config, float(a))
        la = la if level == "seq" else np.repeat(la[:, None] / N, N, axis=1)
        for i, m in enumerate(ms):
            cheap = m * q <= 3e5
            law = estimate_moments(la, int(m), eps) if cheap else {}
            for name in ESTIMATORS:
                r = np.exp(est[f"{LEVELS[level]}_{name}"][sel, i] - exact[sel])
                with np.errstate(divide="ignore"):
                    lr = np.log10(r)
                ex = law.get(name, (math.nan, math.nan, math.nan))
                se = float(np.std(r, ddof=1) / math.sqrt(r.size))
                for key, v in (("log10_alpha", float(a)), ("m", float(m)), ("x", m * q / (1 - q)),
                               ("in_regime", bool(m * min(q, 1 - q) >= config["regime_mq"])),
                               ("mean", float(r.mean())), ("mean_ci", _ci(r)), ("sd", float(np.std(r, ddof=1))),
                               ("rmse", float(np.sqrt(np.mean((r - 1.0) ** 2)))),
                               ("zero_share", float(np.mean(r == 0))), ("log10_ratio_q", _percentiles(lr)),
                               ("exact_mean", ex[0]), ("exact_sd", ex[1]),
                               ("z_exact", (float(r.mean()) - ex[0]) / se if se > 0 and cheap else 0.0)):
                    out[name][key].append(v)
    return out


def rmse_record(est: dict, config: dict, level: str, name: str, *, n_boot: int, seed: int = 0) -> dict:
    """Test B: the slope of ``ln RMSE(Q̂/Q)`` against ``ln x`` over the CLT regime, seeds bootstrapped within
    each base model (the same resampled seeds at every ``m``: one path per seed)."""
    col, exact = est[f"{LEVELS[level]}_{name}"], est["log_lq" if level == "seq" else "log_lq_tl"]
    ms = est["ms"]
    rng = np.random.default_rng(seed)
    X, rel, boot = [], [], []
    for a in np.unique(est["log10_alpha"]):
        sel = np.flatnonzero(est["log10_alpha"] == a)
        q = math.exp(float(exact[sel[0]]))
        keep = ms * min(q, 1 - q) >= config["regime_mq"]
        if not keep.any():
            continue
        err2 = (np.exp(col[sel][:, keep] - exact[sel][:, None]) - 1.0) ** 2  # (seeds, points)
        draws = rng.integers(0, sel.size, size=(n_boot, sel.size))
        X.append(np.log(ms[keep] * q / (1 - q)))
        rel.append(0.5 * np.log(err2.mean(axis=0)))
        boot.append(0.5 * np.log(err2[draws].mean(axis=1)))
    X, Y, B = np.concatenate(X), np.concatenate(rel), np.concatenate(boot, axis=1)
    slope = lambda y: np.polyfit(X, y, 1)[0]  # noqa: E731
    b = np.array([slope(row) for row in B])
    fit = {"estimate": float(slope(Y)), "ci": [float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))],
           "regime": [float(np.exp(X.min())), float(np.exp(X.max()))], "n_points": int(X.size),
           "n_runs": int(est["log10_alpha"].size), "n_censored": 0, "n_unestimable": 0,
           "points": {"x": np.exp(X).tolist(), "rmse": np.exp(Y).tolist()}}
    return slope_record(fit, -0.5, accept=(-0.6, -0.4), note=(
        f"d ln RMSE(Q_hat/Q) / d ln x, x = mQ/(1-Q), {LEVEL_TEXT[level]}, {name} estimator, over "
        f"m min(Q, 1-Q) >= {config['regime_mq']:g} pooled over base models (CLT regime)"))


def alg1_constant(alg: dict, config: dict) -> tuple[float, dict]:
    """``ln C`` of ``queries ≈ C (1/Q + 1/ε)`` fitted to the Kaplan–Meier medians, and the medians per base."""
    eps, meds = config["eps"], {}
    for a in np.unique(alg["log10_alpha"]):
        sel = alg["log10_alpha"] == a
        meds[float(a)] = censored_median(alg["log_queries"][sel], alg["censored"][sel])  # ln queries
    a = np.array(list(meds))
    y = np.array(list(meds.values()))
    ok = np.isfinite(y)
    log_c = float(np.mean(y[ok] - np.log(10.0 ** -a[ok] + 1.0 / eps))) if ok.any() else math.nan
    return log_c, meds


def prediction_points(est: dict, config: dict, log_c: float, meds: dict) -> dict:
    """Per base model and ``m``: the predicted Algorithm 1 queries ``C (1/Q̂ + 1/ε)`` over seeds against the
    measured median (log10 ratio: median and central 95% of seeds), per estimator; and the exact-LQ prediction."""
    eps, ms = config["eps"], est["ms"]
    out = {"log10_alpha": [], "exact_log10_ratio": [], "m": ms.tolist()}
    for name in ESTIMATORS:
        out[name] = []
    for a in np.unique(est["log10_alpha"]):
        sel = est["log10_alpha"] == a
        meas = meds[float(a)]
        out["log10_alpha"].append(float(a))
        out["exact_log10_ratio"].append(float((log_c + np.log(10.0**-a + 1.0 / eps) - meas) / LN10))
        for name in ESTIMATORS:
            with np.errstate(divide="ignore", over="ignore"):
                pred = log_c + np.log(np.exp(-est[f"log_q_{name}"][sel]) + 1.0 / eps)
            lr = (pred - meas) / LN10
            out[name].append([_percentiles(lr[:, i]) for i in range(ms.size)])
    return out


def prediction_record(est: dict, config: dict, *, n_boot: int, seed: int = 0) -> dict:
    """Test D: at each base's smallest ``m`` with ``mQ ≥ regime_mq``, the median over seeds of
    ``|log10 (1/Q̂ + 1/ε)/(1/Q + 1/ε)|`` (plug-in); the largest over bases with a 95% bootstrap interval."""
    eps, ms = config["eps"], est["ms"]
    rng = np.random.default_rng(seed)
    worst, boot, where = [], [], []
    for a in np.unique(est["log10_alpha"]):
        sel = est["log10_alpha"] == a
        q = math.exp(float(est["log_lq"][sel][0]))
        i = int(np.flatnonzero(ms * q >= config["regime_mq"])[0])
        with np.errstate(divide="ignore", over="ignore"):
            v = np.abs(np.log10((np.exp(-est["log_q_plugin"][sel, i]) + 1 / eps) / (1 / q + 1 / eps)))
        worst.append(float(np.median(v)))
        boot.append(np.median(v[rng.integers(0, v.size, size=(n_boot, v.size))], axis=1))
        where.append([float(a), float(ms[i])])
    b = np.max(np.stack(boot), axis=0)
    fit = {"estimate": float(max(worst)), "ci": [float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))],
           "regime": [float(config["regime_mq"]), float(config["regime_mq"])], "n_points": len(worst),
           "n_runs": int(est["log10_alpha"].size), "n_censored": 0, "n_unestimable": 0,
           "points": {"log10_alpha_and_m": where, "median_abs_log10_change": worst}}
    rec = slope_record(fit, 0.0, accept=(0.0, math.log10(2.0)), note=(
        "largest over base models of the median over seeds of |log10| (Algorithm 1 cost predicted from the plug-in "
        f"Q_hat)/(from the exact Q), at the smallest m with mQ >= {config['regime_mq']:g}; within a factor 2"))
    rec["axes"] = "|log10 predicted-cost ratio| (regime: mQ)"
    return rec


def cost_record(est: dict, alg: dict, config: dict, *, n_boot: int) -> dict:
    """Test E: slope of ``ln(S·median m*) − ln(median Algorithm 1 queries)`` against ``ln(1/Q)`` over
    ``1/Q ≥ regime_factor/ε`` (two independent bootstraps over seeds, subtracted draw by draw)."""
    regime = [config["regime_factor"] / config["eps"], math.inf]
    q_est = np.exp(-est["log10_alpha"] * LN10)
    q_alg = np.exp(-alg["log10_alpha"] * LN10)
    m_fit = fit_slope(q_est, est["log_m_star"], np.zeros(q_est.size, bool), log_y=False, regime=regime,
                      n_boot=n_boot, return_boot=True)
    a_fit = fit_slope(q_alg, alg["log_queries"], alg["censored"], log_y=False, regime=regime, n_boot=n_boot, seed=1,
                      return_boot=True)
    d = m_fit["boot"] - a_fit["boot"]
    d = d[np.isfinite(d)]
    fit = {"estimate": m_fit["estimate"] - a_fit["estimate"],
           "ci": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if d.size else [math.nan] * 2,
           "regime": m_fit["regime"], "n_points": min(m_fit["n_points"], a_fit["n_points"]),
           "n_runs": m_fit["n_runs"] + a_fit["n_runs"], "n_censored": a_fit["n_censored"],
           "n_unestimable": a_fit["n_unestimable"],
           "points": {"x": m_fit["points"]["x"], "m_star_slope": m_fit["estimate"], "alg1_slope": a_fit["estimate"]}}
    rec = slope_record(fit, 0.0, accept=(-0.25, 0.25), note=(
        "d [ln(S median m*) - ln(median Algorithm 1 queries)] / d ln(1/Q), 1/Q >= regime_factor/eps: the cost of "
        "estimating the LQ (every context sampled until the plug-in quantile is nonzero) over the cost it predicts"))
    rec["min_points"] = 3
    rec["verdict"] = verdict(rec)
    return rec


def summary_of(table, config: dict) -> dict:
    est, alg = _estimates(table), _alg1(table)
    n_boot, S = config["n_boot"], n_contexts(config)
    slopes = {"m_star_vs_inv_lq": slope_record(
        fit_slope(np.exp(-est["log_lq"]), est["log_m_star"], np.zeros(est["log_lq"].size, bool), log_y=False,
                  n_boot=n_boot), 1.0, accept=(0.9, 1.1),
        note="d ln(median m*) / d ln(1/Q): samples per context until the plug-in Q_hat(eps) > 0 (Test A)")}
    errors = {}
    for level in LEVELS:
        points = error_points(est, config, level)
        for name in ESTIMATORS:
            slopes[f"{name}_{level}_rmse_vs_x"] = rmse_record(est, config, level, name, n_boot=n_boot)
            errors[f"{name}_{level}"] = points[name]
    slopes["plugin_cost_prediction_at_regime"] = prediction_record(est, config, n_boot=n_boot)
    slopes["estimation_over_alg1_cost_vs_inv_lq"] = cost_record(est, alg, config, n_boot=n_boot)
    log_c, meds = alg1_constant(alg, config)
    per_base = []
    for a in np.unique(est["log10_alpha"]):
        sel = est["log10_alpha"] == a
        med_m = float(np.exp(np.median(est["log_m_star"][sel])))
        q = math.exp(float(est["log_lq"][sel][0]))
        per_base.append({
            "log10_alpha": float(a), "log10_q": float(est["log_lq"][sel][0] / LN10),
            "log10_q_tl": float(est["log_lq_tl"][sel][0] / LN10), "median_m_star": med_m,
            "median_m_star_times_q": med_m * q,
            "median_m_star_times_q_ci": _median_ci(np.exp(est["log_m_star"][sel]) * q, n_boot),
            "m_star_times_q_95": [float(np.percentile(np.exp(est["log_m_star"][sel]) * q, p)) for p in (2.5, 97.5)],
            "exact_median_m_star": median_samples_until_nonzero(base_log_alphas(config, float(a)), config["eps"]),
            "estimation_queries_all": S * med_m,
            "estimation_queries_sequential": float(np.exp(np.median(est["log_seq_queries"][sel]))),
            "alg1_median_queries": float(np.exp(meds[float(a)])) if math.isfinite(meds[float(a)]) else None,
            "alg1_censored_share": float(alg["censored"][alg["log10_alpha"] == a].mean()),
        })
    ez = [abs(z) for key in ("plugin_seq", "jeffreys_seq") for z in errors[key]["z_exact"]]
    rmse_ok = all(slopes[f"{n}_{lv}_rmse_vs_x"]["verdict"] == "confirmed" for lv in LEVELS for n in ESTIMATORS)
    return {
        "experiment": "lq-estimate",
        "claims": ["Q4"],
        "n_contexts": S, "n_low": n_low(config), "quantile_index": quantile_index(S, config["eps"]),
        "slopes": slopes,
        "points": {"errors": errors, "per_base": per_base,
                   "prediction": prediction_points(est, config, log_c, meds), "alg1_log_c": log_c},
        "verdict": {
            "A_m_star_scales_as_1_over_Q": slopes["m_star_vs_inv_lq"]["verdict"] == "confirmed",
            "B_rmse_scales_as_x^-1/2": rmse_ok,
            "C_event_path_matches_exact_law_within_5_se": bool(max(ez, default=0.0) <= 5.0),
            "D_plugin_predicts_cost_within_factor_2_at_regime":
                slopes["plugin_cost_prediction_at_regime"]["verdict"] == "confirmed",
            "E_estimation_cost_tracks_alg1_cost": slopes["estimation_over_alg1_cost_vs_inv_lq"]["verdict"]
                                                  == "confirmed",
        },
        "units": {
            "m_star": "samples per context until the plug-in estimate of Q_q0(eps) is nonzero (exact event path)",
            "x": "m Q/(1-Q): expected hits per context at the quantile over its miss share",
            "errors": "Q_hat/Q over seeds per base model and m: mean (95% CI), sd, RMSE of Q_hat/Q - 1, share of "
                      "zero estimates, log10(Q_hat/Q) 2.5/50/97.5 percentiles over seeds; exact_*: the exact law",
            "prediction": "log10(predicted / measured median Algorithm 1 queries), prediction C(1/Q_hat + 1/eps) with "
                          "ln C fitted on the exact Q; 2.5/50/97.5 percentiles over seeds",
        },
    }


# ---------------------------------------------------------------------------------
# Figure and text
# ---------------------------------------------------------------------------------


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    """Four panels: ``Q̂/Q`` against ``mQ`` per base model (both estimators, the exact mean); RMSE against
    ``x`` with the ``x^{-1/2}`` law; ``m*``, the estimation cost and Algorithm 1's queries against ``1/Q``; the
    predicted over measured Algorithm 1 queries against ``mQ``."""
    import matplotlib

    est = _estimates(table)
    fig, ax = plotting.figure(2, 2, width=5.6, height=4.2)
    bases = np.unique(est["log10_alpha"])
    cmap = matplotlib.colormaps["viridis"]
    color = {a: cmap(i / max(1, bases.size - 1) * 0.85) for i, a in enumerate(bases)}
    ms = est["ms"]
    for a in bases:
        sel = est["log10_alpha"] == a
        q = math.exp(float(est["log_lq"][sel][0]))
        for est_name, ls in (("plugin", "-"), ("jeffreys", "--")):
            r = np.exp(est[f"log_q_{est_name}"][sel] - est["log_lq"][sel][:, None])
            plotting.seed_band(ax[0], np.log10(ms * q), np.log10(np.maximum(r, 1e-6)), color=color[a], alpha=0.06,
                               label=f"$Q=10^{{{a:g}}}$" if est_name == "plugin" else None)
            ax[0].lines[-1].set_linestyle(ls)
        pts = summary["points"]["errors"]["plugin_seq"]
        sel_p = np.asarray(pts["log10_alpha"]) == a
        exact_mean = np.asarray(pts["exact_mean"], float)[sel_p]  # nan where the law was not computed
        ax[0].plot(np.log10(np.asarray(pts["m"])[sel_p] * q), np.log10(np.maximum(exact_mean, 1e-6)), ":", color="k",
                   lw=0.8)
    ax[0].axhline(0.0, color="0.4", lw=0.8)
    ax[0].set(title="$\\hat Q/Q$ (solid: plug-in, dashed: Jeffreys; dotted: exact mean)",
              xlabel="$mQ$ (samples per context × LQ)", ylabel="$\\hat Q_{q_0}(\\varepsilon)/Q$ (zero shown at 1e-6)",
              ylim=(-6.2, 2.5))
    plotting.log10_axis(ax[0], "x")
    plotting.log10_axis(ax[0], "y")
    ax[0].legend(fontsize=6, loc="upper right")
    for key, marker, col in (("plugin_seq", "o", "#1f5fa8"), ("jeffreys_seq", "s", "#c0392b"),
                             ("plugin_tok", "^", "#2e8b57"), ("jeffreys_tok", "v", "#e67e22")):
        pts = summary["points"]["errors"][key]
        x, y = np.asarray(pts["x"], float), np.asarray(pts["rmse"], float)
        reg = np.asarray(pts["in_regime"], bool)
        est_name, level = key.split("_")
        slope = summary["slopes"][f"{est_name}_{level}_rmse_vs_x"]["estimate"]
        ax[1].loglog(x[reg], y[reg], marker, ms=3, color=col, ls="",
                     label=f"{est_name}, {LEVEL_TEXT[level]}: slope {slope:.2f}")
        ax[1].loglog(x[~reg], y[~reg], marker, ms=3, mfc="none", color=col, ls="")
        if reg.any():
            xs = np.geomspace(x[reg].min(), x[reg].max(), 20)
            c = np.exp(np.mean(np.log(y[reg]) + 0.5 * np.log(x[reg])))
            ax[1].loglog(xs, c / np.sqrt(xs), color=col, lw=0.8)
    ax[1].set(title="RMSE of $\\hat Q/Q$ (filled: fit regime; lines: $c\\,x^{-1/2}$)",
              xlabel="$x = mQ/(1-Q)$", ylabel="RMSE($\\hat Q/Q$)")
    ax[1].legend(fontsize=6)
    ax[1].grid(alpha=0.25, which="both")
    alg = _alg1(table)
    S = summary["n_contexts"]
    q_est = np.exp(-est["log_lq"])
    plotting.scaling_series(ax[2], q_est, est["log_m_star"] / LN10, np.zeros(q_est.size, bool),
                            label="$m^*$: samples/context until $\\hat Q>0$", color="#1f5fa8", jitter=0.03)
    plotting.scaling_series(ax[2], q_est, (est["log_m_star"] + math.log(S)) / LN10, np.zeros(q_est.size, bool),
                            label=f"$S m^*$ verifier queries (S={S})", color="#6a3d9a", jitter=0.03)
    plotting.scaling_series(ax[2], q_est, est["log_seq_queries"] / LN10, np.zeros(q_est.size, bool),
                            label="$\\sum_x \\min(T_x, m^*)$ (stop at first hit)", color="#2e8b57", jitter=0.03)
    plotting.scaling_series(ax[2], 10.0 ** -alg["log10_alpha"], alg["log_queries"] / LN10, alg["censored"],
                            label="Algorithm 1 queries to error $\\leq\\varepsilon$", color="#c0392b", jitter=0.03)
    per = summary["points"]["per_base"]
    ax[2].plot([10.0 ** -p["log10_alpha"] for p in per], [math.log10(p["exact_median_m_star"]) for p in per], "x",
               color="k", label="exact median $m^*$")
    ax[2].set_xscale("log")
    plotting.log10_axis(ax[2], "y")
    ax[2].set(title="the cost of an estimate and the cost it predicts", xlabel="$1/Q_{q_0}(\\varepsilon)$",
              ylabel="samples / queries")
    ax[2].legend(fontsize=6, loc="upper left")
    ax[2].grid(alpha=0.25, which="both")
    pred = summary["points"]["prediction"]
    for i, a in enumerate(pred["log10_alpha"]):
        q = 10.0**a
        for est_name, ls in (("plugin", "-"), ("jeffreys", "--")):
            v = np.asarray(pred[est_name][i], float)  # nan (None in JSON): an infinite prediction, Q_hat = 0
            ax[3].plot(np.log10(np.asarray(pred["m"]) * q), v[:, 1], ls, color=color[a], lw=1.2,
                       label=f"$Q=10^{{{a:g}}}$" if est_name == "plugin" else None)
        ax[3].axhline(pred["exact_log10_ratio"][i], color=color[a], lw=0.6, ls=":")
    ax[3].axhspan(-math.log10(2), math.log10(2), color="0.85", zorder=0)
    ax[3].set(title="Algorithm 1 cost from $\\hat Q$ / measured (median of seeds; none while $\\hat Q=0$)",
              xlabel="$mQ$", ylabel="log10 predicted / measured queries", ylim=(-4, 2))
    plotting.log10_axis(ax[3], "x")
    ax[3].legend(fontsize=6, loc="lower right")
    ax[3].grid(alpha=0.25)
    title = (f"{name}: estimating $Q_{{q_0}}(\\varepsilon)$ from m samples per context (Q4); planted k={config['k']}, "
             f"N={config['N']}, $\\gamma$={config['gamma']:g}, S={S}, $\\varepsilon$={config['eps']:g}; "
             f"{plotting.band_note(int(config.get('seeds', 0)))}")
    return plotting.save(fig, out_dir, name, title)


def _text(summary: dict) -> str:
    lines = [slopes_table(summary["slopes"]), "per base model (Q = alpha_low): median m* Q [95% CI] (central 95% "
             "of seeds), exact median m*; estimation queries S m* and sum_x min(T_x, m*) vs Algorithm 1's median "
             "queries:"]
    for p in summary["points"]["per_base"]:
        alg, ci, spread = p["alg1_median_queries"], p["median_m_star_times_q_ci"], p["m_star_times_q_95"]
        lines.append(f"  Q=1e{p['log10_alpha']:g}: m*Q={p['median_m_star_times_q']:.3g} [{ci[0]:.3g}, {ci[1]:.3g}] "
                     f"({spread[0]:.3g}..{spread[1]:.3g}), exact median m*="
                     f"{p['exact_median_m_star']:.4g}, S m*={p['estimation_queries_all']:.3g}, sequential="
                     f"{p['estimation_queries_sequential']:.3g}, Algorithm 1={'n/a' if alg is None else f'{alg:.3g}'}")
    e = summary["points"]["errors"]
    for key in ("plugin_seq", "jeffreys_seq", "plugin_tok", "jeffreys_tok"):
        pts = e[key]
        i = [k for k, r in enumerate(pts["in_regime"]) if r]
        if i:
            k = min(i, key=lambda t: abs(math.log(pts["x"][t] / 10.0)))
            lines.append(f"  {key} at x={pts['x'][k]:.3g} (Q=1e{pts['log10_alpha'][k]:g}, m={pts['m'][k]:g}): "
                         f"mean Q_hat/Q={pts['mean'][k]:.3f} [{pts['mean_ci'][k][0]:.3f}, {pts['mean_ci'][k][1]:.3f}]"
                         f", sd {pts['sd'][k]:.3f}, exact mean {pts['exact_mean'][k]:.3f}")
    lines.append("checks: " + "; ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in summary["verdict"].items()))
    return "\n".join(lines)


class LqEstimate(Experiment):
    name = "lq-estimate"
    description = "Q4: the LQ estimated from m samples per context: bias, spread, m needed, and the cost it predicts"
    claims = ("Q4",)
    settings = {
        **common(k=4, N=16, check_every=10, chunk_size=16, n_boot=2000),
        "gamma": Real(0.2, "planted margin (S = floor(k/((k-1) gamma^2)) contexts)", low=0.0, high=1.0, open_low=True),
        "eps": Real(0.05, "quantile level eps (and Algorithm 1's target error)", **OPEN_01),
        "alpha_high": Real(0.5, "base likelihood of the contexts not at alpha_low", **OPEN_01),
        "wide_factor": Real(4.0, "ceil(wide_factor*eps*S) contexts at alpha_low, so Q = alpha_low", low=0.0,
                            open_low=True),
        "log10_alphas": Reals([-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0], "log10 Q of the base models (alpha_low)",
                              low=-7.0, high=0.0, open_high=True, distinct=True, min_len=3),
        "ms": Ints([1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000, 300000, 1000000],
                   "samples per context m (one nested path per seed)", low=1, high=10_000_000, increasing=True,
                   min_len=3),
        "regime_mq": Real(10.0, "CLT regime: m min(Q, 1-Q) >= regime_mq (Tests B, D)", low=0.0, open_low=True),
        "regime_factor": Real(10.0, "Test E fits 1/Q >= regime_factor/eps (Algorithm 1's regime)", low=0.0,
                              open_low=True),
        "alg1_max_steps": Int(40000, "Algorithm 1's iteration budget (runs that spend it are censored)", low=1),
    }
    constraints = (divides("check_every", "alg1_max_steps"), _fits)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"gamma": 0.1, "N": 32, "log10_alphas": [-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0, -5.0],
                            "alg1_max_steps": 200000, "check_every": 50, "chunk_size": 0},
                       "S = 133 contexts, Q down to 1e-5, 64 seeds"),
        "quick": Profile(2, {"log10_alphas": [-1.0, -1.5, -2.0], "ms": [1, 10, 100, 1000, 10000],
                             "alg1_max_steps": 4000, "regime_factor": 1.0, "n_boot": 200}),
    }

    def sweeps(self, config):
        """The estimates (event path), then Algorithm 1 on the same base models."""
        yield Sweep("estimate", make_estimate_run(config), {"log10_alpha": [float(a) for a in config["log10_alphas"]]})
        yield Sweep("alg1", lq_governs.make_run(config, "alg1"),
                    {"full": [0], "log10_alpha": [float(a) for a in config["log10_alphas"]], "n_low": [n_low(config)]},
                    {"algorithm": "alg1", "step_unit": "response"})

    summarise = staticmethod(summary_of)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary: dict) -> str:
        return _text(summary) + "\n" + self.timing_line(summary)
