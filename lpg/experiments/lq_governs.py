"""``lq-governs``: outcome-reward queries are governed by the base model's Likelihood
Quantile, and no ORM learner we run beats the LQ curve (claims C4 and C6, PAPER.md §4).

Setting. The planted-margin family (:class:`lpg.PlantedTask`, margin exactly ``γ``,
``S = ⌊k/((k−1)γ²)⌋`` contexts, uniform context distribution, feature dimension
``D = S·k ≥ k/γ²``: the lower-bound regime of C6). The base model ``q0`` is built with
:func:`lpg.tasks.planted_alpha_base`, one likelihood per context: ``n_low`` contexts get
``q0(y*|x) = α_low`` and the others ``α_high``. Two *profiles*:

* ``wide``: ``n_low = ⌈wide_factor·ε·S⌉`` low contexts, more than an ε-fraction, so
  ``Q_{q0}(ε) = α_low``: the LQ falls with ``α_low``;
* ``narrow``: ``n_low = ⌈ε·S⌉ − 1`` low contexts, less than an ε-fraction, so
  ``Q_{q0}(ε) = α_high`` whatever ``α_low`` is: the smallest base likelihood falls,
  the LQ does not.

Both are computed exactly (``lpg.metrics.likelihood_quantile`` over all ``S`` equally
likely contexts). The measured quantity is a hitting time: reward queries until the
exact error ``err(w) = mean_x(1 − p_w(y*|x))`` over all ``S`` contexts is ``≤ ε``
(:func:`lpg.hitting.run_until`); runs that exhaust their iteration budget are
censored, kept, and enter the Kaplan–Meier medians and the fits.

ORM learners (all 0/1 outcome rewards, adaptive step, exact event path of PAPER.md §6):

* ``alg1``: Algorithm 1 with the paper's ``m = min(⌈1/Q_{q0}(ε)⌉, k^N)``;
* ``alg1_full``: Algorithm 1 with ``m = k^N`` (no knowledge of the LQ);
* ``pg``: on-policy policy gradient, one context and one query per iteration.

Both readings of the adaptive step (``step_units``; PAPER.md §3 leaves open which gradient
it follows): ``response``, the paper's, one step on the accepted (Algorithm 1) or rewarded
(PG) response's gradient, and ``token``, one adaptive step per token of it, in order
(``step_unit`` of :class:`lpg.BestOfM` and :class:`lpg.PolicyGradient`). Each learner runs
the same grid under both; the per-token rows carry ``step_unit = "token"`` and their
records are ``<learner>_token_<quantity>`` (``reading`` names the reading of every
record, its note says it in words). The floor below binds both readings alike: it only
uses that a learner samples from ``q0`` on a context until its first success there.

What C4/C6 predict: on the ``wide`` profile queries grow like ``1/(Q γ²)`` (slope 1 in
``1/Q`` once ``1/Q ≫ 1/ε``) for every learner; on the ``narrow`` profile queries do not
grow with ``1/α_low`` for ``alg1`` and ``pg`` (the LQ, not the smallest likelihood,
decides), while ``alg1_full`` keeps paying ``1/α_low`` on the few hard contexts it does
not need (the reason the paper truncates at ``m ≈ 1/Q``).

The LQ floor. Before its first success on a context, each learner's chance of a correct
response there is at most ``q0(y*|x)`` per query (on-policy on an untouched context is
``q0``; the mixture draws are ``½q0 + ½k^-N ≤ q0``), so it spends at least
``Geometric(q0(y*|x))`` queries on every context it ever learns, and it must learn enough
contexts for the untouched ones to carry error ``≤ ε``. The cheapest such set (a
knapsack, relaxed to a linear programme so the bound stays valid) gives the *floor*
``Σ_c 1/q0(y*_c|c)`` on expected queries, drawn on the figure
(:func:`lpg.theory.lq_floor`): ``≈ (n_low − εS)/Q`` on the ``wide`` profile, the
``Ω(1/Q)`` of C6 with an explicit constant. It binds learners that sample from ``p_w``,
``q0`` or uniform mixtures of them, i.e. every policy-gradient variant; a learner that
enumerates the ``k`` candidate shifts of the planted family would not be bound by it
(the paper's lower bound is over harder instance classes), and none is run here.

Acceptance (stated before the data):

* **Wide slopes** (C4, C6; records ``<learner>_wide``): the least-squares slope of
  ``ln(median queries)`` against ``ln(1/Q)`` over ``1/Q ≥ regime_factor/ε`` (bootstrap CI
  over seeds), theory 1, confirmed when the estimate is in ``[0.75, 1.25]``: ``Õ`` hides
  log factors, e.g. the ``≈ 2·ln(1/α)`` adaptive steps that lift a context from ``α`` once
  it has succeeded (PAPER.md §3), which add about ``1/ln(1/Q)`` to the local slope. The
  slope compares like with like: a cost whose law scales with ``1/Q`` (sums of geometric
  waiting times) has the same exponent in its median and in its mean, and the median is
  the one that stays estimable when runs are censored.
* **Narrow slopes** (C4; ``<learner>_narrow``): the same against ``ln(1/α_low)`` at fixed
  ``Q``; theory 0 for ``alg1`` and ``pg`` (confirmed in ``[−0.2, 0.2]``), 1 for
  ``alg1_full`` (``[0.75, 1.25]``; the mechanism behind ``m ≈ 1/Q``, not a claim).
* Every slope rests on at least three estimable points of its regime; with fewer it is
  not confirmed (two points always fit a line).
* **The LQ floor** (C6; ``<learner>_mean_over_floor``): the floor bounds *expected*
  queries (it adds the expected waiting times ``1/q0`` of geometric laws), so the
  learner's *mean* queries are compared with it, not the median: a geometric waiting
  time's median is ``≈ ln 2/q0``, 0.69 of its mean, so the median of a learner that sits
  at the floor lies below it, and a median above the floor does not show the mean is.
  (A floor for the median would need the law of a sum of waiting times over a set of
  contexts the learner picks as it goes; no bound of that kind follows as simply as the
  expectation's, by linearity.) The mean is the restricted mean: a censored run counts
  at its budget, which can only lower it, so a mean above the floor holds for the
  uncensored mean too. Statistic: the smallest ratio ``mean/floor`` over both profiles
  and every ``α_low``, with a 95% interval from a bootstrap over seeds (runs resampled
  within each point, the minimum taken in every draw). Confirmed when the whole interval
  is ``≥ 1``; a learner whose mean undercuts the floor at some point (which would mean an
  engine or derivation error: the floor binds every learner run here) fails. The ratio
  itself says how far above the bound the learners are.

Readings. Every test above runs under each reading. A record confirmed under one reading
only is ``conditional (on <that reading>)`` (:func:`lpg.analysis.mark_conditional`). The
three checks are stated per reading (``summary.verdict``: ``wide_slopes_near_1 under the
per-token step`` …); C4 rests on the wide slopes and the narrow ones of ``alg1`` and
``pg``, C6 on the wide slopes and the floor records, each ``confirmed`` when it passes
under both readings, ``conditional (on …)`` under one, ``not confirmed`` under none
(:func:`lpg.analysis.claim_under_readings`).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

import lpg
from lpg import plotting
from lpg.algorithms.base import READINGS
from lpg.analysis import (censored_median, checks_line, claim_under_readings, fit_record, mark_conditional,
                          slope_record, slopes_table, under_reading, verdict)
from lpg.features import max_planted_contexts
from lpg.hitting import error_at_most, run_until
from lpg.problem import planted_problem
from lpg.spec import Choices, Experiment, Int, Profile, Real, Reals, Sweep, common, divides
from lpg.theory import lq_floor, orm_log_m

LN10 = math.log(10.0)
VARIANTS = ("alg1", "alg1_full", "pg")
PROFILES = ("wide", "narrow")
STEP_UNITS = tuple(READINGS)  # the paper's reading first
LABELS = {"alg1": "Algorithm 1, $m=\\lceil 1/Q\\rceil$", "alg1_full": "Algorithm 1, $m=k^N$", "pg": "on-policy PG"}
STEP_TEXT = {"response": "response-level step", "token": "per-token step"}
COLORS = {"alg1": "#c0392b", "alg1_full": "#e67e22", "pg": "#1f5fa8"}
OPEN_01 = dict(low=0.0, high=1.0, open_low=True, open_high=True)
LOG10_LIKELIHOOD = dict(low=-30.0, high=0.0, open_low=True, open_high=True)


def n_contexts(config: dict) -> int:
    return max_planted_contexts(config["k"], config["gamma"])


def profile_counts(config: dict) -> dict[str, int]:
    """Number of low-likelihood contexts of each profile."""
    S, eps = n_contexts(config), config["eps"]
    return {"wide": int(math.ceil(config["wide_factor"] * eps * S - 1e-9)),
            "narrow": int(math.ceil(eps * S - 1e-9)) - 1}


def _profiles_fit(config: dict) -> str | None:
    """The narrow profile has a low context, the wide one at most ``S``, and every
    ``α_low`` lies below ``α_high`` (``S ≥ 1`` already follows from ``γ ≤ 1``, ``k ≥ 2``)."""
    S, k, gamma = n_contexts(config), config["k"], config["gamma"]
    counts = profile_counts(config)
    if counts["narrow"] < 1:
        return (f"eps must exceed 1/S = {1 / S:.4g} (S={S} contexts for k={k}, gamma={gamma}) "
                f"so that the narrow profile has a low context, got {config['eps']}")
    if counts["wide"] > S:
        return f"wide_factor*eps*S must be at most S={S}, got wide_factor={config['wide_factor']}"
    for name in ("log10_alphas", "pg_log10_alphas"):
        if max(config[name]) >= math.log10(config["alpha_high"]):
            return f"{name} must lie below log10(alpha_high)={math.log10(config['alpha_high']):.3g}"


def base_alphas(config: dict, log10_alpha, n_low) -> jax.Array:
    """Per-context base likelihoods: the first ``n_low`` contexts at ``α_low``."""
    alpha_low = 10.0 ** jnp.asarray(log10_alpha, jnp.float32)
    return jnp.where(jnp.arange(n_contexts(config)) < n_low, alpha_low, config["alpha_high"])


def series_name(variant: str, unit: str) -> str:
    """A learner's name under one reading of the step: ``_token`` added for the per-token one."""
    return variant if unit == "response" else f"{variant}_{unit}"


