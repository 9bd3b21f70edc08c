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
Acceptance: N-slope within 15% of ``ln k``; γ-slope in ``[−2.5, −1.5]``; N-factor slope in ``[−1, 0]``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import matplotlib
import matplotlib.ticker
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import censored_median, fit_record, hitting_time, slopes_table
from lpg.features import max_planted_contexts
from lpg.problem import planted_problem
from lpg.spec import Experiment, Int, Ints, Profile, Real, Reals, Sweep, common

GAMMA = dict(low=0.0, high=1.0, open_low=True)


def horizon(config: dict, N: int, gamma: float) -> int:
    """Rounds of a run: a power of two ``≥ horizon_factor·S·k^N`` (and ``≥ log_points``)."""
    S = max_planted_contexts(config["k"], gamma)
    want = config["horizon_factor"] * S * float(config["k"]) ** N
    return max(int(config["log_points"]), 2 ** int(math.ceil(math.log2(want))))


def settings(config: dict) -> list[tuple[int, float]]:
    """Every ``(N, γ)`` run: the N sweep at each of ``gammas``, plus ``gamma_extra`` at ``gamma_N``."""
    return ([(int(N), float(g)) for g in config["gammas"] for N in config["Ns"]]
            + [(int(config["gamma_N"]), float(g)) for g in config["gamma_extra"]])


