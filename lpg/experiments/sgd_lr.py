"""``sgd-lr``: supervised SGD with the paper's adaptive step and with a constant step, as
the response length N and the margin γ change (claim C1, PAPER.md §4).

C1: SGD on labelled pairs ``(x, y*(x))`` with ``η_t = 1/(4 + 2‖g_t‖²)`` reaches error
``Õ(1/(γ²T))`` after ``T`` samples, with no factor ``N``; a constant step
``Õ(N/(γ²T))``. The guarantee is for an iterate drawn uniformly from ``1..T``.

What ``Õ`` hides, and how it is kept apart. From a start with likelihood ``p_w0(y*|x)``,
a visit of the response-level adaptive step lowers that context's loss
``−ln p_w(y*|x)`` by at most ``η‖g‖² = ‖g‖²/(4 + 2‖g‖²) < ½`` (the loss is convex in
``w``), so reaching error ½ takes at least ``2(ln(1/p_w0) − ln 2)`` visits of each of the
``S`` contexts: a warm-up of about ``2·S·ln(1/p_w0)`` samples, logarithmic in ``1/α``
(what ``Õ`` hides), which from the uniform start is ``2·S·N·ln k`` and grows with ``N``.
After it the error falls like ``C/T``. So the hitting time ``T(ε)`` (the first logged
step with error ``≤ ε``) is fitted as

    ``T(ε) = T0 + C/ε``   (per step rule, start and N; Kaplan–Meier medians over seeds,
    :func:`lpg.analysis.offset_power_fit`)

and C1 is a statement about ``C``: ``Õ(1/γ²)`` with no ``N`` for the adaptive step,
``Õ(N/γ²)`` for the constant one; ``T0`` is the warm-up. Theory on this family (derived,
not measured): late in training a context visited ``n`` times has error
``≈ 4(k−1)/(a²kn)`` under the adaptive step (``η → ¼``) and ``N`` times that under
``η = 1/(4N)``, ``a = γ·sqrt(S(k−1)/k)`` the feature norm; averaged over ``S`` contexts
visited ``T/S`` times each, ``C·γ² → 4`` (adaptive) and ``C·γ²/N → 4`` (``1/(4N)``),
whatever ``S``.

Setting. The planted-margin family (:class:`lpg.PlantedTask`, ``S`` the largest number
of contexts it allows at ``γ``, ``≈ k/((k−1)γ²)``): its margin is exactly ``γ`` at every
``N``. All ``N`` of a sweep share one compiled program (padded, masked:
``Problem.length``). The error is exact (the mean over the ``S`` equally likely
contexts), logged every ``log_every`` steps; one labelled sample per step (batch 1), so
``T`` counts samples. Two starts:

* ``alpha`` (the main test): :func:`lpg.tasks.planted_alpha_base`, likelihood ``α`` on
  ``y*`` for every context at every ``N``, so ``ln(1/p_w0)`` does not move with ``N``;
* ``uniform`` (zero weights, ``p_w0 = k^-N``): reported, with its warm-up ``T0``
  against ``2·S·ln(1/p_w0) = 2·S·N·ln k``.

Step rules (plain SGD on ``log p_w(y*|x)``):

* ``response``: the adaptive step on ``∇ log p_w(y*|x)``, the whole response (lr 1,
  :func:`lpg.adaptive_step`; ``lpg.SGD(step_unit="response")``, as PAPER.md §3 writes SGD);
* ``token``: the adaptive step once per token of ``y*``, in order, each on
  ``∇ log p_w(y*_i|x, y*_<i)`` (``lpg.SGD(step_unit="token")``, Algorithm 2's unit). §3
  leaves open which gradient the adaptive step follows, so both readings run and every
  adaptive row names its reading;
* ``constant``: ``η = 1/(4N)``. ``log p_w(y*|x)`` is a sum of ``N`` log-softmax terms,
  each 1-smooth when ``‖φ‖ ≤ 1``, so it is ``N``-smooth and ``1/(4N)`` is the constant
  step the worst-case (descent-lemma) analysis guarantees at length ``N``; at ``N = 1``
  it is the adaptive step's ceiling ``¼``. A constant step has one reading.

``γ`` varied (C1's ``1/γ²``): at ``N = N_gamma`` from the ``alpha`` start, both adaptive
readings at ``gamma`` and at each of ``gammas``, with ``steps`` and ``log_every``
scaled by ``(gamma/γ)²`` (all times scale so).

The random iterate: the expected error of an iterate drawn uniformly from ``1..T`` is
the mean error over the steps ``≤ T``, computed from the logged errors (trapezoid rule);
it is reported beside the last iterate's error at ``T = steps``, with the mean over
seeds of the one iterate ``w_τ`` each run draws (:func:`lpg.train`) as a check.

Acceptance, written before the data (each on the whole bootstrap 95% interval over seeds,
runs resampled within each ``N`` or ``γ``; the ``alpha`` start):

1. ``C`` vs ``N``, adaptive, each reading: slope of ``ln C`` against ``ln N`` in
   ``[−0.2, 0.2]`` (theory 0; across ``N = 1…32`` a factor ``32^0.2 = 2`` is allowed, a
   factor ``√N`` is not);
2. ``C`` vs ``N``, constant ``1/(4N)``: slope in ``[0.8, 1.2]`` (theory 1);
3. ``C`` vs ``γ``, adaptive, each reading: slope of ``ln C`` against ``ln(1/γ)`` in
   ``[1.7, 2.3]`` (theory 2);
4. error ``∝ 1/T``: the exponent ``β`` of ``T(ε) = T0 + C·ε^(−β)`` (one ``β`` shared by
   every ``N``, per rule) in ``[0.8, 1.2]`` (theory 1: C1's "error vs T slope −1" with
   the warm-up kept apart);
5. the random iterate, adaptive, each reading: slope of ``ln E[err(w_τ)]`` at
   ``T = steps`` against ``ln N`` at most ``0.2`` (one-sided: C1 bounds the random
   iterate's expected error from above by ``Õ(1/(γ²T))`` with no factor of ``N``, so an
   error that *falls* with ``N`` agrees with it; a rise beyond ``32^0.2 = 2`` over
   ``N = 1…32`` does not). Rows 1–3 stay two-sided: they test the shape ``T0 + C/ε``
   of the hitting time, whose coefficient C1 predicts, not only bounds.

An adaptive row that passes under one reading only is ``conditional (on the … step)``
(:func:`lpg.analysis.mark_conditional`); C1's overall verdict is ``confirmed`` when every
row passes, ``conditional (on …)`` when every row of one reading and of the constant
step does. Reported without a range: the ``C`` vs ``N`` slopes from the uniform start,
the slope of ``T0`` against ``N`` there (theory 1 for the response-level step, none for
the per-token one), the constant step's random iterate. A stated check (no claim): from
the uniform start the response-level ``T0`` at the largest ``N`` is within a factor 2 of
``2·S·N·ln k``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import (
    coefficient_slope,
    fmt_slope,
    hitting_time,
    mark_conditional,
    offset_power_fit,
    slope_record,
    verdict,
)
from lpg.features import max_planted_contexts
from lpg.problem import planted_problem
from lpg.spec import Experiment, Int, Ints, Profile, Real, Reals, Sweep, common, divides

RULES = ("response", "token", "constant")
ADAPTIVE = ("response", "token")
STARTS = ("alpha", "uniform")
LABELS = {"response": "adaptive, response-level step", "token": "adaptive, per-token step",
          "constant": "constant $1/(4N)$"}
READINGS = {"response": "the response-level step", "token": "the per-token step"}
COLORS = {"response": "#1f5fa8", "token": "#27ae60", "constant": "#c0392b"}
THEORY_N = {"response": 0.0, "token": 0.0, "constant": 1.0}
ACCEPT_N = {"response": (-0.2, 0.2), "token": (-0.2, 0.2), "constant": (0.8, 1.2)}
ACCEPT_GAMMA = (1.7, 2.3)
ACCEPT_RANDOM = (-math.inf, 0.2)  # an upper bound: at most a factor 2 over N = 1..32
ACCEPT_EXPONENT = (0.8, 1.2)
UNIT = dict(low=0.0, high=1.0, open_low=True, open_high=True)


# ---------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------


def gamma_schedule(config: dict, gamma: float) -> tuple[int, int]:
    """``(steps, log_every)`` of an adaptive run at margin ``gamma``: ``log_every`` scaled
    by ``(config gamma / gamma)²`` (rounded up), the same number of log points."""
    log_every = max(1, math.ceil(config["log_every"] * (config["gamma"] / gamma) ** 2))
    return (config["steps"] // config["log_every"]) * log_every, log_every


def start_weights(task, N, uniform, log_alpha: float):
    """``w0`` of a run at length ``N`` (traced) on a task padded to ``task.N``: zeros (the
    uniform start) or likelihood ``α`` on ``y*`` for every context over the first ``N``
    positions (:func:`lpg.tasks.planted_alpha_base` spreads ``log α`` over ``task.N``
    positions, so it is handed ``log α · task.N / N``)."""
    planted = lpg.tasks.planted_alpha_base(task, log_alpha=log_alpha * task.N / N)
    return jnp.where(uniform > 0, jnp.zeros_like(planted), planted)


def make_run(config: dict, rule: str, *, gamma: float, n_max: int, steps: int, log_every: int):
    """``run(key, N, start)``: one SGD run of ``rule`` at length ``N`` from the ``alpha``
    (``start = 0``) or uniform (``1``) start; its exact error at the log points, the
    start's mean ``log p_w0(y*|x)`` and the error of the run's random iterate ``w_τ``."""
    alg = lpg.SGD(batch_size=1, optimizer="constant" if rule == "constant" else "adaptive",
                  step_unit="token" if rule == "token" else "response")
    log_alpha = math.log(config["alpha"])

    def run(key, N, start):
        k_task, k_run = jax.random.split(key)
        task = lpg.make_planted(k_task, k=config["k"], N=n_max, gamma=gamma)
        problem = planted_problem(task, key=k_task, length=N)
        lr = jnp.float32(0.25) / N if rule == "constant" else jnp.float32(1.0)
        hyper = lpg.Hyper(lr.astype(jnp.float32), jnp.float32(jnp.inf), jnp.float32(jnp.inf))
        res = lpg.train(alg, problem, hyper, k_run, steps=steps, log_every=log_every,
                        w0=start_weights(task, N, start, log_alpha))
        c = res.curves
        return {"curves": {"sgd": {"step": c.step, "error": c.test_error}},
                "log_p0": jnp.mean(c.track_log_lik[0]), "sampled_random_error": res.random_eval.test_error}

    return run


def part_name(rule: str, gamma: float | None = None) -> str:
    return rule if gamma is None else f"{rule}_gamma{gamma:g}"


# ---------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------


def arm(table, part: str, N: int, start: str) -> dict:
    """One arm's runs: ``step (P,)``, ``error (runs, P)``, ``log_p0 (runs,)``,
    ``sampled (runs,)`` (the error of each run's own random iterate)."""
    rows = table.where(part=part, N=N, start=STARTS.index(start), series="sgd")
    return {"step": rows.by_run("step")[0].astype(np.float64), "error": rows.by_run("error").astype(np.float64),
            "log_p0": rows.per_run("log_p0").astype(np.float64),
            "sampled": rows.per_run("sampled_random_error").astype(np.float64)}


def random_iterate_error(step, error) -> np.ndarray:
    """``E[err(w_τ)]``, ``τ`` uniform in ``1..T`` at every log point ``T > 0``: the mean
    error over steps ``≤ T`` (trapezoid rule on the logged errors), ``(runs, P − 1)``."""
    area = np.cumsum(0.5 * (error[:, 1:] + error[:, :-1]) * np.diff(step), axis=1)
    return area / step[1:]


def hitting_times(a: dict, eps_grid) -> tuple[np.ndarray, np.ndarray]:
    """``T(ε)`` of every run at every ``ε``: ``(times, censored)``, ``(runs, E)``."""
    hits = [hitting_time(a["error"], a["step"], e, above=False) for e in eps_grid]
    return np.stack([t for t, _ in hits], 1), np.stack([c for _, c in hits], 1)


def coefficient_record(x, estimate, boot, *, n_runs: int, n_censored: int, theory, accept, note: str, reading: str,
                       log_x: bool = True) -> dict:
    """A :func:`slope_record` of ``ln estimate`` against ``ln x`` (bootstrap draws ``boot``,
    ``(B, G)``), judged on the whole 95% interval when ``accept`` is given, naming the
    reading of the step it assumes."""
    slope = coefficient_slope(x, estimate, boot, log_x=log_x, n_runs=n_runs, n_censored=n_censored)
    rec = slope_record(slope, theory, accept=accept, note=note)
    rec["reading"] = reading
    if accept is not None:
        rec["accept_ci"] = True
        rec["verdict"] = verdict(rec)
    return rec


def fit_coefficient_record(x, fit: dict, key: str = "C", **kw) -> dict:
    """:func:`coefficient_record` of ``C`` (or ``T0``) of an :func:`offset_power_fit`."""
    return coefficient_record(x, fit[key], fit["boot"][key], n_runs=sum(fit["n_runs"]),
                              n_censored=sum(fit["n_censored"]), **kw)


def exponent_record(fit: dict, *, note: str, reading: str) -> dict:
    """The shared exponent ``β`` of ``T(ε) = T0 + C·ε^(−β)`` (theory 1), judged on its
    whole 95% interval."""
    used = sum(n >= 3 for n in fit["n_eps"])
    rec = slope_record({"estimate": fit["exponent"], "ci": fit["exponent_ci"], "regime": [math.nan, math.nan],
                        "n_points": used, "n_runs": sum(fit["n_runs"]), "n_censored": sum(fit["n_censored"]),
                        "n_unestimable": len(fit["n_eps"]) - used, "points": {}}, 1.0,
                       accept=ACCEPT_EXPONENT, log_x=False, log_y=False, note=note)
    rec.update(axes="beta of T(eps) = T0 + C*eps^-beta, one beta for every N", reading=reading, accept_ci=True)
    rec["verdict"] = verdict(rec)
    return rec


def median_boot(samples: list[np.ndarray], n_boot: int, seed: int = 0) -> np.ndarray:
    """Bootstrap draws of the median of each group of ``samples``: ``(n_boot, G)``."""
    rng = np.random.default_rng(seed)
    return np.stack([np.median(v[rng.integers(0, v.size, (n_boot, v.size))], axis=1) for v in samples], axis=1)


def holds(rec: dict) -> bool:
    return rec["verdict"] == "confirmed" or rec["verdict"].startswith("conditional")


def summary_of(table, config: dict) -> dict:
    Ns = [int(n) for n in config["Ns"]]
    eps = [float(e) for e in config["eps_grid"]]
    gamma, k, n_boot = float(config["gamma"]), int(config["k"]), int(config["n_boot"])
    S = max_planted_contexts(k, gamma)
    slopes, points = {}, {}
    for rule in RULES:
        reading = READINGS.get(rule, "a constant step (one reading)")
        for start in STARTS:
            arms = [arm(table, part_name(rule), N, start) for N in Ns]
            groups = [hitting_times(a, eps) for a in arms]
            fit = offset_power_fit(eps, groups, n_boot=n_boot)
            log_p0 = np.array([float(np.mean(a["log_p0"])) for a in arms])
            rand = [random_iterate_error(a["step"], a["error"])[:, -1] for a in arms]
            per_N = [gamma**2 / (N if rule == "constant" else 1) for N in Ns]
            points[f"{rule}_{start}"] = {
                "N": Ns, "C": fit["C"], "C_ci": fit["C_ci"], "T0": fit["T0"], "T0_ci": fit["T0_ci"],
                "C_gamma2" + ("_over_N" if rule == "constant" else ""): [c * f for c, f in zip(fit["C"], per_N)],
                "n_eps": fit["n_eps"], "n_censored": fit["n_censored"], "ln_1_over_p0": (-log_p0).tolist(),
                "T0_over_2S_ln_1_over_p0": [t / (2 * S * -lp) for t, lp in zip(fit["T0"], log_p0)],
                "last_error": [float(np.median(a["error"][:, -1])) for a in arms],
                "random_iterate_error": [float(np.median(r)) for r in rand],
                "random_iterate_error_mean": [float(np.mean(r)) for r in rand],
                "sampled_random_iterate_error_mean": [float(np.mean(a["sampled"])) for a in arms],
            }
            if start == "alpha":
                where = f"alpha start (alpha = {config['alpha']:g} on every context)"
                slopes[f"{rule}_C_vs_N"] = fit_coefficient_record(
                    Ns, fit, theory=THEORY_N[rule], accept=ACCEPT_N[rule], reading=reading,
                    note=f"d ln C / d ln N, C of T(eps) = T0 + C/eps; {where}; {reading}")
                slopes[f"{rule}_eps_exponent"] = exponent_record(
                    offset_power_fit(eps, groups, exponent=None, n_boot=n_boot), reading=reading,
                    note=f"error ~ T^-beta after the warm-up; {where}; {reading}")
                adaptive = rule in ADAPTIVE
                slopes[f"{rule}_random_iterate_vs_N"] = coefficient_record(
                    Ns, np.array(points[f"{rule}_{start}"]["random_iterate_error"]), median_boot(rand, n_boot),
                    n_runs=sum(r.size for r in rand), n_censored=0, theory=THEORY_N[rule],
                    accept=ACCEPT_RANDOM if adaptive else None, reading=reading,
                    note=f"d ln E[err(w_tau)] / d ln N at T = {steps_of(config, rule)}, tau uniform in 1..T (the mean "
                         f"error over steps <= T); {where}; {reading}" + ("" if adaptive else "; reported"))
            else:
                where = "uniform start (p_w0 = k^-N)"
                slopes[f"{rule}_uniform_C_vs_N"] = fit_coefficient_record(
                    Ns, fit, theory=THEORY_N[rule], accept=None, reading=reading,
                    note=f"d ln C / d ln N, C of T(eps) = T0 + C/eps; {where}; {reading}; reported")
                slopes[f"{rule}_uniform_T0_vs_N"] = fit_coefficient_record(
                    Ns, fit, "T0", theory=1.0 if rule == "response" else None, accept=None, reading=reading,
                    note=f"d ln T0 / d ln N, the warm-up of T(eps) = T0 + C/eps; {where}; {reading}; reported"
                    + ("; theory T0 ~ 2 S N ln k" if rule == "response" else ""))
    gammas = [gamma] + [float(g) for g in config["gammas"]]
    N_g = int(config["N_gamma"])
    for rule in ADAPTIVE:
        arms = [arm(table, part_name(rule, None if g == gamma else g), N_g, "alpha") for g in gammas]
        fit = offset_power_fit(eps, [hitting_times(a, eps) for a in arms], n_boot=n_boot)
        slopes[f"{rule}_C_vs_inv_gamma"] = fit_coefficient_record(
            [1.0 / g for g in gammas], fit, theory=2.0, accept=ACCEPT_GAMMA, reading=READINGS[rule],
            note=f"d ln C / d ln(1/gamma) at N = {N_g}, alpha start, S = floor(k/((k-1) gamma^2)) contexts; "
                 f"{READINGS[rule]}")
        points[f"{rule}_gamma"] = {"gamma": gammas, "S": [max_planted_contexts(k, g) for g in gammas],
                                   "C": fit["C"], "C_ci": fit["C_ci"], "T0": fit["T0"],
                                   "C_gamma2": [c * g * g for c, g in zip(fit["C"], gammas)]}
    tested = ("C_vs_N", "C_vs_inv_gamma", "eps_exponent", "random_iterate_vs_N")
    for qty in tested:
        mark_conditional({READINGS[r]: slopes[f"{r}_{qty}"] for r in ADAPTIVE})
    constant_ok = all(holds(slopes[f"constant_{q}"]) for q in ("C_vs_N", "eps_exponent"))
    under = {r: constant_ok and all(holds(slopes[f"{r}_{q}"]) for q in tested) for r in ADAPTIVE}
    held = [r for r in ADAPTIVE if under[r]]
    overall = ("confirmed" if len(held) == len(ADAPTIVE) else
               f"conditional (on {READINGS[held[0]]})" if held else "not confirmed")
    warm = points["response_uniform"]["T0_over_2S_ln_1_over_p0"][-1]
    return {
        "experiment": "sgd-lr",
        "claims": ["C1"],
        "n_contexts": S,
        "slopes": slopes,
        "points": points,
        "verdict": {
            "C1": overall,
            **{f"C1 under {READINGS[r]}": under[r] for r in ADAPTIVE},
            "response-level warm-up T0 within 2x of 2 S N ln k (uniform start, largest N)":
                bool(math.isfinite(warm) and 0.5 <= warm <= 2.0),
        },
        "units": {
            "T": "SGD steps (= labelled samples, batch 1) until the exact error err(w) <= eps; Kaplan-Meier "
                 "medians over seeds, censored runs counted as >= steps",
            "C": "the 1/eps coefficient of T(eps) = T0 + C/eps (samples x error); theory C*gamma^2 -> 4 "
                 "(adaptive), C*gamma^2/N -> 4 (constant 1/(4N))",
        },
    }


def steps_of(config: dict, rule: str) -> int:
    return int(config["steps_constant"] if rule == "constant" else config["steps"])


# ---------------------------------------------------------------------------------
# Figure and text
# ---------------------------------------------------------------------------------


def _ci_bars(ax, x, values, cis, scale, **kw):
    v = np.asarray(values, np.float64) * scale
    lo = np.array([c[0] for c in cis], np.float64) * scale
    hi = np.array([c[1] for c in cis], np.float64) * scale
    ax.errorbar(x, v, yerr=[np.maximum(v - lo, 0), np.maximum(hi - v, 0)], capsize=2, **kw)


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    """(a) ``C·γ²`` against ``N`` (theory 4 and ``4N``); (b) the adaptive step's warm-up
    ``T0`` against ``N`` with ``2·S·ln(1/p_w0)``; (c) ``C`` against ``1/γ``; (d) the last and the
    random iterate's error against ``T`` at the ``alpha`` start, response-level step."""
    pts = summary["points"]
    Ns = np.asarray(pts["response_alpha"]["N"], np.float64)
    S, gamma = summary["n_contexts"], float(config["gamma"])
    fig, ax = plotting.figure(4, width=4.2, height=3.5)
    for rule in RULES:
        for start, ls, mk in (("alpha", "-", "o"), ("uniform", ":", "s")):
            p = pts[f"{rule}_{start}"]
            _ci_bars(ax[0], Ns * (1.06 if start == "uniform" else 1.0), p["C"], p["C_ci"], gamma**2,
                     color=COLORS[rule], ls=ls, marker=mk, ms=3, label=f"{LABELS[rule]}, {start} start")
            if rule in ADAPTIVE:
                _ci_bars(ax[1], Ns, p["T0"], p["T0_ci"], 1.0, color=COLORS[rule], ls=ls, marker=mk, ms=3,
                         label=f"{LABELS[rule]}, {start} start")
    ax[0].plot(Ns, 4 * np.ones_like(Ns), color="k", lw=0.8, ls="--", label="theory 4 (adaptive)")
    ax[0].plot(Ns, 4 * Ns, color="k", lw=0.8, ls="-.", label="theory $4N$ (constant $1/(4N)$)")
    ax[0].set(title="$C\\gamma^2$ of $T(\\varepsilon) = T_0 + C/\\varepsilon$", xlabel="response length $N$",
              ylabel="$C\\gamma^2$", xscale="log", yscale="log")
    ln_p0 = np.asarray(pts["response_uniform"]["ln_1_over_p0"])
    ax[1].plot(Ns, 2 * S * ln_p0, color="k", lw=0.8, ls="--", label="$2S\\ln(1/p_{w_0}) = 2SN\\ln k$ (uniform)")
    ax[1].plot(Ns, 2 * S * np.asarray(pts["response_alpha"]["ln_1_over_p0"]), color="0.5", lw=0.8, ls="-.",
               label="$2S\\ln(1/\\alpha)$")
    ax[1].set(title="warm-up $T_0$ (adaptive step)", xlabel="response length $N$", ylabel="$T_0$ (samples)",
              xscale="log")
    ax[1].set_yscale("symlog", linthresh=10.0)
    for rule in ADAPTIVE:
        p = pts[f"{rule}_gamma"]
        inv = 1.0 / np.asarray(p["gamma"])
        _ci_bars(ax[2], inv, p["C"], p["C_ci"], 1.0, color=COLORS[rule], marker="o", ms=3, ls="-",
                 label=LABELS[rule])
    inv = 1.0 / np.asarray(pts["response_gamma"]["gamma"])
    ax[2].plot(inv, 4 * inv**2, color="k", lw=0.8, ls="--", label="theory $4/\\gamma^2$")
    ax[2].set(title=f"$C$ against $1/\\gamma$ at $N = {config['N_gamma']}$, alpha start", xlabel="$1/\\gamma$",
              ylabel="$C$", xscale="log", yscale="log")
    cmap = matplotlib.colormaps["viridis"]
    for i, N in enumerate(Ns.astype(int)):
        a = arm(table, part_name("response"), int(N), "alpha")
        x = np.log10(a["step"][1:])
        col = cmap(i / max(1, len(Ns) - 1))
        plotting.seed_band(ax[3], x, np.log10(np.maximum(a["error"][:, 1:], 1e-12)), label=f"N={N} last",
                           color=col, alpha=0.1)
        ax[3].plot(x, np.log10(np.median(random_iterate_error(a["step"], a["error"]), axis=0)), color=col, ls=":",
                   lw=1.0, label=f"N={N} random" if i in (0, len(Ns) - 1) else None)
    x = np.log10(a["step"][1:])
    ax[3].plot(x, np.log10(4 / gamma**2) - x, color="k", ls="--", lw=0.8, label="$4/(\\gamma^2 T)$")
    ax[3].set(title="error of the last (solid) and random (dotted) iterate\nresponse-level step, alpha start",
              xlabel="SGD steps $T$ (samples)", ylabel="test error", ylim=(-3.5, 0.1))
    plotting.log10_axis(ax[3], "x")
    plotting.log10_axis(ax[3], "y")
    for a in ax[:3]:
        a.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for a in ax:
        a.legend(fontsize=5.5, loc="best", frameon=False)
    title = (f"{name}: supervised SGD (C1), adaptive step (two readings) vs constant 1/(4N); planted k={config['k']}, "
             f"$\\gamma$={gamma:g}, S={S}; bars: bootstrap 95% over {config.get('seeds', 0)} seeds")
    return plotting.save(fig, out_dir, name, title)


def text(summary: dict) -> str:
    """``C·γ²`` per N for each rule and start with the slope against N and its verdict;
    the warm-up ratio, ``C`` against ``γ``, the error exponent, the last and random
    iterate; C1's verdict and the reading each row assumes."""
    s, pts = summary["slopes"], summary["points"]
    Ns = pts["response_alpha"]["N"]
    fmt = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"  # noqa: E731

    def table(rows):
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]

    lines = ["C of T(eps) = T0 + C/eps: C*gamma^2 (constant step: C*gamma^2/N; theory 4) per N, slope of ln C vs ln N"]
    rows = [("rule", "start", *[f"N={n}" for n in Ns], "slope vs N [95% CI]", "accept", "verdict")]
    for rule in RULES:
        for start in STARTS:
            p = pts[f"{rule}_{start}"]
            rec = s[f"{rule}_C_vs_N" if start == "alpha" else f"{rule}_uniform_C_vs_N"]
            acc = rec.get("accept")
            rows.append((rule, start, *map(fmt, p["C_gamma2_over_N" if rule == "constant" else "C_gamma2"]),
                         fmt_slope(rec), "-" if acc is None else f"[{acc[0]:g}, {acc[1]:g}]", rec["verdict"]))
    lines += table(rows)
    lines.append("warm-up: T0 / (2 S ln(1/p_w0)) per N (uniform start: ln(1/p_w0) = N ln k)")
    rows = [("rule", "start", *[f"N={n}" for n in Ns], "slope of T0 vs N")]
    for rule in RULES:
        for start in STARTS:
            p = pts[f"{rule}_{start}"]
            rows.append((rule, start, *map(fmt, p["T0_over_2S_ln_1_over_p0"]),
                         fmt_slope(s[f"{rule}_uniform_T0_vs_N"]) if start == "uniform" else ""))
    lines += table(rows)
    g = pts["response_gamma"]["gamma"]
    lines.append("C*gamma^2 against gamma (alpha start), slope of ln C vs ln(1/gamma) (theory 2); error exponent beta "
                 "(theory 1)")
    rows = [("rule", *[f"g={v:g}" for v in g], "slope vs 1/gamma", "verdict", "beta [95% CI]", "verdict")]
    for rule in RULES:
        cg = pts[f"{rule}_gamma"]["C_gamma2"] if rule in ADAPTIVE else [None] * len(g)
        rg = s.get(f"{rule}_C_vs_inv_gamma")
        rb = s[f"{rule}_eps_exponent"]
        rows.append((rule, *map(fmt, cg), fmt_slope(rg) if rg else "-", rg["verdict"] if rg else "-",
                     fmt_slope(rb), rb["verdict"]))
    lines += table(rows)
    lines.append("error at T = steps (median over seeds): last iterate / random iterate (tau uniform in 1..T); slope "
                 "of the random iterate's vs ln N (alpha start)")
    rows = [("rule", "start", *[f"N={n}" for n in Ns], "random vs N [95% CI] (accept <= 0.2)", "verdict")]
    for rule in RULES:
        for start in STARTS:
            p = pts[f"{rule}_{start}"]
            rec = s[f"{rule}_random_iterate_vs_N"] if start == "alpha" else None
            rows.append((rule, start, *[f"{fmt(a)}/{fmt(b)}" for a, b in zip(p["last_error"],
                                                                              p["random_iterate_error"])],
                         fmt_slope(rec) if rec else "", rec["verdict"] if rec else ""))
    lines += table(rows)
    v = summary["verdict"]
    lines.append("; ".join(f"{key}: {val if isinstance(val, str) else ('yes' if val else 'NO')}"
                           for key, val in v.items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------


def _n_gamma_in_ns(c):
    return None if c["N_gamma"] in c["Ns"] else f"N_gamma must be one of Ns={c['Ns']}, got {c['N_gamma']}"


def _gammas_apart(c):
    return None if c["gamma"] not in c["gammas"] else (f"gammas must not contain gamma={c['gamma']:g} (its point "
                                                       f"comes from the N sweep), got {c['gammas']}")


class SgdLr(Experiment):
    name = "sgd-lr"
    description = ("C1: the 1/eps coefficient C of SGD's T(eps) = T0 + C/eps is flat in N with the adaptive step "
                   "(both readings) and grows like N with 1/(4N); C ~ 1/gamma^2")
    claims = ("C1",)
    settings = {
        **common(k=4, gamma=0.5, n_boot=1000, chunk_size=0),
        "Ns": Ints([1, 2, 4, 8, 16, 32], "response lengths (all padded to the largest)", low=1, min_len=2,
                   distinct=True),
        "alpha": Real(1e-3, "likelihood of y* at the alpha start, every context and N", **UNIT),
        "steps": Int(4096, "SGD steps T of the adaptive runs at gamma (one labelled sample each)", low=1),
        "log_every": Int(16, "steps between log points (exact error) of the adaptive runs at gamma", low=1),
        "steps_constant": Int(32768, "SGD steps of the constant-step runs", low=1),
        "log_every_constant": Int(64, "steps between log points of the constant-step runs", low=1),
        "eps_grid": Reals([0.1, 0.05, 0.02, 0.01, 0.005], "errors eps of the T(eps) = T0 + C/eps fits", min_len=3,
                          distinct=True, **UNIT),
        "gammas": Reals([0.35, 0.25, 0.18], "further margins of the C vs gamma fit (adaptive, alpha start)",
                        min_len=1, distinct=True, low=0.0, high=1.0, open_low=True),
        "N_gamma": Int(4, "response length of the C vs gamma fit (one of Ns)", low=1),
    }
    constraints = (divides("log_every", "steps"), divides("log_every_constant", "steps_constant"), _n_gamma_in_ns,
                   _gammas_apart)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"Ns": [1, 2, 4, 8, 16, 32, 64, 128], "steps": 16384, "log_every": 32,
                            "steps_constant": 262144, "log_every_constant": 256, "gammas": [0.35, 0.25, 0.18, 0.125],
                            "eps_grid": [0.1, 0.05, 0.02, 0.01, 0.005, 0.002]},
                       "N to 128, gamma to 1/8 and eps to 0.002, 64 seeds"),
        "quick": Profile(2, {"Ns": [1, 4, 16], "steps": 2048, "steps_constant": 16384, "gammas": [0.35],
                             "eps_grid": [0.1, 0.05, 0.02], "n_boot": 200}),
    }

    def sweeps(self, config):
        """Each rule at every N from both starts (γ = ``gamma``), then both adaptive readings
        at ``N_gamma`` from the alpha start at each of ``gammas``."""
        Ns = [int(n) for n in config["Ns"]]
        grid = {"start": [0, 1], "N": Ns}
        for rule in RULES:
            steps, every = (config["steps_constant"], config["log_every_constant"]) if rule == "constant" else (
                config["steps"], config["log_every"])
            yield Sweep(part_name(rule), make_run(config, rule, gamma=config["gamma"], n_max=max(Ns), steps=steps,
                                                  log_every=every), grid)
        for g in config["gammas"]:
            steps, every = gamma_schedule(config, g)
            for rule in ADAPTIVE:
                yield Sweep(part_name(rule, g), make_run(config, rule, gamma=g, n_max=int(config["N_gamma"]),
                                                         steps=steps, log_every=every),
                            {"start": [0], "N": [int(config["N_gamma"])]})

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary):
        return text(summary) + "\n" + self.timing_line(summary)