def make_run(config: dict, part: str, unit: str = "response"):
    """``run(key, full, log10_alpha, n_low)`` of one seed: the task and base model, the
    exact LQ, then :func:`run_until` error ``≤ ε`` (``part``: ``"alg1"`` or ``"pg"``;
    ``full = 1``: Algorithm 1 with ``m = k^N``; ``unit``: the reading of the adaptive step)."""
    k, N, eps = config["k"], config["N"], config["eps"]
    alg = (lpg.PolicyGradient(lpg.rewards.Outcome(), batch_size=1, step_unit=unit) if part == "pg"
           else lpg.BestOfM(batch_size=1, step_unit=unit))
    max_steps = config["pg_max_steps"] if part == "pg" else config["alg1_max_steps"]

    def run(key, full, log10_alpha, n_low):
        k_task, k_run = jax.random.split(key)
        task = lpg.make_planted(k_task, k=k, N=N, gamma=config["gamma"])
        w0 = lpg.tasks.planted_alpha_base(task, base_alphas(config, log10_alpha, n_low))
        problem = planted_problem(task, key=k_task, base=w0)
        log_lq = lpg.likelihood_quantile(lpg.tasks.log_alpha_planted_base(task, w0), eps)
        log_m = jnp.where(full > 0, N * math.log(k), orm_log_m(log_lq, N, k))
        hyper = lpg.Hyper(jnp.float32(1.0), log_m.astype(jnp.float32), jnp.float32(jnp.inf))
        hit = run_until(alg, problem, hyper, k_run, max_steps=max_steps, target=error_at_most(eps),
                        check_every=config["check_every"])
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_lq": log_lq}

    return run