def make_run(config: dict, N: int, gamma: float):
    """``run(key)``: one online run, its exact error and cumulative mistakes at the log points."""
    T = horizon(config, N, gamma)

    def run(key):
        k_task, k_run = jax.random.split(key)
        task = lpg.make_planted(k_task, k=config["k"], N=N, gamma=gamma)
        problem = planted_problem(task, key=k_task)
        c = lpg.train(lpg.OnlinePG(), problem, lpg.hyper(), k_run, steps=T, log_every=max(1, T // config["log_points"]),
                      w0=problem.fmap.init_params()).curves
        return {"curves": {"online": {"step": c.step, "error": c.test_error, "mistakes": c.aux["mistakes"]}}}

    return run


def mistakes_at_hit(table, N: int, gamma: float, eps: float):
    """``(M_ε, censored)`` per run of the ``(N, γ)`` sweep: mistakes at the first log point with error ``≤ ε``."""
    rows = table.where(N=N, gamma=gamma)
    error, mistakes = rows.by_run("error"), rows.by_run("mistakes").astype(np.float64)
    idx, cens = hitting_time(error, np.arange(error.shape[1]), eps, above=False)
    return mistakes[np.arange(error.shape[0]), idx.astype(int)], cens


def per_run(table, config: dict) -> dict:
    """Flat per-run arrays over every ``(N, γ)``: ``N``, ``gamma``, ``M``, ``censored``."""
    hits = [(N, g, *mistakes_at_hit(table, N, g, config["eps"])) for N, g in settings(config)]
    return {"N": np.concatenate([np.full(M.shape, N) for N, _, M, _ in hits]),
            "gamma": np.concatenate([np.full(M.shape, g) for _, g, M, _ in hits]),
            "M": np.concatenate([h[2] for h in hits]), "censored": np.concatenate([h[3] for h in hits])}


def summary_of(table, config: dict) -> dict:
    k = config["k"]
    r = per_run(table, config)
    slopes, points = {}, {}
    medians = lambda sel, groups: [censored_median(r["M"][sel & (groups == v)], r["censored"][sel & (groups == v)])
                                   for v in np.unique(groups[sel])]  # noqa: E731
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
        med = medians(sel, r["N"])
        points[f"gamma{g:g}"] = {"N": Ns, "median_M": med,
                                 "median_M_gamma2_over_kN": [m * g**2 / k**n for m, n in zip(med, Ns)],
                                 "censored_fraction": [float(r["censored"][sel & (r["N"] == n)].mean()) for n in Ns]}
    sel = r["N"] == config["gamma_N"]
    key_g = f"lnM_vs_ln_gamma_N{config['gamma_N']}"
    slopes[key_g] = fit_record(r["gamma"][sel], r["M"][sel], r["censored"][sel], theory=-2.0, accept=(-2.5, -1.5),
                               note="d ln(M_eps) / d ln gamma (C7)")
    points[f"N{config['gamma_N']}"] = {"gamma": sorted(set(float(x) for x in r["gamma"][sel])),
                                       "median_M": medians(sel, r["gamma"])}
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


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    k, n_seeds = config["k"], int(config.get("seeds", 0))
    r = per_run(table, config)
    fig, ax = plotting.figure(4, width=4.2, height=3.5)
    cmap = matplotlib.colormaps["viridis"]
    colors = {g: cmap(i / max(1, len(config["gammas"]) - 1) * 0.8) for i, g in enumerate(config["gammas"])}
    for g in config["gammas"]:
        sel = np.isclose(r["gamma"], g)
        N = r["N"][sel].astype(np.float64)
        gx, med = plotting.scaling_series(ax[0], N, np.log10(r["M"][sel]), r["censored"][sel], label=f"$\\gamma$={g:g}",
                                          color=colors[g], jitter=0.08, log_x=False)
        norm = np.log10(r["M"][sel]) + 2 * math.log10(g) - N * math.log10(k)
        plotting.scaling_series(ax[1], N, norm, r["censored"][sel], label=f"$\\gamma$={g:g}", color=colors[g],
                                jitter=0.08, log_x=False)
        # Theory shapes with constants fitted to the medians (log10 space).
        ok = np.isfinite(med)
        up = gx * math.log10(k) - 2 * math.log10(g)
        shapes = ((up, ":", "$\\propto k^N/\\gamma^2$"), (up - np.log10(gx), "--", "$\\propto k^N/(N\\gamma^2)$"))
        for shape, ls, lab in shapes if ok.any() else ():
            ax[0].plot(gx, np.mean(med[ok] - shape[ok]) + shape, color=colors[g], ls=ls, lw=1.0,
                       label=lab if g == config["gammas"][0] else None)
    gx = np.asarray(sorted(set(int(n) for n in r["N"])), np.float64)
    firsts = np.array([np.nan if p["median_M_gamma2_over_kN"][0] is None else p["median_M_gamma2_over_kN"][0]
                       for key, p in summary["points"].items() if key.startswith("gamma")], np.float64)
    if np.isfinite(firsts).any():  # both shapes through the median of the first points
        ref = np.log10(np.median(firsts[np.isfinite(firsts)]))
        ax[1].plot(gx, ref + 0 * gx, "k:", lw=1.0, label="upper shape (flat)")
        ax[1].plot(gx, ref - np.log10(gx), "k--", lw=1.0, label="lower shape $\\propto 1/N$")
    ax[0].set(title=f"mistakes until error $\\leq {config['eps']:g}$", xlabel="response length $N$",
              ylabel="mistakes $M_\\varepsilon$")
    ax[1].set(title="normalised: $M_\\varepsilon\\gamma^2/k^N$", xlabel="response length $N$",
              ylabel="$M_\\varepsilon \\gamma^2 / k^N$")
    sel = r["N"] == config["gamma_N"]
    gx2, med2 = plotting.scaling_series(ax[2], r["gamma"][sel], np.log10(r["M"][sel]), r["censored"][sel],
                                        label=f"N={config['gamma_N']}", color="#1f5fa8", jitter=0.01)
    plotting.theory_overlay(ax[2], gx2, med2, -2.0, color="k", label="theory $\\propto \\gamma^{-2}$, fitted constant")
    ax[2].set(title=f"margin, N={config['gamma_N']}", xlabel="margin $\\gamma$", ylabel="mistakes $M_\\varepsilon$")
    ax[2].set_xscale("log")
    ax[2].set_xticks(gx2)
    ax[2].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax[2].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    g0 = config["gammas"][0]
    for j, (N, g) in enumerate(s for s in settings(config) if s[1] == g0):
        mis = table.where(N=N, gamma=g).by_run("mistakes").astype(np.float64)
        t = np.linspace(0, horizon(config, N, g), mis.shape[1]) / float(k) ** N
        plotting.seed_band(ax[3], t[1:], np.log10(mis[:, 1:] / float(k) ** N), label=f"N={N}",
                           color=matplotlib.colormaps["plasma"](j / max(1, len(config["Ns"]) - 1) * 0.85), alpha=0.15)
    ax[3].set(title=f"cumulative mistakes, $\\gamma$={g0:g}", xlabel="rounds $/ k^N$", ylabel="mistakes $/ k^N$")
    for a in ax:
        if a is ax[2]:
            a.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{10 ** v:.0f}"))
        else:
            plotting.log10_axis(a, "y")
        extra = [] if a is ax[3] else [plotting.censored_legend_handle()]
        a.legend(handles=a.get_legend_handles_labels()[0] + extra, fontsize=6, loc="best", frameon=False)
        a.grid(alpha=0.25, which="both")
    title = (f"{name}: online PG with uniform exploration (C7); planted k={k}; dots: runs, lines: "
             f"Kaplan-Meier medians over {n_seeds} seeds, hollow markers: censored at the horizon")
    return plotting.save(fig, out_dir, name, title)


def _relations(c: dict):
    """gamma_N among Ns; margins distinct; log_points splits every horizon."""
    gammas = list(c["gammas"]) + list(c["gamma_extra"])
    if c["gamma_N"] not in c["Ns"]:
        return f"gamma_N must be one of Ns={c['Ns']}, got {c['gamma_N']}"
    if len(set(gammas)) != len(gammas):
        return f"gammas must be non-empty and distinct from gamma_extra, got {c['gammas']!r}, {c['gamma_extra']!r}"
    for T in sorted({horizon(c, N, g) for N, g in settings(c)}):
        if T % max(1, T // c["log_points"]):
            return f"log_points must split every horizon evenly (T={T}), got {c['log_points']}"
    return None


class Online(Experiment):
    name = "online"
    description = "C7: online PG with uniform exploration makes ~k^N/gamma^2 mistakes (lower bound k^N/(N gamma^2))"
    claims = ("C7",)
    settings = {
        **common(k=2, chunk_size=0),
        "Ns": Ints([1, 2, 4, 6, 8], "response lengths", low=1, min_len=2, distinct=True),
        "gammas": Reals([0.5, 0.35], "margins of the N sweeps", **GAMMA),
        "gamma_N": Int(4, "the N (one of Ns) of the margin fit", low=1),
        "gamma_extra": Reals([0.25], "margins run only at N = gamma_N (margin fit)", min_len=0, **GAMMA),
        "eps": Real(0.1, "M_eps: mistakes until the exact error is <= eps", **GAMMA, open_high=True),
        "horizon_factor": Real(80.0, "horizon: 2^ceil(log2(horizon_factor S k^N)) rounds", low=0.0, open_low=True),
        "log_points": Int(512, "log points per run (the resolution of M_eps)", low=2),
    }
    constraints = (_relations,)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"Ns": [1, 2, 4, 6, 8, 10, 12], "gammas": [0.5, 0.35, 0.25], "gamma_extra": [0.18, 0.125],
                            "gamma_N": 6},
                       "N to 12 (2^12 responses) and margins down to 1/8 (S = 128 contexts)"),
        "quick": Profile(2, {}),
    }

    def sweeps(self, config):
        """One sweep per (N, γ): its own horizon and log resolution."""
        for N, g in settings(config):
            yield Sweep(f"N{N}_gamma{g:g}", make_run(config, N, g), tags={"N": N, "gamma": g})

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary):
        v = summary["verdict"]
        yn = lambda key: "yes" if v[key] else "NO"  # noqa: E731
        return "\n".join([slopes_table(summary["slopes"]), f"ln M ~ N ln k: {yn('exponential_in_N_at_rate_ln_k')}; "
                          f"M ~ gamma^-2: {yn('gamma_slope_near_minus_2')}; N-factor between the bounds' shapes "
                          f"[-1, 0]: {yn('within_the_two_bounds_shapes')}", self.timing_line(summary)])
