"""``online``: mistakes of online policy gradient with uniform exploration as N and γ
change (claim C7, PAPER.md §4).

C7: online PG with the adaptive step and a uniform behaviour policy makes
``Õ(k^N/γ²)`` mistakes, and every method that explores uniformly needs
``Ω(k^N/(Nγ²))``. Mistakes are ``Σ_t (1 − p_{w_t}(y*_t|x_t))`` (:class:`lpg.OnlinePG`,
reconstructed in PAPER.md §3).

Setting. The planted-margin family (margin exactly ``γ`` at every ``N``,
``S = ⌊k/((k−1)γ²)⌋`` contexts, feature dimension ``≈ k/γ²``), contexts arriving i.i.d.
uniform, zero initial weights (the uniform policy), exact event path: each round one
uniform response is verified, and it is correct with probability exactly ``k^-N``.

Measured quantity. The learner keeps making mistakes at a slowly falling rate for ever
(after ``n`` updates a context's error is ``≈ 1/n``), so the total over an infinite
horizon grows like ``log T``; we measure the mistakes made *until the learner is good*:
``M_ε`` = cumulative mistakes at the first logged round where the exact error (mean over
all ``S`` contexts) is ``≤ ε``. Runs that are not there by the horizon
``T = 2^⌈log2(horizon_factor·S·k^N)⌉`` rounds are censored (kept; Kaplan–Meier medians).
Each ``(N, γ)`` is its own compiled sweep so the horizon and the log resolution
(``T/log_points``) scale with it.

Fits: the slope of ``ln M_ε`` against ``N`` at each γ (theory ``ln k``, both bounds),
the slope of ``ln M_ε`` against ``ln γ`` at ``N = gamma_N`` (theory ``−2``), and the
residual N-dependence: the slope of ``ln(M_ε γ²/k^N)`` against ``ln N`` — ``0`` for the
upper bound's shape ``k^N/γ²``, ``−1`` for the lower bound's ``k^N/(Nγ²)``; a positive
value is a factor of N that ``Õ`` hides (``N = log_k k^N`` is a log factor of ``k^N``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import matplotlib
import matplotlib.ticker
import numpy as np

import lpg
from lpg import _checks, plotting
from lpg.analysis import censored_median, hitting_time
from lpg.experiments import Experiment, register
from lpg.experiments._scaling import (
    censored_legend_handle,
    fit_record,
    planted_problem,
    scaling_series,
    slopes_table,
    theory_overlay,
)
from lpg.features import max_planted_contexts
from matplotlib.ticker import FuncFormatter

LN10 = math.log(10.0)

DEFAULTS: dict[str, Any] = {
    "k": 2,
    "Ns": [1, 2, 4, 6, 8],
    "gammas": [0.5, 0.35],
    "gamma_N": 4,
    "gamma_extra": [0.25],
    "eps": 0.1,
    "horizon_factor": 80.0,
    "log_points": 512,
    "chunk_size": 0,
}
"""CPU default (about 2 minutes on 2 cores with 16 seeds). ``gamma_extra``: margins run
only at ``N = gamma_N`` for the γ fit (with ``gammas``)."""

GPU_SETTINGS: dict[str, Any] = {
    "k": 2,
    "Ns": [1, 2, 4, 6, 8, 10, 12],
    "gammas": [0.5, 0.35, 0.25],
    "gamma_extra": [0.18, 0.125],
    "gamma_N": 6,
}
"""Overrides for a GPU (``--set`` each, ``--seeds 64``): N to 12 (``2^12`` responses) and
margins down to 1/8 (S = 128 contexts)."""


def validate(config: dict) -> None:
    k = _checks.int_at_least("k", config["k"], 2)
    Ns = config["Ns"]
    if len(Ns) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in Ns) or len(set(Ns)) != len(Ns):
        raise ValueError(f"Ns must be at least two distinct integers >= 1, got {Ns!r}")
    _checks.int_at_least("gamma_N", config["gamma_N"], 1)
    if config["gamma_N"] not in Ns:
        raise ValueError(f"gamma_N must be one of Ns={Ns}, got {config['gamma_N']}")
    gammas = list(config["gammas"]) + list(config["gamma_extra"])
    if not config["gammas"] or len(set(gammas)) != len(gammas):
        raise ValueError(f"gammas must be non-empty and distinct from gamma_extra, got {config['gammas']!r}, "
                         f"{config['gamma_extra']!r}")
    for g in gammas:
        _checks.in_open_closed("gamma", g, 0.0, 1.0)
        if max_planted_contexts(k, g) < 1:
            raise ValueError(f"gamma must allow at least one planted context for k={k}, got {g}")
    _checks.in_open("eps", config["eps"], 0.0, 1.0)
    _checks.positive("horizon_factor", config["horizon_factor"])
    _checks.int_at_least("log_points", config["log_points"], 2)
    _checks.int_at_least("chunk_size", config["chunk_size"], 0)


def horizon(config: dict, N: int, gamma: float) -> int:
    """Rounds of a run: a power of two ``≥ horizon_factor·S·k^N`` (and ``≥ log_points``)."""
    S = max_planted_contexts(config["k"], gamma)
    want = config["horizon_factor"] * S * float(config["k"]) ** N
    return max(int(config["log_points"]), 2 ** int(math.ceil(math.log2(want))))


def settings(config: dict) -> list[tuple[int, float]]:
    """Every ``(N, γ)`` run: the N sweep at each of ``gammas``, plus ``gamma_extra`` at ``gamma_N``."""
    runs = [(int(N), float(g)) for g in config["gammas"] for N in config["Ns"]]
    runs += [(int(config["gamma_N"]), float(g)) for g in config["gamma_extra"]]
    return runs


def make_run(config: dict, N: int, gamma: float):
    """``run(key) -> {"error", "mistakes"}`` at the log points of one online run."""
    T = horizon(config, N, gamma)
    log_every = max(1, T // config["log_points"])
    alg = lpg.OnlinePG()

    def run(key):
        k_task, k_run = jax.random.split(key)
        task = lpg.make_planted(k_task, k=config["k"], N=N, gamma=gamma)
        problem = planted_problem(task, key=k_task)
        c = lpg.train(alg, problem, lpg.hyper(), k_run, steps=T, log_every=log_every,
                      w0=problem.fmap.init_params()).curves
        return {"error": c.test_error, "mistakes": c.mistakes}

    return run


def mistakes_at_hit(error, mistakes, eps):
    """``(M_ε, censored)``: cumulative mistakes at the first log point with error ``≤ ε``."""
    idx, cens = hitting_time(error, np.arange(error.shape[1]), eps, above=False)
    M = np.asarray(mistakes, np.float64)[np.arange(error.shape[0]), idx.astype(int)]
    return M, cens


def per_run(arrays: dict, config: dict) -> dict:
    """Flat per-run arrays over every ``(N, γ)``: ``N``, ``gamma``, ``M``, ``censored``."""
    out = {"N": [], "gamma": [], "M": [], "censored": []}
    for i, (N, g) in enumerate(settings(config)):
        M, c = mistakes_at_hit(arrays[f"run{i}_error"], arrays[f"run{i}_mistakes"], config["eps"])
        out["N"].append(np.full(M.shape, N))
        out["gamma"].append(np.full(M.shape, g))
        out["M"].append(M)
        out["censored"].append(c)
    return {k: np.concatenate(v) for k, v in out.items()}


def _medians(M, censored, groups) -> list[float]:
    return [censored_median(M[groups == g], censored[groups == g]) for g in np.unique(groups)]


def summary_of(arrays: dict, config: dict) -> dict:
    k = config["k"]
    r = per_run(arrays, config)
    slopes, points = {}, {}
    N_f = r["N"].astype(np.float64)
    for g in config["gammas"]:
        sel = np.isclose(r["gamma"], g)
        slopes[f"lnM_vs_N_gamma{g:g}"] = fit_record(
            N_f[sel], r["M"][sel], r["censored"][sel], theory=math.log(k),
            accept=(0.85 * math.log(k), 1.15 * math.log(k)), log_x=False,
            note="d ln(M_eps) / dN; theory ln k for both bounds (C7)")
        norm = r["M"][sel] * g**2 / float(k) ** N_f[sel]
        slopes[f"N_factor_gamma{g:g}"] = fit_record(
            N_f[sel], norm, r["censored"][sel], theory=0.0, accept=(-1.0, 0.0),
            note="d ln(M_eps gamma^2 / k^N) / d ln N: 0 = upper-bound shape k^N/gamma^2, "
                 "-1 = lower-bound shape k^N/(N gamma^2); accepted between the two")
        Ns = sorted(set(int(n) for n in r["N"][sel]))
        med = _medians(r["M"][sel], r["censored"][sel], r["N"][sel])
        points[f"gamma{g:g}"] = {
            "N": Ns, "median_M": med,
            "median_M_gamma2_over_kN": [m * g**2 / k**n for m, n in zip(med, Ns)],
            "censored_fraction": [float(r["censored"][sel & (r["N"] == n)].mean()) for n in Ns],
        }
    sel = r["N"] == config["gamma_N"]
    key_g = f"lnM_vs_ln_gamma_N{config['gamma_N']}"
    slopes[key_g] = fit_record(r["gamma"][sel], r["M"][sel], r["censored"][sel], theory=-2.0, accept=(-2.5, -1.5),
                               note="d ln(M_eps) / d ln gamma (C7)")
    points[f"N{config['gamma_N']}"] = {"gamma": sorted(set(float(x) for x in r["gamma"][sel])),
                                       "median_M": _medians(r["M"][sel], r["censored"][sel], r["gamma"][sel])}
    ok = lambda keys: all(slopes[key]["verdict"] == "confirmed" for key in keys)  # noqa: E731
    return {
        "experiment": "online",
        "claims": ["C7"],
        "slopes": slopes,
        "points": points,
        "horizons": {f"N{N}_gamma{g:g}": horizon(config, N, g) for N, g in settings(config)},
        "verdict": {
            "exponential_in_N_at_rate_ln_k": ok([f"lnM_vs_N_gamma{g:g}" for g in config["gammas"]]),
            "gamma_slope_near_minus_2": ok([key_g]),
            "within_the_two_bounds_shapes": ok([f"N_factor_gamma{g:g}" for g in config["gammas"]]),
        },
        "units": {"M": f"mistakes sum_t (1 - p(y*_t|x_t)) until the exact error is <= eps = {config['eps']:g}; "
                       "Kaplan-Meier medians over seeds, censored runs counted as >= their mistakes at the horizon"},
    }


def figure(arrays: dict, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    k = config["k"]
    n_seeds = int(config.get("seeds", 0))
    r = per_run(arrays, config)
    fig, ax = plotting.figure(4, width=4.2, height=3.5)
    cmap = matplotlib.colormaps["viridis"]
    colors = {g: cmap(i / max(1, len(config["gammas"]) - 1) * 0.8) for i, g in enumerate(config["gammas"])}
    for g in config["gammas"]:
        sel = np.isclose(r["gamma"], g)
        N = r["N"][sel].astype(np.float64)
        gx, med = scaling_series(ax[0], N, np.log10(r["M"][sel]), r["censored"][sel], label=f"$\\gamma$={g:g}",
                                 color=colors[g], jitter=0.08, log_x=False)
        norm = np.log10(r["M"][sel]) + 2 * math.log10(g) - N * math.log10(k)
        scaling_series(ax[1], N, norm, r["censored"][sel], label=f"$\\gamma$={g:g}", color=colors[g], jitter=0.08,
                       log_x=False)
        # Theory shapes with constants fitted to the medians (log10 space).
        ok = np.isfinite(med)
        up = gx * math.log10(k) - 2 * math.log10(g)
        low = up - np.log10(gx)
        for shape, ls, lab in ((up, ":", "$\\propto k^N/\\gamma^2$"), (low, "--", "$\\propto k^N/(N\\gamma^2)$")):
            if ok.any():
                c = np.mean(med[ok] - shape[ok])
                ax[0].plot(gx, c + shape, color=colors[g], ls=ls, lw=1.0,
                           label=lab if g == config["gammas"][0] else None)
    gx = np.asarray(sorted(set(int(n) for n in r["N"])), np.float64)
    firsts = np.array([np.nan if p["median_M_gamma2_over_kN"][0] is None else p["median_M_gamma2_over_kN"][0]
                       for key, p in summary["points"].items() if key.startswith("gamma")], np.float64)
    ref = float(np.median(firsts[np.isfinite(firsts)])) if np.isfinite(firsts).any() else math.nan
    if math.isfinite(ref):
        ax[1].plot(gx, np.log10(ref) + 0 * gx, "k:", lw=1.0, label="upper shape (flat)")
        ax[1].plot(gx, np.log10(ref) - np.log10(gx), "k--", lw=1.0, label="lower shape $\\propto 1/N$")
    ax[0].set(title=f"mistakes until error $\\leq {config['eps']:g}$", xlabel="response length $N$",
              ylabel="mistakes $M_\\varepsilon$")
    ax[1].set(title="normalised: $M_\\varepsilon\\gamma^2/k^N$", xlabel="response length $N$",
              ylabel="$M_\\varepsilon \\gamma^2 / k^N$")
    # γ at fixed N.
    sel = r["N"] == config["gamma_N"]
    gx2, med2 = scaling_series(ax[2], r["gamma"][sel], np.log10(r["M"][sel]), r["censored"][sel],
                               label=f"N={config['gamma_N']}", color="#1f5fa8", jitter=0.01)
    theory_overlay(ax[2], gx2, med2, -2.0, color="k", label="theory $\\propto \\gamma^{-2}$, fitted constant")
    ax[2].set(title=f"margin, N={config['gamma_N']}", xlabel="margin $\\gamma$", ylabel="mistakes $M_\\varepsilon$")
    ax[2].set_xscale("log")
    ax[2].set_xticks(gx2)
    ax[2].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax[2].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    plain = FuncFormatter(lambda v, _: f"{10 ** v:.0f}")
    # Cumulative mistakes against rounds / k^N for the first γ.
    g0 = config["gammas"][0]
    ncol = matplotlib.colormaps["plasma"]
    for j, (i, (N, g)) in enumerate([(i, s) for i, s in enumerate(settings(config)) if s[1] == g0]):
        mis = np.asarray(arrays[f"run{i}_mistakes"], np.float64)
        T = horizon(config, N, g)
        t = np.linspace(0, T, mis.shape[1]) / float(k) ** N
        plotting.seed_band(ax[3], t[1:], np.log10(mis[:, 1:] / float(k) ** N), label=f"N={N}",
                           color=ncol(j / max(1, len(config["Ns"]) - 1) * 0.85), alpha=0.15)
    ax[3].set(title=f"cumulative mistakes, $\\gamma$={g0:g}", xlabel="rounds $/ k^N$", ylabel="mistakes $/ k^N$")
    for a in ax:
        if a is ax[2]:
            a.yaxis.set_major_formatter(plain)
        else:
            plotting.log10_axis(a, "y")
        handles, _ = a.get_legend_handles_labels()
        if a is not ax[3]:
            handles.append(censored_legend_handle())
        a.legend(handles=handles, fontsize=6, loc="best", frameon=False)
        a.grid(alpha=0.25, which="both")
    fig.suptitle(f"{name}: online PG with uniform exploration (C7); planted k={k}; dots: runs, lines: "
                 f"Kaplan-Meier medians over {n_seeds} seeds, hollow markers: censored at the horizon", fontsize=9)
    fig.tight_layout()
    return plotting.save(fig, out_dir, name)


def table(summary: dict) -> str:
    v = summary["verdict"]
    yn = lambda key: "yes" if v[key] else "NO"  # noqa: E731
    return "\n".join([
        slopes_table(summary["slopes"]),
        f"ln M ~ N ln k: {yn('exponential_in_N_at_rate_ln_k')}; M ~ gamma^-2: {yn('gamma_slope_near_minus_2')}; "
        f"N-factor between the bounds' shapes [-1, 0]: {yn('within_the_two_bounds_shapes')}",
    ])


@register
class Online(Experiment):
    name = "online"
    description = "C7: online PG with uniform exploration makes ~k^N/gamma^2 mistakes (lower bound k^N/(N gamma^2))"
    defaults = DEFAULTS
    default_seeds = 16

    validate = staticmethod(validate)

    def compute(self, config: dict, *, seeds: int, out_dir: Path, resume: bool) -> tuple[dict, dict]:
        arrays, timing = {}, {}
        for i, (N, g) in enumerate(settings(config)):
            result = self.sweep_part(make_run(config, N, g), {}, config, seeds=seeds, out_dir=out_dir, resume=resume,
                                     part=f"N{N}_gamma{g:g}", desc=f"N={N},gamma={g:g}", N=N, gamma=g)
            arrays[f"run{i}_error"] = result.outputs["error"]
            arrays[f"run{i}_mistakes"] = result.outputs["mistakes"]
            arrays[f"run{i}_seed"] = result.seed
            timing[f"N{N}_gamma{g:g}"] = result.timing
        return arrays, timing

    summarise = staticmethod(summary_of)

    def draw(self, arrays: dict, config: dict, summary: dict, out_dir: Path) -> list[Path]:
        return figure(arrays, config, summary, out_dir, self.name)

    def table(self, summary: dict) -> str:
        return table(summary) + "\n" + self.compute_line(summary)