def _grid(config: dict, part: str) -> dict:
    """One compiled sweep's grid: Algorithm 1 runs ``alg1`` (``full = 0``) and ``alg1_full`` (``full = 1``)."""
    counts = profile_counts(config)
    alphas = config["pg_log10_alphas"] if part == "pg" else config["log10_alphas"]
    return {"full": [0] if part == "pg" else [0, 1], "log10_alpha": [float(a) for a in alphas],
            "n_low": [counts["wide"], counts["narrow"]]}


def _expectation(variant: str, profile: str) -> tuple[float, tuple[float, float], str]:
    """Theory exponent, acceptance range and meaning of each fitted slope."""
    if profile == "wide":
        return 1.0, (0.75, 1.25), "d ln(queries) / d ln(1/Q_q0(eps)) where 1/Q >= regime_factor/eps (C4, C6)"
    note = "d ln(queries) / d ln(1/alpha_low) where 1/alpha_low >= regime_factor/eps, at fixed Q_q0(eps)"
    if variant == "alg1_full":
        return 1.0, (0.75, 1.25), note + "; m = k^N pays for hard contexts it does not need (mechanism, not a claim)"
    return 0.0, (-0.2, 0.2), note + " (C4: the LQ, not the smallest likelihood, governs)"


def _per_run(table, config: dict, variant: str, unit: str = "response") -> dict:
    """The runs of one variant under the reading ``unit`` of the step (rows of algorithm
    ``alg1`` split by ``full``), in run order."""
    part = "pg" if variant == "pg" else "alg1"
    rows = table.rows((table["algorithm"] == part) & ((table["full"] > 0) == (variant == "alg1_full"))
                      & under_reading(table, unit))
    return {
        "log10_alpha": rows["log10_alpha"].astype(np.float64),
        "profile": np.where(rows["n_low"] == profile_counts(config)["wide"], "wide", "narrow"),
        "log_lq": rows["log_lq"].astype(np.float64),
        "log_queries": rows["log_queries"].astype(np.float64),
        "censored": ~rows["hit"].astype(bool),
    }


def _x(run: dict, profile: str) -> np.ndarray:
    """The x of a profile's fit: ``1/Q`` (wide) or ``1/α_low`` (narrow)."""
    return np.exp(-run["log_lq"]) if profile == "wide" else 10.0 ** (-run["log10_alpha"])


MIN_POINTS = 3
"""Fewest estimable points a slope verdict rests on (two points always fit a line)."""


def _floor(config: dict, profile: str, log10_alpha: float) -> float:
    S, counts = n_contexts(config), profile_counts(config)
    return lq_floor(np.where(np.arange(S) < counts[profile], 10.0**log10_alpha, config["alpha_high"]), config["eps"])


def floor_record(run: dict, config: dict, *, n_boot: int = 2000, seed: int = 0) -> tuple[dict, dict]:
    """The LQ-floor test of one learner (module docstring): at every (profile, ``α_low``)
    the restricted mean of queries (censored runs at their budget) over the floor, and
    the smallest of these ratios with its 95% bootstrap interval (runs resampled within
    each point, the minimum taken per draw). Returns ``(record, per-point ratios)``."""
    rng = np.random.default_rng(seed)
    keys, ratio, boot, cens = [], [], [], 0
    for p in PROFILES:
        for a in np.unique(run["log10_alpha"][run["profile"] == p]):
            sel = (run["profile"] == p) & (run["log10_alpha"] == a)
            q, fl = np.exp(run["log_queries"][sel]), _floor(config, p, float(a))
            draw = rng.integers(0, q.size, size=(n_boot, q.size))
            keys.append((p, float(a)))
            ratio.append(q.mean() / fl)
            boot.append(q[draw].mean(axis=1) / fl)
            cens += int(run["censored"][sel].sum())
    ratio, low = np.asarray(ratio), np.min(np.stack(boot), axis=0)
    fit = {"estimate": float(ratio.min()), "ci": [float(np.percentile(low, 2.5)), float(np.percentile(low, 97.5))],
           "regime": [float(10.0 ** -max(a for _, a in keys)), float(10.0 ** -min(a for _, a in keys))],
           "n_points": len(keys), "n_runs": int(run["censored"].size),
           "n_censored": cens, "n_unestimable": 0,
           "points": {"profile": [p for p, _ in keys], "log10_alpha_low": [a for _, a in keys],
                      "mean_over_floor": ratio.tolist()}}
    rec = slope_record(fit, 1.0, accept=(1.0, math.inf), log_x=False, log_y=False, claim="C6",
                       note="smallest mean/floor over both profiles and every alpha_low (restricted mean: censored "
                            "runs at their budget); the floor bounds expected queries; confirmed when the whole "
                            "CI >= 1")
    rec["accept_ci"] = True
    rec["verdict"] = verdict(rec)
    rec["axes"] = "mean queries / LQ floor, smallest over the points (regime: 1/alpha_low)"
    boot_ci = [[float(v) for v in np.percentile(b, [2.5, 97.5])] for b in boot]
    return rec, {key: (r, ci) for key, r, ci in zip(keys, ratio.tolist(), boot_ci)}


CHECKS = {
    "wide_slopes_near_1": [(v, "wide") for v in VARIANTS],
    "narrow_flat_for_alg1_and_pg": [("alg1", "narrow"), ("pg", "narrow")],
    "no_learner_below_lq_floor": [(v, "mean_over_floor") for v in VARIANTS],
}
"""The checks of the module docstring: each names the records ``(variant, quantity)`` it needs."""
CLAIM_CHECKS = {"C4": ("wide_slopes_near_1", "narrow_flat_for_alg1_and_pg"),
                "C6": ("wide_slopes_near_1", "no_learner_below_lq_floor")}
"""The checks each claim rests on (``alg1_full``'s narrow slope is a mechanism, not a claim)."""
CHECK_TEXT = {"wide_slopes_near_1": "wide slopes ~1", "narrow_flat_for_alg1_and_pg": "narrow flat for alg1 and pg",
              "no_learner_below_lq_floor": "no learner below the LQ floor"}


def record_name(variant: str, unit: str, quantity: str) -> str:
    """``<variant>_<quantity>`` (the response-level step) or ``<variant>_token_<quantity>``."""
    return f"{series_name(variant, unit)}_{quantity}"


def _passes(rec: dict, unit: str) -> bool:
    """Confirmed, or conditional on the reading ``unit`` itself."""
    return verdict(rec) in ("confirmed", f"conditional (on {READINGS[unit]})")


def _reading_records(run: dict, config: dict, variant: str, unit: str) -> tuple[dict, dict]:
    """The wide, narrow and floor records of one learner under one reading, and its points."""
    eps, reading = config["eps"], READINGS[unit]
    slopes, points = {}, {}
    floor, ratios = floor_record(run, config)
    for p in PROFILES:
        sel = run["profile"] == p
        theory, accept, note = _expectation(variant, p)
        rec = fit_record(_x(run, p)[sel], run["log_queries"][sel], run["censored"][sel], theory=theory,
                         accept=accept, log_x=True, log_y=False, regime=[config["regime_factor"] / eps, math.inf],
                         note=note, claim="" if p == "wide" else "C4")
        rec["min_points"] = MIN_POINTS
        if rec["n_points"] < MIN_POINTS:
            rec["note"] += f"; fewer than {MIN_POINTS} estimable points in the regime: not a test"
        slopes[p] = rec
        la, lq, t, c = run["log10_alpha"][sel], run["log_lq"][sel], run["log_queries"][sel], run["censored"][sel]
        group = np.unique(la)
        points[p] = {
            "log10_alpha_low": group.tolist(),
            "log10_inv_lq": [float(-lq[la == a][0] / LN10) for a in group],
            "log10_median_queries": [censored_median(t[la == a], c[la == a]) / LN10 for a in group],
            "log10_mean_queries": [float(np.log10(np.mean(np.exp(t[la == a])))) for a in group],
            "log10_floor": [math.log10(_floor(config, p, float(a))) for a in group],
            "mean_over_floor": [ratios[(p, float(a))][0] for a in group],
            "mean_over_floor_ci": [ratios[(p, float(a))][1] for a in group],
            "censored_fraction": [float(c[la == a].mean()) for a in group],
        }
    slopes["mean_over_floor"] = floor
    for rec in slopes.values():
        rec["reading"] = unit
        rec["note"] += f"; {reading}"
        rec["verdict"] = verdict(rec)
    return slopes, points


def summary_of(table, config: dict) -> dict:
    counts, units = profile_counts(config), list(config["step_units"])
    slopes, points = {}, {}
    for unit in units:  # per reading: every learner's wide and narrow slopes, then the floor records
        recs = {v: _reading_records(_per_run(table, config, v, unit), config, v, unit) for v in VARIANTS}
        for q in (PROFILES, ("mean_over_floor",)):
            slopes.update({record_name(v, unit, name): recs[v][0][name] for v in VARIANTS for name in q})
        points.update({record_name(v, unit, p): recs[v][1][p] for v in VARIANTS for p in PROFILES})
    for v in VARIANTS:
        for q in (*PROFILES, "mean_over_floor"):
            mark_conditional({READINGS[u]: slopes[record_name(v, u, q)] for u in units})
    verdicts = {f"{check} under {READINGS[u]}": all(_passes(slopes[record_name(v, u, q)], u) for v, q in recs)
                for u in units for check, recs in CHECKS.items()}
    for claim, checks in CLAIM_CHECKS.items():
        verdicts.update(claim_under_readings(claim, {
            READINGS[u]: [slopes[record_name(v, u, q)] for check in checks for v, q in CHECKS[check]] for u in units}))
    first = record_name("alg1", units[0], "wide")
    return {
        "experiment": "lq-governs",
        "claims": ["C4", "C6"],
        "n_contexts": n_contexts(config),
        "n_low": counts,
        "step_units": units,
        "lq_wide_equals_alpha_low": bool(np.allclose(
            points[first]["log10_inv_lq"], -np.asarray(points[first]["log10_alpha_low"]), atol=1e-3)),
        "lq_narrow": float(config["alpha_high"]),
        "slopes": slopes,
        "points": points,
        "verdict": verdicts,
        "units": {
            "queries": "reward queries until err(w) <= eps (exact error over all S contexts); medians are "
                       "Kaplan-Meier over seeds (censored runs count as >= their budget), log10; means are restricted "
                       "(censored runs at their budget)",
            "floor": "log10 of the expected-query floor sum_c 1/q0(y*|c) (module docstring); mean_over_floor: "
                     "restricted mean queries / floor, with a 95% bootstrap interval",
            "x": f"1/(Q gamma^2) on the figure; slopes are against 1/Q (gamma = {config['gamma']} fixed)",
            "readings": "records and points of <learner>_token_* assume the per-token step, the others the "
                        "response-level step (the paper's)",
        },
    }


def _floor_panel(ax, summary: dict, units: list[str]) -> None:
    """Mean queries over the LQ floor at every point (95% bootstrap interval), every learner
    and reading: the statistic of the C6 test, which must stay ``≥ 1``."""
    for unit in units:
        ls = "-" if unit == "response" else "--"
        for v in VARIANTS:
            for p, marker in zip(PROFILES, ("o", "s")):
                pts = summary["points"][record_name(v, unit, p)]
                x, r = 10.0 ** -np.asarray(pts["log10_alpha_low"]), np.asarray(pts["mean_over_floor"])
                ci = np.asarray(pts["mean_over_floor_ci"]).reshape(-1, 2)
                ax.errorbar(x, r, yerr=[r - ci[:, 0], ci[:, 1] - r], color=COLORS[v], ls=ls, marker=marker, ms=3,
                            lw=0.9, capsize=1.5)
    ax.axhline(1.0, color="k", lw=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("mean queries / LQ floor at every point (C6: $\\geq 1$)", fontsize=10)
    ax.set(xlabel="$1/\\alpha_{low}$", ylabel="restricted mean queries / floor (95% CI)")
    ax.grid(alpha=0.25, which="both")
    handles = ([Line2D([], [], color=COLORS[v], label=LABELS[v]) for v in VARIANTS]
               + [Line2D([], [], color="0.3", ls="", marker=m, label=f"{p} profile") for p, m in zip(PROFILES, "os")]
               + [Line2D([], [], color="0.3", ls="-" if u == "response" else "--", label=READINGS[u]) for u in units]
               + [Line2D([], [], color="k", lw=1.2, label="the LQ floor (ratio 1)")])
    ax.legend(handles=handles, fontsize=6, loc="upper left", frameon=False, ncol=2)


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    """One row per reading of the step: the wide and narrow profiles (runs, medians, means,
    the LQ floor); beside the first row the two base-likelihood CDFs, beside the second the
    mean/floor ratios of both readings."""
    eps, gamma, n_seeds = config["eps"], config["gamma"], int(config.get("seeds", 0))
    units = list(summary["step_units"])
    fig, axes = plotting.figure(3, len(units), width=4.6, height=3.8)
    S, counts = n_contexts(config), profile_counts(config)
    scale = {"wide": 1.0 / gamma**2, "narrow": 1.0}
    for row, unit in enumerate(units):
        ax = axes[3 * row:3 * row + 3]
        for v in VARIANTS:
            run = _per_run(table, config, v, unit)
            for i, p in enumerate(PROFILES):
                sel = run["profile"] == p
                xs, med = plotting.scaling_series(ax[i], _x(run, p)[sel] * scale[p], run["log_queries"][sel] / LN10,
                                                  run["censored"][sel], label=f"{LABELS[v]}, {STEP_TEXT[unit]}",
                                                  color=COLORS[v], jitter=0.04)
                if p == "wide" and v == "alg1":
                    reg = xs >= config["regime_factor"] / eps * scale[p]
                    plotting.theory_overlay(ax[i], xs[reg], med[reg], 1.0, color="0.35", label="theory "
                                            "$\\propto 1/(Q_{q_0}(\\varepsilon)\\gamma^2)$, fitted constant")
        for v in VARIANTS:  # the restricted means, the statistic compared with the floor
            for i, p in enumerate(PROFILES):
                pts = summary["points"][record_name(v, unit, p)]
                xs = 10.0 ** (np.asarray(pts["log10_inv_lq"] if p == "wide" else -np.asarray(pts["log10_alpha_low"])))
                ax[i].plot(xs * scale[p], pts["log10_mean_queries"], "D", ms=4, mfc="none", mec=COLORS[v], mew=0.9,
                           label=f"{LABELS[v]}, {STEP_TEXT[unit]}: mean" if i == 0 else None, zorder=5)
        for i, p in enumerate(PROFILES):
            pts = summary["points"][record_name("alg1", unit, p)]
            xs = 10.0 ** (np.asarray(pts["log10_inv_lq"] if p == "wide" else -np.asarray(pts["log10_alpha_low"])))
            order = np.argsort(xs)
            plotting.lower_bound_overlay(ax[i], xs[order] * scale[p], np.asarray(pts["log10_floor"])[order],
                                         color="k", label="LQ floor $\\sum_c 1/q_0(y^*|c)$ on the mean (no fit)")
            ax[i].set_xscale("log")
            plotting.log10_axis(ax[i], "y")
            handles = ax[i].get_legend_handles_labels()[0] + [plotting.censored_legend_handle()]
            ax[i].legend(handles=handles, fontsize=6, loc="upper left", frameon=False)
            ax[i].grid(alpha=0.25, which="both")
            ax[i].set_ylabel(f"reward queries to error $\\leq {eps:g}$")
        ax[0].set_title(f"{READINGS[unit]}\nwide: {counts['wide']}/{S} contexts at $\\alpha_{{low}}$, "
                        f"so $Q=\\alpha_{{low}}$", fontsize=10)
        ax[1].set_title(f"{READINGS[unit]}\nnarrow: {counts['narrow']}/{S} at $\\alpha_{{low}}$, "
                        f"$Q={config['alpha_high']:g}$ fixed", fontsize=10)
        ax[0].set_xlabel("$1/(Q_{q_0}(\\varepsilon)\\,\\gamma^2)$")
        ax[1].set_xlabel("$1/\\alpha_{low}$ (smallest base likelihood)")
    if len(units) > 1:
        _floor_panel(axes[5], summary, units)
    cdf = axes[2]
    # The two base-likelihood profiles at one α_low: CDF and where the LQ reads off.
    a_low = 10.0 ** min(config["log10_alphas"])
    grid = np.geomspace(a_low / 10, 1.0, 400)
    for p, ls in zip(PROFILES, ("-", "--")):
        alphas = np.where(np.arange(S) < counts[p], a_low, config["alpha_high"])
        share = np.mean(alphas[None, :] <= grid[:, None], axis=1)
        cdf.step(grid, share, where="post", ls=ls, color="0.2", label=f"{p} profile")
    cdf.axhline(eps, color="#c0392b", lw=1, ls=":", label=f"$\\varepsilon = {eps:g}$")
    cdf.set_xscale("log")
    cdf.set(title=f"base-likelihood CDF at $\\alpha_{{low}}=10^{{{math.log10(a_low):g}}}$",
            xlabel="$\\alpha$", ylabel="$P_x(q_0(y^*|x) \\leq \\alpha)$")
    cdf.legend(fontsize=7, loc="center left", frameon=False)
    title = (f"{name}: ORM queries are governed by the Likelihood Quantile (C4, C6); planted k={config['k']}, "
             f"N={config['N']}, $\\gamma$={gamma:g}, S={S}; one row per reading of the adaptive step; dots: runs, "
             f"lines: Kaplan-Meier medians, diamonds: means over {n_seeds} seeds")
    return plotting.save(fig, out_dir, name, title)


class LqGoverns(Experiment):
    name = "lq-governs"
    description = "C4/C6: ORM queries to error eps follow 1/(Q_q0(eps) gamma^2); no ORM learner beats the LQ floor"
    claims = ("C4", "C6")
    settings = {
        **common(k=4, N=16, check_every=10, chunk_size=16),
        "gamma": Real(0.2, "planted margin (S = floor(k/((k-1) gamma^2)) contexts)", low=0.0, high=1.0, open_low=True),
        "eps": Real(0.05, "target: exact error <= eps", **OPEN_01),
        "alpha_high": Real(0.5, "base likelihood of the contexts not at alpha_low", **OPEN_01),
        "wide_factor": Real(4.0, "wide profile: ceil(wide_factor*eps*S) contexts at alpha_low", low=0, open_low=True),
        "log10_alphas": Reals([-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0, -5.0, -6.0], "log10 alpha_low of Algorithm 1",
                              **LOG10_LIKELIHOOD),
        "pg_log10_alphas": Reals([-1.0, -1.5, -2.0, -2.5, -2.75, -3.0], "log10 alpha_low of PG (three in the fit "
                                 "regime below pg_max_steps)", **LOG10_LIKELIHOOD),
        "alg1_max_steps": Int(40000, "Algorithm 1's iteration budget (runs that spend it are censored)", low=1),
        "pg_max_steps": Int(150000, "on-policy PG's iteration budget (runs that spend it are censored)", low=1),
        "regime_factor": Real(10.0, "fits use x >= regime_factor/eps", low=0.0, open_low=True),
        "step_units": Choices(list(STEP_UNITS), "readings of the adaptive step: response (one step per response, the "
                              "paper's), token (one per token of the accepted/rewarded response)", STEP_UNITS),
    }
    constraints = (divides("check_every", "alg1_max_steps"), divides("check_every", "pg_max_steps"), _profiles_fit)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {
            "N": 32, "gamma": 0.1, "log10_alphas": [-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0, -5.0, -6.0, -7.0, -8.0],
            "pg_log10_alphas": [-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0, -4.5],
            "alg1_max_steps": 200000, "pg_max_steps": 3000000, "check_every": 50, "chunk_size": 0,
        }, "S = 133 contexts, longer responses, alpha down to 1e-8 and a budget that lets on-policy PG reach "
           "alpha ~ 3e-5; 64 seeds"),
        "quick": Profile(2, {}),
    }

    def sweeps(self, config):
        """Per reading of the step: Algorithm 1 (``alg1`` and ``alg1_full``, split by
        ``full``), then on-policy PG."""
        for unit in config["step_units"]:
            for part in ("alg1", "pg"):
                yield Sweep(series_name(part, unit), make_run(config, part, unit), _grid(config, part),
                            {"algorithm": part, "step_unit": unit})

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary: dict) -> str:
        ver, lines = summary["verdict"], [
            slopes_table(summary["slopes"]), "wide: ln(median queries) vs ln(1/Q); narrow: vs ln(1/alpha_low) at "
            "fixed Q; mean_over_floor: smallest restricted mean / LQ floor over the points (theory >= 1); "
            "<learner>_token_*: the per-token step, the others: the response-level step (the paper's)"]
        for unit in summary["step_units"]:
            ratios = []
            for v in VARIANTS:
                rec = summary["slopes"][record_name(v, unit, "mean_over_floor")]
                pts = rec["points"]
                i = int(np.argmin(pts["mean_over_floor"]))
                ratios.append(f"{v} {rec['estimate']:.3g} [{rec['ci'][0]:.3g}, {rec['ci'][1]:.3g}] at "
                              f"{pts['profile'][i]} alpha_low=1e{pts['log10_alpha_low'][i]:g}")
            lines += [f"under {READINGS[unit]}: mean queries / LQ floor, smallest [95% CI] and where: "
                      + "; ".join(ratios),
                      f"under {READINGS[unit]}: " + checks_line({CHECK_TEXT[c]: ver[f"{c} under {READINGS[unit]}"]
                                                                 for c in CHECKS})]
        lines += ["claims: " + checks_line({c: ver[c] for c in CLAIM_CHECKS}), self.timing_line(summary)]
        return "\n".join(lines)
